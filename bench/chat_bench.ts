/**
 * What chat-handler adds on top of its backends, in one run against one
 * local nats-server and the in-process fake backends:
 *
 * - overhead per chat: the median of a RAG + rerank chat sent through the
 *   real service (`services/chat.ts` in a subprocess, NATS request-reply)
 *   minus the median of the same backend calls made directly with the
 *   clients (embed, search, rerank, generate);
 * - first token: the time from the fake LLM sending its first token to the
 *   first `ChatStreamChunk` at a NATS subscriber, against the time to the
 *   first delta of a raw streaming client.
 *
 * The fakes and the subscriber live in this process, so the token's send
 * time and the chunk's arrival share one clock. Raw and service rounds
 * alternate so drift on a shared machine hits both alike.
 *
 * Run: `deno run -A bench/chat_bench.ts [--iterations=200]`
 *
 * @module
 */
import { createEmbeddingsClient } from "../handler_base/clients/embeddings.ts";
import { createLlmClient } from "../handler_base/clients/llm.ts";
import { createMilvusClient } from "../handler_base/clients/milvus.ts";
import { retrieve } from "../handler_base/clients/rag.ts";
import { createRerankerClient } from "../handler_base/clients/reranker.ts";
import {
  ChatRequestSchema,
  ChatResponseSchema,
  ChatStreamChunkSchema,
  decode,
  encode,
} from "../handler_base/messages.ts";
import { connectNats } from "../handler_base/natsutil.ts";
import {
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startNatsServer,
} from "../handler_base/testing/mod.ts";
import { chatMessages, DEFAULT_SYSTEM_PROMPT } from "../services/chat/prompt.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const iterations = Number(args.iterations ?? 200);
const warmup = Math.max(5, Math.round(iterations / 10));
const QUERY = "What does JetStream add to NATS?";
const REPLY = Array.from({ length: 40 }, (_, i) => `token${i}`).join(" ");

await using server = await startNatsServer({ jetstream: false });
await using llm = startFakeLlm({ reply: REPLY });
await using embeddings = startFakeEmbeddings({ dimensions: 1024 });
await using milvus = startFakeMilvus();
await using reranker = startFakeReranker();

// The time the fake sends its first content delta (piece 0 is the role chunk).
let firstTokenSentAt = 0;
llm.config.pace = (index) => {
  if (index === 1) firstTokenSentAt = performance.now();
  return Promise.resolve();
};

const service = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", "services/chat.ts"],
  cwd: new URL("../", import.meta.url).pathname,
  env: {
    NATS_URL: server.url,
    HEALTH_PORT: "0",
    LOG_LEVEL: "info",
    VLLM_URL: llm.url,
    EMBEDDINGS_URL: embeddings.url,
    RERANKER_URL: reranker.url,
    MILVUS_HOST: "127.0.0.1",
    MILVUS_PORT: new URL(milvus.url).port,
    CHAT_STREAM_MIN_INTERVAL_MS: "0",
    CHAT_CONCURRENCY: "64",
  },
  stdout: "null",
  stderr: "piped",
}).spawn();
const serviceLog = service.stderr.pipeThrough(new TextDecoderStream()).getReader();
for (let text = ""; !text.includes('"msg":"Serving"');) {
  const { value, done } = await serviceLog.read();
  if (done) throw new Error(`chat-handler did not start: ${text}`);
  text += value;
}
// Keep draining, so the service never blocks on a full pipe.
const drained = (async () => {
  while (!(await serviceLog.read()).done);
})();

const nc = await connectNats({ servers: server.url, name: "bench" });
const rag = {
  embeddings: createEmbeddingsClient({ baseUrl: embeddings.url }),
  milvus: createMilvusClient({ baseUrl: milvus.url }),
  reranker: createRerankerClient({ baseUrl: reranker.url }),
};
const rawLlm = createLlmClient({ baseUrl: llm.url });

/** The backend calls of one RAG + rerank chat, made directly; returns ms. */
async function rawChat(): Promise<number> {
  const started = performance.now();
  const { context } = await retrieve(QUERY, rag, { topK: 5, rerank: true, keep: 3 });
  await rawLlm.generate(chatMessages(DEFAULT_SYSTEM_PROMPT, QUERY, context));
  return performance.now() - started;
}

/** The same chat through chat-handler; returns ms. */
async function serviceChat(i: number): Promise<number> {
  const started = performance.now();
  const reply = await nc.request(
    "ai.chat.request",
    encode(ChatRequestSchema, {
      requestId: `b${i}`,
      message: QUERY,
      enableRag: true,
      enableReranker: true,
    }),
    { timeout: 10_000 },
  );
  const elapsed = performance.now() - started;
  if (!decode(ChatResponseSchema, reply.data).success) throw new Error("Chat failed");
  return elapsed;
}

/** First token sent by the fake -> first delta out of a raw streaming client; ms. */
async function rawFirstToken(): Promise<number> {
  let first = 0;
  for await (const _ of rawLlm.stream([{ role: "user", content: QUERY }])) {
    first ||= performance.now();
  }
  return first - firstTokenSentAt;
}

/** First token sent by the fake -> first ChatStreamChunk at a subscriber; ms. */
async function serviceFirstToken(i: number): Promise<number> {
  const requestId = `s${i}`;
  const sub = nc.subscribe(`ai.chat.response.stream.${requestId}`);
  await nc.flush();
  let first = 0;
  nc.publish(
    "ai.chat.request",
    encode(ChatRequestSchema, { requestId, message: QUERY, enableStreaming: true }),
  );
  for await (const msg of sub) {
    first ||= performance.now();
    if (decode(ChatStreamChunkSchema, msg.data).done) break;
  }
  sub.unsubscribe();
  return first - firstTokenSentAt;
}

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

const samples = {
  raw: [] as number[],
  service: [] as number[],
  rawFirst: [] as number[],
  serviceFirst: [] as number[],
};
for (let i = 0; i < warmup + iterations; i++) {
  const measured = i >= warmup;
  const results = [
    await rawChat(),
    await serviceChat(i),
    await rawFirstToken(),
    await serviceFirstToken(i),
  ];
  if (!measured) continue;
  samples.raw.push(results[0]!);
  samples.service.push(results[1]!);
  samples.rawFirst.push(results[2]!);
  samples.serviceFirst.push(results[3]!);
}

const ms = (value: number) => value.toFixed(2);
const row = (what: string, values: number[]) =>
  `| ${what} | ${ms(percentile(values, 0.5))} | ${ms(percentile(values, 0.95))} |`;
const overhead = percentile(samples.service, 0.5) - percentile(samples.raw, 0.5);
const firstOverhead = percentile(samples.serviceFirst, 0.5) - percentile(samples.rawFirst, 0.5);
console.log(
  `chat-handler, ${iterations} iterations (after ${warmup} warm-up), Deno ${Deno.version.deno}\n`,
);
console.log("| measure | p50 ms | p95 ms |");
console.log("|---|---|---|");
console.log(row("raw backends: embed + search + rerank + generate", samples.raw));
console.log(row("chat-handler: same chat, NATS request-reply", samples.service));
console.log(`| overhead per chat (difference of the medians) | ${ms(overhead)} | |`);
console.log(row("first LLM token -> first delta, raw client", samples.rawFirst));
console.log(row("first LLM token -> first ChatStreamChunk at subscriber", samples.serviceFirst));
console.log(`| overhead on the first token (difference of the medians) | ${ms(firstOverhead)} | |`);

await nc.close();
service.kill("SIGTERM");
await service.status;
await drained;
