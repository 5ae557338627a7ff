import assert from "node:assert/strict";
import { createSttClient } from "@homelab/handler-base/clients/stt";
import { parseWav } from "@homelab/handler-base/clients/wav";
import { createService } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import {
  AudioEncoding,
  decode,
  ErrorResponseSchema,
  MSG_TYPE_HEADER,
  type STTInterrupt,
  STTInterruptSchema,
  STTStreamMessageSchema,
  type STTTranscription,
  STTTranscriptionSchema,
} from "@homelab/handler-base/messages";
import { connectNats, publish } from "@homelab/handler-base/natsutil";
import { startFakeWhisper, startNatsServer } from "@homelab/handler-base/testing";
import type { MessageInitShape } from "@homelab/handler-base/messages";
import { createSttHandler, type SttHandlerOptions } from "./handler.ts";
import type { SttSettings } from "./session.ts";
import { mixStream, speak } from "./test_helpers.ts";
import { loadFvad } from "./vad.ts";

const fvad = await loadFvad();
const logger = createLogger({
  service: "stt-test",
  level: (Deno.env.get("STT_TEST_LOG") ?? "error") as "error",
});

export const TEST_SETTINGS: SttSettings = {
  vadMode: 2,
  frameMs: 20,
  prerollMs: 300,
  silenceMs: 600,
  minSpeechMs: 200,
  partialMs: 0,
  maxSegmentMs: 30_000,
  maxPending: 2,
};

type Out =
  | { kind: "t"; t: STTTranscription }
  | { kind: "i"; i: STTInterrupt }
  | { kind: "e"; type: string; message: string };

/** Durations in ms of the WAV files a fake Whisper received. */
function durationMs(file: Uint8Array): number {
  const { format, data } = parseWav(file);
  return (data.length / 2 / format.sampleRate) * 1000;
}

async function setup(
  options: Partial<SttHandlerOptions> = {},
  settings: Partial<SttSettings> = {},
) {
  const server = await startNatsServer({ jetstream: false });
  const whisper = startFakeWhisper({ transcript: ({ file }) => `${Math.round(durationMs(file))}` });
  const nc = await connectNats({ servers: server.url, name: "stt-test" });
  const client = await connectNats({ servers: server.url, name: "client" });
  const handler = createSttHandler({
    stt: createSttClient({ baseUrl: whisper.url, retries: 0 } as never),
    fvad,
    settings: { ...TEST_SETTINGS, ...settings },
    logger,
    ...options,
  });
  const service = createService(nc, { name: "stt-module", endpoints: [handler.endpoint], logger });
  await service.start();
  const out = new Map<string, Out[]>();
  const waiters: Array<() => void> = [];
  const sub = client.subscribe("ai.voice.transcription.>", {
    callback: (_e, msg) => {
      const sid = msg.subject.split(".").at(-1)!;
      const type = msg.headers?.get(MSG_TYPE_HEADER);
      let item: Out;
      if (type === STTInterruptSchema.typeName) {
        item = { kind: "i", i: decode(STTInterruptSchema, msg.data) };
      } else if (type === ErrorResponseSchema.typeName) {
        const e = decode(ErrorResponseSchema, msg.data);
        item = { kind: "e", type: e.type, message: e.message };
      } else item = { kind: "t", t: decode(STTTranscriptionSchema, msg.data) };
      out.set(sid, [...(out.get(sid) ?? []), item]);
      for (const w of waiters.splice(0)) w();
    },
  });
  await client.flush();
  function send(sid: string, message: MessageInitShape<typeof STTStreamMessageSchema>) {
    publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, message);
  }
  async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) {
        throw new Error(
          `Timed out waiting for ${what}: ${
            JSON.stringify([...out], (_k, v) => typeof v === "bigint" ? Number(v) : v).slice(
              0,
              3000,
            )
          }`,
        );
      }
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
  /** Streams PCM in chunks, then `end`, and waits until the handler processed it. */
  async function stream(sid: string, pcm: Uint8Array, chunkBytes: number) {
    send(sid, { type: "start", sampleRate: 16000 });
    for (let i = 0; i < pcm.length; i += chunkBytes) {
      send(sid, { type: "chunk", audio: pcm.subarray(i, i + chunkBytes) });
    }
    send(sid, { type: "end" });
    await client.flush();
  }
  return {
    whisper,
    handler,
    out,
    send,
    until,
    stream,
    client,
    async [Symbol.asyncDispose]() {
      sub.unsubscribe();
      await service.stop({ graceMs: 1000 });
      await handler[Symbol.asyncDispose]();
      await client.close();
      await nc.close();
      await whisper.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

const finals = (items: Out[] = []) =>
  items.filter((o): o is Extract<Out, { kind: "t" }> => o.kind === "t" && o.t.isFinal);

Deno.test("stt: the VAD finds each utterance in silence and noise; only speech reaches Whisper; finals in order", async () => {
  const a = await speak("turn on the kitchen lights");
  const b = await speak("what is the weather like tomorrow in the garden");
  const { pcm, utterances } = mixStream([1000, a, 1500, b, 1200], { noise: 600 });
  await using t = await setup();
  await t.stream("s1", pcm, 640);
  await t.until(
    () => t.handler.sessions.size === 0 && finals(t.out.get("s1")).length >= 2,
    "two finals",
  );
  const results = finals(t.out.get("s1"));
  assert.equal(results.length, 2);
  assert.deepEqual(results.map((r) => r.t.sequence), [0, 1]);
  for (const r of results) {
    assert.equal(r.t.isPartial, false);
    assert.equal(r.t.hasVoiceActivity, true);
    assert.equal(r.t.state, "listening");
    assert.equal(r.t.sessionId, "s1");
  }
  // What Whisper got: two files, each about one utterance long (pre-roll and tail included).
  const durations = results.map((r) => Number(r.t.transcript));
  assert.equal(t.whisper.requests.length, 2);
  utterances.forEach((u, i) => {
    const length = u.endMs - u.startMs;
    assert.ok(durations[i]! >= length - 250, `segment ${i} ${durations[i]} ms covers ${length} ms`);
    assert.ok(
      durations[i]! <= length + 300 + 200 + 250,
      `segment ${i} ${durations[i]} ms is not much longer than ${length} ms`,
    );
  });
  const totalSent = durations.reduce((x, y) => x + y, 0);
  const totalStream = (pcm.length / 32000) * 1000;
  assert.ok(totalSent < totalStream - 3000, "silence and noise stayed out");
});

Deno.test("stt: partials every STT_PARTIAL_MS of long speech, then the final; sequence strictly increasing", async () => {
  const long = await speak(
    "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm kitchen floor all afternoon",
  );
  const { pcm } = mixStream([500, long, 1000]);
  await using t = await setup({}, { partialMs: 1000 });
  // Paced like a live source: each half second of audio is sent once the
  // session has nothing waiting for the backend.
  t.send("p1", { type: "start" });
  for (let i = 0; i < pcm.length; i += 16_000) {
    for (let j = i; j < Math.min(i + 16_000, pcm.length); j += 3200) {
      t.send("p1", { type: "chunk", audio: pcm.subarray(j, Math.min(j + 3200, i + 16_000)) });
    }
    await t.client.flush();
    await t.handler.idle();
    await t.until(
      async () => (await t.handler.sessions.run("p1", (s) => s.pending, { open: false })) === 0,
      "backend idle",
    );
  }
  t.send("p1", { type: "end" });
  await t.until(
    () => finals(t.out.get("p1")).length >= 1 && t.handler.sessions.size === 0,
    "final",
  );
  const items = t.out.get("p1")!.filter((o) => o.kind === "t").map((o) =>
    (o as { t: STTTranscription }).t
  );
  const partials = items.filter((x) => x.isPartial);
  assert.ok(partials.length >= 2, `${partials.length} partials`);
  assert.equal(items.at(-1)!.isFinal, true);
  assert.ok(partials.every((p) => !p.isFinal));
  for (let i = 1; i < items.length; i++) assert.ok(items[i]!.sequence > items[i - 1]!.sequence);
});

Deno.test("stt: barge-in while responding publishes an interrupt before any transcription; not while listening", async () => {
  const a = await speak("stop talking please");
  const { pcm } = mixStream([600, a, 1000]);
  await using t = await setup();
  t.send("r1", { type: "start", sampleRate: 16000, speakerId: "alice" });
  t.send("r1", { type: "state_change", state: "responding" });
  for (let i = 0; i < pcm.length; i += 960) {
    t.send("r1", { type: "chunk", audio: pcm.subarray(i, i + 960) });
  }
  t.send("r1", { type: "end" });
  await t.stream("l1", pcm, 960);
  await t.until(
    () => finals(t.out.get("r1")).length === 1 && finals(t.out.get("l1")).length === 1,
    "finals",
  );
  const r1 = t.out.get("r1")!;
  assert.equal(r1[0]!.kind, "i");
  assert.equal((r1[0] as { i: STTInterrupt }).i.type, "interrupt");
  assert.equal((r1[0] as { i: STTInterrupt }).i.speakerId, "alice");
  assert.equal(r1.filter((o) => o.kind === "i").length, 1);
  assert.equal(finals(r1)[0]!.t.state, "listening");
  assert.equal(finals(r1)[0]!.t.speakerId, "alice");
  assert.ok(t.out.get("l1")!.every((o) => o.kind === "t"));
});

Deno.test("stt: idle sessions close (with their final) on the injected clock", async () => {
  let now = 0;
  const a = await speak("hello there");
  await using t = await setup({ idleMs: 30_000, now: () => now });
  t.send("idle1", { type: "start" });
  t.send("idle1", { type: "chunk", audio: mixStream([400, a]).pcm }); // speech still open: no end
  await t.client.flush();
  await t.until(() => t.handler.sessions.size === 1, "session open");
  await t.handler.idle();
  now += 29_000;
  assert.deepEqual(await t.handler.sessions.sweep(), []);
  now += 2_000;
  assert.deepEqual(await t.handler.sessions.sweep(), ["idle1"]);
  await t.until(() => finals(t.out.get("idle1")).length === 1, "flushed final");
  assert.equal(t.handler.sessions.size, 0);
});

Deno.test("stt: chunks of 1 byte, odd sizes and 1 MB give the same segments; garbage fails cleanly", async () => {
  const a = await speak("turn on the kitchen lights");
  const { pcm } = mixStream([700, a, 900]);
  await using t = await setup({ maxQueuedBytes: 64 * 1024 * 1024 });
  // 250 ms in the middle of the speech in single bytes, the rest in 640-byte chunks.
  t.send("one", { type: "start" });
  const middle = 32_000; // 1 s in: inside the utterance
  for (let i = 0; i < middle; i += 640) {
    t.send("one", { type: "chunk", audio: pcm.subarray(i, Math.min(i + 640, middle)) });
  }
  for (let i = middle; i < middle + 8000; i++) {
    t.send("one", { type: "chunk", audio: pcm.subarray(i, i + 1) });
  }
  for (let i = middle + 8000; i < pcm.length; i += 640) {
    t.send("one", { type: "chunk", audio: pcm.subarray(i, i + 640) });
  }
  t.send("one", { type: "end" });
  await t.stream("odd", pcm, 333);
  const big = new Uint8Array(1_000_000); // 1 MB, under the server's 1 MiB max_payload
  big.set(pcm.subarray(0, Math.min(pcm.length, big.length)));
  await t.stream("mb", big, big.length);
  // Garbage: random bytes as audio, a bad encoding, a bad state, an unknown type.
  const noise = crypto.getRandomValues(new Uint8Array(32_000));
  await t.stream("garbage", noise, 1001);
  t.send("mp3", { type: "start", audioEncoding: AudioEncoding.MP3 });
  t.send("mp3", { type: "chunk", audio: pcm.subarray(0, 3200) });
  t.send("bad", { type: "state_change", state: "dancing" });
  t.send("bad", { type: "rewind" });
  t.client.publish("ai.voice.stream.undecodable", new Uint8Array([0xff, 0xff, 0xff]));
  await t.client.flush();
  await t.until(
    () =>
      finals(t.out.get("odd")).length === 1 && finals(t.out.get("mb")).length === 1 &&
      (t.out.get("mp3")?.length ?? 0) >= 1 && (t.out.get("bad")?.length ?? 0) >= 2 &&
      finals(t.out.get("one")).length === 1,
    "results",
  );
  assert.deepEqual(t.out.get("mp3"), [{
    kind: "e",
    type: "InvalidArgument",
    message: "Cannot take the audio format: MP3 is compressed; send PCM s16le or WAV",
  }]);
  assert.ok(t.out.get("bad")!.every((o) => o.kind === "e" && o.type === "InvalidArgument"));
  const odd = Number(finals(t.out.get("odd"))[0]!.t.transcript);
  const mb = Number(finals(t.out.get("mb"))[0]!.t.transcript);
  const one = Number(finals(t.out.get("one"))[0]!.t.transcript);
  assert.ok(Math.abs(odd - mb) <= 60, `${odd} vs ${mb}`);
  assert.ok(Math.abs(odd - one) <= 60, `${odd} vs ${one}`);
  // A later good session on the same handler still works.
  await t.stream("after", pcm, 640);
  await t.until(() => finals(t.out.get("after")).length === 1, "after");
});

Deno.test("stt: 50 concurrent sessions stay separate", async () => {
  const phrases = ["red", "green light on", "open the blue door now"];
  const clips = await Promise.all(phrases.map((p) => speak(p)));
  await using t = await setup();
  const expected = new Map<string, number>();
  const streams = Array.from({ length: 50 }, (_, i) => {
    const clip = clips[i % 3]!;
    const { pcm } = mixStream([300 + (i % 7) * 50, clip, 800]);
    expected.set(`c${i}`, i % 3);
    return { sid: `c${i}`, pcm };
  });
  // Interleave the chunks of all sessions.
  for (const s of streams) t.send(s.sid, { type: "start" });
  for (let offset = 0; streams.some((s) => offset < s.pcm.length); offset += 1280) {
    for (const s of streams) {
      if (offset < s.pcm.length) {
        t.send(s.sid, { type: "chunk", audio: s.pcm.subarray(offset, offset + 1280) });
      }
    }
  }
  for (const s of streams) t.send(s.sid, { type: "end" });
  await t.client.flush();
  await t.until(
    () =>
      streams.every((s) => finals(t.out.get(s.sid)).length >= 1) && t.handler.sessions.size === 0,
    "all",
    60_000,
  );
  const byClip = new Map<number, number[]>();
  for (const s of streams) {
    const items = finals(t.out.get(s.sid));
    assert.equal(items.length, 1, s.sid);
    assert.equal(items[0]!.t.sessionId, s.sid);
    const clip = expected.get(s.sid)!;
    byClip.set(clip, [...(byClip.get(clip) ?? []), Number(items[0]!.t.transcript)]);
  }
  // Each session's segment is as long as its own clip (not mixed with another session's audio).
  for (const [clip, durations] of byClip) {
    const span = Math.max(...durations) - Math.min(...durations);
    assert.ok(span <= 100, `clip ${clip}: ${durations}`);
  }
});

Deno.test("stt: too many sessions are refused with Overloaded on their subject; others go on", async () => {
  await using t = await setup({ maxSessions: 2 });
  t.send("m1", { type: "start" });
  t.send("m2", { type: "start" });
  t.send("m3", { type: "start" });
  await t.client.flush();
  await t.until(() => (t.out.get("m3")?.length ?? 0) === 1, "refusal");
  assert.equal((t.out.get("m3")![0] as { type: string }).type, "Overloaded");
  assert.equal(t.handler.sessions.size, 2);
});
