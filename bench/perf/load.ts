/**
 * One load-generator process: `--in-flight` request loops against a subject
 * for `--seconds`, started when the parent writes a line to stdin (so every
 * load process of a round starts together). Prints one JSON line: the
 * requests answered, and the CPU this process used (`/proc/self/stat`).
 *
 * Run: `deno run -A bench/perf/load.ts --url=nats://... --subject=bench.raw --in-flight=32 --seconds=3`
 *
 * @module
 */
import { connectNats } from "../../handler_base/natsutil.ts";
import { PAYLOAD } from "./responders.ts";
import { cpuMs } from "./proc.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const nc = await connectNats({ servers: args.url!, name: "bench-load" });
const inFlight = Number(args["in-flight"] ?? 1);
const seconds = Number(args.seconds ?? 3);
// Warm the connection and the JIT before the measured window.
for (let i = 0; i < 200; i++) await nc.request(args.subject!, PAYLOAD, { timeout: 5000 });
console.log("READY");
const reader = Deno.stdin.readable.getReader();
await reader.read();
const cpuBefore = cpuMs(Deno.pid);
const end = performance.now() + seconds * 1000;
let requests = 0;
await Promise.all(Array.from({ length: inFlight }, async () => {
  while (performance.now() < end) {
    await nc.request(args.subject!, PAYLOAD, { timeout: 5000 });
    requests++;
  }
}));
console.log(JSON.stringify({ requests, cpuMs: cpuMs(Deno.pid) - cpuBefore }));
await nc.close();
