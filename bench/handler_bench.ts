/**
 * Requests per second through a handler-base endpoint (decode, handle, encode,
 * span, metrics, error boundary) against two raw nats.js responders: one that
 * echoes the bytes, and one that does the same protobuf work as the endpoint
 * (decode the request, encode the reply, set `Msg-Type`) in its subscription
 * callback. At 1 and 64 requests in flight, measured in one run against one
 * local nats-server. Both responders run in one subprocess and the load in
 * this one, so the load generator does not share a thread with what it
 * measures. Rounds alternate between the two so drift on a shared machine
 * hits both alike.
 *
 * Run: `deno run -A bench/handler_bench.ts [--seconds=2] [--rounds=3]`
 *
 * Its one load generator (nats.js, one core) is the bottleneck at 64 in
 * flight; `bench/perf/throughput.ts` (in `deno task bench`) uses several load
 * processes and measures the responder's CPU per request instead.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../handler_base/natsutil.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";
import { type Path, PAYLOAD as payload, serveResponders, SUBJECTS } from "./perf/responders.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const seconds = Number(args.seconds ?? 2);
const rounds = Number(args.rounds ?? 3);

/** Runs `inFlight` request loops against `subject` for the given time; returns requests/s. */
async function load(nc: NatsConnection, subject: string, inFlight: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (performance.now() < end) {
      await nc.request(subject, payload, { timeout: 5000 });
      done++;
    }
  }));
  return done / seconds;
}

if (args.serve) {
  await serveResponders(args.serve);
  Deno.exit(0);
}

await using server = await startNatsServer({ jetstream: false });
const responders = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    `--serve=${server.url}`,
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = responders.stdout.pipeThrough(new TextDecoderStream()).getReader();
while (!((await reader.read()).value ?? "").includes("READY"));
reader.releaseLock();
const client = await connectNats({ servers: server.url, name: "bench-client" });

const results: Array<{ inFlight: number } & Record<Path, number>> = [];
for (const inFlight of [1, 64]) {
  const totals: Record<Path, number> = { echo: 0, proto: 0, handler: 0 };
  for (const subject of Object.values(SUBJECTS)) await load(client, subject, inFlight); // warm-up
  for (let round = 0; round < rounds; round++) {
    for (const path of Object.keys(SUBJECTS) as Path[]) {
      totals[path] += await load(client, SUBJECTS[path], inFlight);
    }
  }
  results.push({
    inFlight,
    echo: totals.echo / rounds,
    proto: totals.proto / rounds,
    handler: totals.handler / rounds,
  });
}

console.log(
  "| in flight | raw echo req/s | raw protobuf req/s | handler-base req/s | ratio to echo | ratio to protobuf |",
);
console.log("| --- | --- | --- | --- | --- | --- |");
for (const r of results) {
  const cells = [r.echo, r.proto, r.handler].map((n) => n.toFixed(0));
  const ratios = [r.handler / r.echo, r.handler / r.proto].map((n) => n.toFixed(2));
  console.log(`| ${r.inFlight} | ${cells.join(" | ")} | ${ratios.join(" | ")} |`);
}
await client.close();
responders.kill("SIGTERM");
await responders.status;
