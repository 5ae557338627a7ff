/**
 * Requests per second through a handler-base endpoint (decode, handle, encode,
 * span, metrics, error boundary) against a raw nats.js responder that echoes
 * the bytes, at 1 and 64 requests in flight, measured in one run against one
 * local nats-server. Both responders run in one subprocess and the load in
 * this one, so the load generator does not share a thread with what it
 * measures. Rounds alternate between the two so drift on a shared machine
 * hits both alike.
 *
 * Run: `deno run -A bench/handler_bench.ts [--seconds=2] [--rounds=3] [--raw-msg-type]`
 *
 * `--raw-msg-type` makes the raw responder send the `Msg-Type` header that the
 * contract requires of every message, to see how much of the gap is that header.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { createService, defineEndpoint } from "../handler_base/handler.ts";
import { createLogger } from "../handler_base/log.ts";
import { encode, TTSRequestSchema, TTSStatusSchema } from "../handler_base/messages.ts";
import { connectNats, messageHeaders } from "../handler_base/natsutil.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const seconds = Number(args.seconds ?? 2);
const rounds = Number(args.rounds ?? 3);
const rawMsgType = "raw-msg-type" in args;
const payload = encode(TTSRequestSchema, { text: "How fast is the handler layer?", speaker: "x" });

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

/** The subprocess: a raw echo responder and a handler-base endpoint on one connection each. */
async function serve(url: string): Promise<void> {
  const serviceConn = await connectNats({ servers: url, name: "bench-service" });
  const rawConn = await connectNats({ servers: url, name: "bench-raw" });
  const rawHeaders = rawMsgType ? messageHeaders(TTSStatusSchema.typeName) : undefined;
  rawConn.subscribe("bench.raw", {
    callback: (_err, msg) => {
      msg.respond(msg.data, rawHeaders ? { headers: rawHeaders } : undefined);
    },
  });
  const service = createService(serviceConn, {
    name: "bench",
    logger: createLogger({ service: "bench", level: "error" }),
    concurrency: 64,
    endpoints: [defineEndpoint({
      subject: "bench.handler",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
    })],
  });
  await service.start();
  await rawConn.flush();
  console.log("READY");
  await new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve(undefined)));
  await service.stop();
  await Promise.all([serviceConn.close(), rawConn.close()]);
}

if (args.serve) {
  await serve(args.serve);
  Deno.exit(0);
}

await using server = await startNatsServer({ jetstream: false });
const responders = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    `--serve=${server.url}`,
    ...(rawMsgType ? ["--raw-msg-type"] : []),
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = responders.stdout.pipeThrough(new TextDecoderStream()).getReader();
while (!((await reader.read()).value ?? "").includes("READY"));
reader.releaseLock();
const client = await connectNats({ servers: server.url, name: "bench-client" });

const results: Array<{ inFlight: number; raw: number; handler: number }> = [];
for (const inFlight of [1, 64]) {
  await load(client, "bench.raw", inFlight); // warm-up
  await load(client, "bench.handler", inFlight);
  let raw = 0;
  let handler = 0;
  for (let round = 0; round < rounds; round++) {
    raw += await load(client, "bench.raw", inFlight);
    handler += await load(client, "bench.handler", inFlight);
  }
  results.push({ inFlight, raw: raw / rounds, handler: handler / rounds });
}

console.log(`| in flight | raw nats.js req/s | handler-base req/s | ratio |`);
console.log(`| --- | --- | --- | --- |`);
for (const r of results) {
  console.log(
    `| ${r.inFlight} | ${r.raw.toFixed(0)} | ${r.handler.toFixed(0)} | ${
      (r.handler / r.raw).toFixed(2)
    } |`,
  );
}
await client.close();
responders.kill("SIGTERM");
await responders.status;
