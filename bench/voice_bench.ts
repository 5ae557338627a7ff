/**
 * What sentence-chunked synthesis buys voice-assistant, and what the service
 * adds on top of its backends, in one run against one local nats-server and
 * fake backends with fixed delays (STT per request, LLM per token, TTS per
 * request). Three paths, alternating round by round:
 *
 * - **service**: a VoiceRequest through NATS to the voice endpoint; time to
 *   the first TTSAudioChunk and to the VoiceResponse.
 * - **sequential**: the earlier pipeline, with the same clients and no NATS:
 *   transcribe, the whole LLM answer, then one TTS call for all of it.
 * - **direct**: the chunked pipeline's backend calls alone, with the same
 *   clients and no NATS: transcribe, stream the LLM until the first sentence
 *   is complete, synthesize it; its first audio is the backends' own time.
 *
 * Prints a markdown table of medians and p95, the ratio of the service to the
 * sequential pipeline, and the overhead of the first audio beyond the
 * backends' time (service minus direct; the target is under 20 ms at p50).
 *
 * Run: `deno run -A bench/voice_bench.ts [--n=15] [--stt-ms=100] [--token-ms=20] [--tts-ms=150]`
 *
 * @module
 */
import { delay } from "@homelab/handler-base/async";
import { createLlmClient } from "@homelab/handler-base/clients/llm";
import { createSttClient } from "@homelab/handler-base/clients/stt";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { createService } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import { encode, VoiceRequestSchema } from "@homelab/handler-base/messages";
import { connectNats } from "@homelab/handler-base/natsutil";
import {
  startFakeLlm,
  startFakeWhisper,
  startFakeXtts,
  startNatsServer,
} from "@homelab/handler-base/testing";
import { createVoiceEndpoints } from "../services/voice/handler.ts";
import { SentenceChunker } from "../services/voice/sentences.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const n = Number(args.n ?? 15);
const sttMs = Number(args["stt-ms"] ?? 100);
const tokenMs = Number(args["token-ms"] ?? 20);
const ttsMs = Number(args["tts-ms"] ?? 150);
const ANSWER = "Sure, JetStream keeps each message in a stream on disk. " +
  "Consumers read the messages back at their own pace, from any position. " +
  "Acknowledged messages can be removed by a retention policy. " +
  "That makes it a good fit for work queues and event logs alike.";
const AUDIO = new Uint8Array(32000); // one second of 16 kHz mono s16le

const logger = createLogger({ service: "bench", level: "error" });
await using server = await startNatsServer({ jetstream: false });
await using whisper = startFakeWhisper({ transcript: "How does JetStream store messages?" });
await using llm = startFakeLlm({ reply: ANSWER, delayMs: tokenMs });
await using xtts = startFakeXtts({ chunkBytes: 4800 });
whisper.override(async () => void await delay(sttMs));
xtts.override(async (request) => {
  if (request.path === "/tts_stream") await delay(ttsMs);
  return undefined;
});

function clients() {
  return {
    stt: createSttClient({ baseUrl: whisper.url }),
    llm: createLlmClient({ baseUrl: llm.url }),
    tts: createTtsClient({ baseUrl: xtts.url }),
  };
}
const direct = clients();
const serviceConn = await connectNats({ servers: server.url, name: "voice-assistant" });
const client = await connectNats({ servers: server.url, name: "bench-client" });
const service = createService(serviceConn, {
  name: "voice-assistant",
  logger,
  endpoints: createVoiceEndpoints(clients(), { enableRag: false }),
});
await service.start();

interface Timing {
  firstMs: number;
  totalMs: number;
}

let round = 0;
async function viaService(): Promise<Timing> {
  const id = `bench-${round++}`;
  const done = Promise.withResolvers<void>();
  let firstMs = 0;
  const start = performance.now();
  const sub = client.subscribe(`ai.voice.response.>`, {
    callback: (_error, msg) => {
      if (!msg.subject.endsWith(`.${id}`)) return;
      if (msg.subject.startsWith("ai.voice.response.audio.")) {
        firstMs ||= performance.now() - start;
      } else {
        done.resolve();
      }
    },
  });
  await client.flush();
  const t0 = performance.now();
  client.publish("ai.voice.request", encode(VoiceRequestSchema, { requestId: id, audio: AUDIO }));
  await done.promise;
  sub.unsubscribe();
  const offset = t0 - start;
  return { firstMs: firstMs - offset, totalMs: performance.now() - t0 };
}

async function sequential(): Promise<Timing> {
  const start = performance.now();
  const heard = await direct.stt.transcribe(AUDIO);
  let answer = "";
  const messages = [{ role: "user" as const, content: heard.text }];
  for await (const delta of direct.llm.stream(messages)) answer += delta;
  let firstMs = 0;
  for await (const _ of direct.tts.synthesizeStream(answer)) {
    firstMs ||= performance.now() - start;
  }
  return { firstMs, totalMs: performance.now() - start };
}

async function directFirstAudio(): Promise<Timing> {
  const start = performance.now();
  const heard = await direct.stt.transcribe(AUDIO);
  const chunker = new SentenceChunker();
  let first: string | undefined;
  const stream = direct.llm.stream([{ role: "user", content: heard.text }]);
  for await (const delta of stream) {
    first = chunker.push(delta)[0];
    if (first) break;
  }
  let firstMs = 0;
  for await (const _ of direct.tts.synthesizeStream(first ?? ANSWER)) {
    firstMs ||= performance.now() - start;
    break;
  }
  return { firstMs, totalMs: firstMs };
}

const paths = { service: viaService, sequential, direct: directFirstAudio };
const results: Record<keyof typeof paths, Timing[]> = { service: [], sequential: [], direct: [] };
for (let i = 0; i < n + 2; i++) {
  for (
    const [name, run] of Object.entries(paths) as [keyof typeof paths, () => Promise<Timing>][]
  ) {
    const timing = await run();
    if (i >= 2) results[name].push(timing); // two warm-up rounds
  }
}

function quantile(values: number[], q: number): number {
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
const f = (ms: number) => ms.toFixed(1);
const stat = (name: keyof typeof paths, key: keyof Timing) =>
  results[name].map((timing) => timing[key]);

console.log(
  `Backends: STT ${sttMs} ms, LLM ${tokenMs} ms per token (${
    ANSWER.split(" ").length
  } words), TTS ${ttsMs} ms per request; ${n} rounds\n`,
);
console.log("| path | first audio p50 | first audio p95 | total p50 | total p95 |");
console.log("| ---- | --------------- | --------------- | --------- | --------- |");
for (const name of ["service", "sequential"] as const) {
  console.log(
    `| ${name} | ${f(quantile(stat(name, "firstMs"), 0.5))} ms | ${
      f(quantile(stat(name, "firstMs"), 0.95))
    } ms | ${f(quantile(stat(name, "totalMs"), 0.5))} ms | ${
      f(quantile(stat(name, "totalMs"), 0.95))
    } ms |`,
  );
}
console.log(
  `| direct (backends only) | ${f(quantile(stat("direct", "firstMs"), 0.5))} ms | ${
    f(quantile(stat("direct", "firstMs"), 0.95))
  } ms | | |`,
);
const ratio = (key: keyof Timing) =>
  (quantile(stat("service", key), 0.5) / quantile(stat("sequential", key), 0.5)).toFixed(2);
const overhead = results.service.map((timing, i) => timing.firstMs - results.direct[i]!.firstMs);
console.log(
  `\nservice / sequential at p50: first audio ${ratio("firstMs")}, total ${ratio("totalMs")}`,
);
console.log(
  `first-audio overhead beyond the backends (service - direct, per round): p50 ${
    f(quantile(overhead, 0.5))
  } ms, p95 ${f(quantile(overhead, 0.95))} ms`,
);

await service.stop();
await serviceConn.close();
await client.close();
