/**
 * stt-module's own costs:
 *
 * 1. VAD throughput: 20 ms frames of 16 kHz speech and noise classified by
 *    one libfvad detector, and the same audio through a whole session
 *    (conversion, VAD, segmenter; a backend that answers at once), in frames
 *    per second on one core, and what that means in real-time streams (50
 *    frames per second each).
 * 2. End of speech to final result: the chunk that completes the trailing
 *    silence is published, and the clock runs until the final STTTranscription
 *    arrives over NATS; the same segment sent straight to the fake Whisper
 *    with the same client gives the backend's own time. Reported as p50 and
 *    p99 of both and of the difference of the medians.
 *
 * Run: `deno run -A bench/stt_bench.ts [--n=100] [--seconds=20]`
 *
 * @module
 */
import { createSttClient } from "@homelab/handler-base/clients/stt";
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { createService } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import { STTStreamMessageSchema, STTTranscriptionSchema } from "@homelab/handler-base/messages";
import { connectNats, decodeMsg, publish } from "@homelab/handler-base/natsutil";
import { startFakeWhisper, startNatsServer } from "@homelab/handler-base/testing";
import { createSttHandler } from "../services/stt/handler.ts";
import { SttSession } from "../services/stt/session.ts";
import { mixStream, speak } from "../services/stt/test_helpers.ts";
import { createVad, loadFvad } from "../services/stt/vad.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const n = Number(args.n ?? 100);
const seconds = Number(args.seconds ?? 20);
const logger = createLogger({ service: "bench", level: "error" });
const fvad = await loadFvad();
const settings = {
  vadMode: 2 as const,
  frameMs: 20,
  prerollMs: 300,
  silenceMs: 600,
  minSpeechMs: 200,
  partialMs: 0,
  maxSegmentMs: 30_000,
  maxPending: 2,
};

const phrase = await speak("turn on the kitchen lights and close the blinds");
const parts: (number | Int16Array)[] = [];
while (parts.length < 2 * Math.ceil(seconds / 3.5)) parts.push(700, phrase);
const { samples, pcm } = mixStream(parts, { noise: 400 });
const frames = Math.floor(samples.length / 320);

// 1a. The detector alone.
{
  using vad = createVad(fvad, { mode: 2 });
  const frameList = Array.from({ length: frames }, (_, i) => samples.slice(i * 320, i * 320 + 320));
  for (let i = 0; i < 200; i++) vad.isSpeech(frameList[i]!); // warm-up
  const start = performance.now();
  for (const f of frameList) vad.isSpeech(f);
  const ms = performance.now() - start;
  const fps = frames / (ms / 1000);
  console.log(
    `| VAD alone (libfvad wasm, mode 2, 20 ms) | ${Math.round(fps)} frames/s | ${
      Math.round(fps / 50)
    } real-time streams |`,
  );
}
// 1b. A whole session: conversion, VAD, segmenter; a backend that answers at once.
{
  const stt = { transcribe: () => Promise.resolve({ text: "ok" }) };
  const sink = { transcription() {}, interrupt() {}, error() {} };
  const session = new SttSession({ sessionId: "b", fvad, stt, sink, settings, log: logger });
  await session.start({});
  const start = performance.now();
  for (let i = 0; i < pcm.length; i += 3200) await session.chunk(pcm.subarray(i, i + 3200));
  await session.finish("end");
  const ms = performance.now() - start;
  const fps = frames / (ms / 1000);
  console.log(
    `| Session pipeline (100 ms chunks) | ${Math.round(fps)} frames/s | ${
      Math.round(fps / 50)
    } real-time streams |`,
  );
}

// 2. End of speech to final, through NATS, against the backend alone.
await using server = await startNatsServer({ jetstream: false });
await using whisper = startFakeWhisper({ transcript: "turn on the kitchen lights" });
const handler = createSttHandler({
  stt: createSttClient({ baseUrl: whisper.url }),
  fvad,
  settings,
  logger,
});
const direct = createSttClient({ baseUrl: whisper.url });
const serviceConn = await connectNats({ servers: server.url, name: "stt-module" });
const client = await connectNats({ servers: server.url, name: "bench-client" });
const service = createService(serviceConn, {
  name: "stt-module",
  logger,
  endpoints: [handler.endpoint],
});
await service.start();
const utterance = mixStream([400, phrase, 700]).pcm;
const cut = utterance.length - 6400; // the last 200 ms completes the trailing silence
const segment = wrapPcmAsWav(mixStream([300, phrase, 200]).pcm);
const viaService: number[] = [];
const viaBackend: number[] = [];
for (let i = 0; i < n + 5; i++) {
  const sid = `bench${i}`;
  const sub = client.subscribe(`ai.voice.transcription.${sid}`, { max: 1 });
  publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, { type: "start" });
  for (let o = 0; o < cut; o += 3200) {
    publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, {
      type: "chunk",
      audio: utterance.subarray(o, Math.min(o + 3200, cut)),
    });
  }
  await client.flush();
  await handler.idle();
  const t0 = performance.now();
  publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, {
    type: "chunk",
    audio: utterance.subarray(cut),
  });
  for await (const msg of sub) decodeMsg(STTTranscriptionSchema, msg);
  const t1 = performance.now();
  publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, { type: "end" });
  const d0 = performance.now();
  await direct.transcribe(segment);
  const d1 = performance.now();
  if (i >= 5) {
    viaService.push(t1 - t0);
    viaBackend.push(d1 - d0);
  }
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const f = (x: number) => x.toFixed(2);
console.log("\n| End of speech to final (ms) | p50 | p99 |");
console.log("| --- | --- | --- |");
console.log(
  `| Through stt-module over NATS | ${f(pct(viaService, 50))} | ${f(pct(viaService, 99))} |`,
);
console.log(
  `| Backend alone (same client, same segment) | ${f(pct(viaBackend, 50))} | ${
    f(pct(viaBackend, 99))
  } |`,
);
console.log(
  `| Difference of the percentiles | ${f(pct(viaService, 50) - pct(viaBackend, 50))} | ${
    f(pct(viaService, 99) - pct(viaBackend, 99))
  } |`,
);
await service.stop();
await handler[Symbol.asyncDispose]();
await client.close();
await serviceConn.close();
