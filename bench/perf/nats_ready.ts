/**
 * The floor of a NATS service on this runtime, the start-up and memory
 * baseline the services' bundles are compared with: nats.js (nats-core over
 * the project's Deno transport, as the services connect), connected and
 * answering one subject, and a `Deno.serve` `/ready` on `HEALTH_PORT` that
 * answers 200 once the connection is up. No protobuf, configuration,
 * logging, telemetry or service machinery. The benchmarks bundle it like a
 * service (`buildBundles`) and start it as a compiled binary starts
 * (`natsReadyFlags`).
 *
 * Run: `NATS_URL=nats://127.0.0.1:4222 HEALTH_PORT=8080 deno run -A bench/perf/nats_ready.ts`.
 *
 * @module
 */
import { NatsConnectionImpl, setTransportFactory } from "@nats-io/nats-core/internal";
import { denoTransportFactory } from "../../handler_base/nats_transport.ts";

let connected = false;
Deno.serve(
  { port: Number(Deno.env.get("HEALTH_PORT") ?? 8080), hostname: "0.0.0.0", onListen: () => {} },
  () => new Response(connected ? "ok" : "connecting", { status: connected ? 200 : 503 }),
);
setTransportFactory(denoTransportFactory);
const nc = await NatsConnectionImpl.connect({ servers: Deno.env.get("NATS_URL") ?? "127.0.0.1" });
nc.subscribe("bench.nats-ready", {
  callback: (_err, msg) => {
    msg.respond(msg.data);
  },
});
await nc.flush();
connected = true;
