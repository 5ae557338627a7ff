/**
 * The memory baseline of a NATS service: nats.js alone (nats-core over the
 * project's Deno transport, as the services connect), connected and
 * subscribed, echoing. Run: `deno run -A bench/perf/raw_nats.ts <nats-url>`
 * (prints `READY`).
 *
 * @module
 */
import { NatsConnectionImpl, setTransportFactory } from "@nats-io/nats-core/internal";
import { denoTransportFactory } from "../../handler_base/nats_transport.ts";

setTransportFactory(denoTransportFactory);
const nc = await NatsConnectionImpl.connect({ servers: Deno.args[0]! });
nc.subscribe("bench.raw-only", {
  callback: (_err, msg) => {
    msg.respond(msg.data);
  },
});
await nc.flush();
console.log("READY");
