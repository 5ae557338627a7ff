/**
 * The memory baseline of a NATS service: nats.js alone, connected and
 * subscribed, echoing. Run: `deno run -A bench/perf/raw_nats.ts <nats-url>`
 * (prints `READY`).
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";

const nc = await connect({ servers: Deno.args[0]! });
nc.subscribe("bench.raw-only", {
  callback: (_err, msg) => {
    msg.respond(msg.data);
  },
});
await nc.flush();
console.log("READY");
