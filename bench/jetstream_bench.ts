/**
 * Messages per second through one service's JetStream endpoint against its
 * core endpoint, measured in one run against one local nats-server (file
 * storage). The service runs in a subprocess with both endpoints (a trivial
 * handler each, concurrency 64, `consumeMode: "jetstream"`); the load comes
 * from this process.
 *
 * - core: 64 request loops on the core endpoint; a message counts when its
 *   reply arrives.
 * - jetstream, backlog: messages stored before the service starts, drained by
 *   its durable consumer; a message counts when acked.
 * - jetstream, live: 64 publish loops (each waits for the stream's ack) while
 *   the consumer handles; a message counts when acked.
 *
 * Consumer settings: explicit acks after a flush of the handler's outputs,
 * pulls of at most the free slots (prefetch <= 64), ack wait 30 s.
 *
 * Run: `deno run -A bench/jetstream_bench.ts [--messages=20000] [--seconds=3]`
 *
 * @module
 */
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { createService, defineEndpoint } from "../handler_base/handler.ts";
import {
  consumeJetStream,
  ensureStreams,
  type StreamDefinition,
} from "../handler_base/jetstream.ts";
import { createLogger } from "../handler_base/log.ts";
import { encode, TTSRequestSchema, TTSStatusSchema } from "../handler_base/messages.ts";
import { connectNats, type NatsConnection } from "../handler_base/natsutil.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const messages = Number(args.messages ?? 20_000);
const seconds = Number(args.seconds ?? 3);
const inFlight = 64;
const payload = encode(TTSRequestSchema, { text: "How fast is the JetStream path?", speaker: "x" });

const definition = (subject: string): StreamDefinition => ({
  description: "Benchmark",
  subjects: [subject],
  storage: "file",
  maxAgeMs: 3_600_000,
  replicas: 1,
});
const streams = {
  BENCH_LIVE: definition("bench.live.>"),
  BENCH_BACKLOG: definition("bench.backlog.>"),
};

/** The subprocess: one service with a core endpoint and two JetStream ones. */
async function serve(url: string): Promise<void> {
  const nc = await connectNats({ servers: url, name: "bench-service" });
  const handle = () => Promise.resolve();
  const service = createService(nc, {
    name: "bench",
    logger: createLogger({ service: "bench", level: "error" }),
    concurrency: inFlight,
    consumeMode: "jetstream",
    endpoints: [
      defineEndpoint({
        subject: "bench.core",
        request: TTSRequestSchema,
        response: TTSStatusSchema,
        handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
      }),
      defineEndpoint({
        subject: "bench.live.>",
        stream: "BENCH_LIVE",
        request: TTSRequestSchema,
        handle,
      }),
      defineEndpoint({
        subject: "bench.backlog.>",
        stream: "BENCH_BACKLOG",
        request: TTSRequestSchema,
        handle,
      }),
    ],
  });
  await service.start();
  consumeJetStream(service);
  console.log("READY");
  await new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve(undefined)));
  await service.stop();
  await nc.close();
}

/** Resolves when the consumer has nothing pending or unacked. */
async function drained(jsm: JetStreamManager, stream: string): Promise<void> {
  while (true) {
    const info = await jsm.consumers.info(stream, "bench").catch(() => undefined);
    if (info && info.num_pending === 0 && info.num_ack_pending === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function publishAll(nc: NatsConnection, prefix: string, count: number): Promise<void> {
  const js = jetstream(nc);
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < count) await js.publish(`${prefix}.${next++}`, payload);
  }));
}

if (args.serve) {
  await serve(args.serve);
  Deno.exit(0);
}

await using server = await startNatsServer({ jetstream: true });
const client = await connectNats({ servers: server.url, name: "bench-client" });
await ensureStreams(client, { streams });
const jsm = await jetstream(client).jetstreamManager();
await publishAll(client, "bench.backlog", messages);

const service = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL(import.meta.url).pathname, `--serve=${server.url}`],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = service.stdout.pipeThrough(new TextDecoderStream()).getReader();
while (!((await reader.read()).value ?? "").includes("READY"));
reader.releaseLock();

let started = performance.now();
await drained(jsm, "BENCH_BACKLOG");
const backlog = messages / ((performance.now() - started) / 1000);

const end = performance.now() + seconds * 1000;
let replies = 0;
started = performance.now();
await Promise.all(Array.from({ length: inFlight }, async () => {
  while (performance.now() < end) {
    await client.request("bench.core", payload, { timeout: 5000 });
    replies++;
  }
}));
const core = replies / ((performance.now() - started) / 1000);

started = performance.now();
await publishAll(client, "bench.live", messages);
await drained(jsm, "BENCH_LIVE");
const live = messages / ((performance.now() - started) / 1000);

console.log(`| path | msgs/s | vs core |`);
console.log(`| --- | --- | --- |`);
for (
  const [name, rate] of [["core request-reply", core], ["jetstream backlog", backlog], [
    "jetstream live (publish + consume)",
    live,
  ]] as const
) {
  console.log(`| ${name} | ${rate.toFixed(0)} | ${(rate / core).toFixed(2)} |`);
}
console.log(
  `\n${messages} JetStream messages per run, ${inFlight} in flight, concurrency ${inFlight}, ` +
    `explicit ack after flush, prefetch <= free slots, file storage`,
);
await client.close();
service.kill("SIGTERM");
await service.status;
