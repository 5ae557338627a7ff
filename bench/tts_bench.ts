/**
 * What tts-module adds on top of its backend: time to the first audio chunk,
 * time to the whole stream, and time to a full (non-streamed) synthesis, each
 * measured through the service over NATS and by calling the fake XTTS server
 * directly with the same client, in one run against one local nats-server.
 * Requests go one at a time, and the two paths alternate so that drift on a
 * shared machine hits both alike. Prints a markdown table with medians, p95,
 * the overhead in milliseconds and the ratio.
 *
 * Run: `deno run -A bench/tts_bench.ts [--n=200] [--chars=200]`
 *
 * @module
 */
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { createService } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import {
  TTSAudioChunkSchema,
  TTSFullResponseSchema,
  TTSRequestSchema,
} from "@homelab/handler-base/messages";
import { connectNats, decodeMsg, request } from "@homelab/handler-base/natsutil";
import { startFakeXtts, startNatsServer } from "@homelab/handler-base/testing";
import { createTtsEndpoints } from "../services/tts/handler.ts";
import { startVoiceRegistry } from "../services/tts/voices.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const n = Number(args.n ?? 200);
const warmup = Math.max(5, Math.floor(n / 10));
const text = "The quick brown fox jumps over the lazy dog. ".repeat(20).slice(
  0,
  Number(args.chars ?? 200),
);

const logger = createLogger({ service: "bench", level: "error" });
await using server = await startNatsServer({ jetstream: false });
await using xtts = startFakeXtts();
const direct = createTtsClient({ baseUrl: xtts.url });
const serviceClient = createTtsClient({ baseUrl: xtts.url });
using voices = await startVoiceRegistry({ tts: serviceClient, logger });
const serviceConn = await connectNats({ servers: server.url, name: "tts-module" });
const client = await connectNats({ servers: server.url, name: "bench-client" });
const service = createService(serviceConn, {
  name: "tts-module",
  logger,
  endpoints: createTtsEndpoints({ tts: serviceClient, voices }),
});
await service.start();

interface Timing {
  firstMs: number;
  totalMs: number;
}

async function directStream(): Promise<Timing> {
  const start = performance.now();
  let firstMs = 0;
  for await (const _ of direct.synthesizeStream(text)) firstMs ||= performance.now() - start;
  return { firstMs, totalMs: performance.now() - start };
}

let session = 0;
async function serviceStream(): Promise<Timing> {
  const sid = `bench-${session++}`;
  const sub = client.subscribe(`ai.voice.tts.audio.${sid}`);
  await client.flush();
  const start = performance.now();
  let firstMs = 0;
  const reply = request(
    client,
    `ai.voice.tts.request.${sid}`,
    TTSRequestSchema,
    { text, stream: true },
    TTSFullResponseSchema,
    { timeout: 10_000 },
  );
  for await (const msg of sub) {
    firstMs ||= performance.now() - start;
    if (decodeMsg(TTSAudioChunkSchema, msg).isLast) break;
  }
  const totalMs = performance.now() - start;
  sub.unsubscribe();
  await reply;
  return { firstMs, totalMs };
}

async function directFull(): Promise<number> {
  const start = performance.now();
  await direct.synthesize(text);
  return performance.now() - start;
}

async function serviceFull(): Promise<number> {
  const start = performance.now();
  await request(
    client,
    `ai.voice.tts.request.bench-full`,
    TTSRequestSchema,
    { text },
    TTSFullResponseSchema,
    { timeout: 10_000 },
  );
  return performance.now() - start;
}

const samples = {
  directFirst: [] as number[],
  serviceFirst: [] as number[],
  directStream: [] as number[],
  serviceStream: [] as number[],
  directFull: [] as number[],
  serviceFull: [] as number[],
};
for (let i = 0; i < warmup + n; i++) {
  const record = i >= warmup;
  const d = await directStream();
  const s = await serviceStream();
  const df = await directFull();
  const sf = await serviceFull();
  if (!record) continue;
  samples.directFirst.push(d.firstMs);
  samples.serviceFirst.push(s.firstMs);
  samples.directStream.push(d.totalMs);
  samples.serviceStream.push(s.totalMs);
  samples.directFull.push(df);
  samples.serviceFull.push(sf);
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const ms = (v: number) => v.toFixed(2);
const audioBytes = xtts.pcmFor(text).length;
console.log(
  `\ntts-module vs. direct client, ${n} sequential requests each (after ${warmup} warm-up), ` +
    `${text.length} characters = ${audioBytes} bytes of PCM in ${
      Math.ceil(audioBytes / 4800)
    } backend pieces, fake XTTS without synthesis delay\n`,
);
console.log(
  "| metric | direct p50 (ms) | service p50 (ms) | overhead p50 (ms) | ratio p50 | direct p95 (ms) | service p95 (ms) |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|");
const rows: [string, number[], number[]][] = [
  ["time to first audio chunk (stream)", samples.directFirst, samples.serviceFirst],
  ["time to whole stream (is_last)", samples.directStream, samples.serviceStream],
  ["full synthesis (TTSFullResponse)", samples.directFull, samples.serviceFull],
];
for (const [name, d, s] of rows) {
  const dp50 = quantile(d, 0.5);
  const sp50 = quantile(s, 0.5);
  console.log(
    `| ${name} | ${ms(dp50)} | ${ms(sp50)} | ${ms(sp50 - dp50)} | ${(sp50 / dp50).toFixed(2)}x | ${
      ms(quantile(d, 0.95))
    } | ${ms(quantile(s, 0.95))} |`,
  );
}

await service.stop();
await serviceConn.close();
await client.close();
