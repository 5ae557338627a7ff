import assert from "node:assert/strict";
import { createTtsClient, type TtsApi } from "@homelab/handler-base/clients/tts";
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { RemoteError } from "@homelab/handler-base/errors";
import { createLogger } from "@homelab/handler-base/log";
import {
  AudioEncoding,
  encode,
  type MessageInitShape,
  TTSAudioChunkSchema,
  TTSFullResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceInfoSchema,
  TTSVoiceListResponseSchema,
  TTSVoiceRefreshResponseSchema,
} from "@homelab/handler-base/messages";
import { decodeMsg, request } from "@homelab/handler-base/natsutil";
import {
  collect,
  concatBytes,
  type FakeXttsConfig,
  startFakeXtts,
  startTestService,
} from "@homelab/handler-base/testing";
import { createTtsEndpoints, sessionIdOf } from "./handler.ts";
import { testWav, writeVoice } from "./test_helpers.ts";
import { startVoiceRegistry } from "./voices.ts";

const quiet = createLogger({ service: "test", level: "error", write: () => {} });

interface SetupOptions {
  xtts?: FakeXttsConfig;
  api?: TtsApi;
  ttsTimeoutMs?: number;
  defaultSpeaker?: string;
  maxChars?: number;
  concurrency?: number;
  timeoutMs?: number;
}

/** A fake XTTS, a voices directory with "narrator", and the service over a real nats-server. */
async function setup(options: SetupOptions = {}) {
  const xtts = startFakeXtts(options.xtts);
  const dir = await Deno.makeTempDir();
  await writeVoice(dir, "narrator", {
    "reference.wav": testWav(1000),
    "metadata.json": { language: "de", model_type: "xtts_v2", created_at: "2026-11-01T10:00:00Z" },
  });
  const tts = createTtsClient({
    baseUrl: xtts.url,
    api: options.api ?? "xtts",
    timeoutMs: options.ttsTimeoutMs ?? 10_000,
    retries: 0,
    ...(options.defaultSpeaker ? { defaultSpeaker: options.defaultSpeaker } : {}),
  });
  const voices = await startVoiceRegistry({ dir, tts, logger: quiet, refreshMs: 0 });
  const t = await startTestService({
    name: "tts-module",
    shutdownGraceMs: 1000,
    endpoints: createTtsEndpoints({
      tts,
      voices,
      maxReferenceBytes: 100_000,
      ...(options.defaultSpeaker ? { defaultSpeaker: options.defaultSpeaker } : {}),
      ...(options.maxChars ? { maxChars: options.maxChars } : {}),
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    }),
  });
  const client = t.nc;
  return {
    xtts,
    dir,
    client,
    /** Sends a TTSRequest for the session and waits for the reply. */
    synthesize(sessionId: string, req: MessageInitShape<typeof TTSRequestSchema>) {
      return t.request(
        `ai.voice.tts.request.${sessionId}`,
        TTSRequestSchema,
        req,
        TTSFullResponseSchema,
        { timeoutMs: 10_000 },
      );
    },
    /** Collects the statuses of a session (wildcards allowed). */
    async statuses(sessionId: string) {
      const statuses = t.collect(`ai.voice.tts.status.${sessionId}`, TTSStatusSchema);
      await client.flush();
      return statuses;
    },
    /** Collects the streamed chunks of a session (wildcards allowed). */
    async chunks(sessionId: string) {
      const chunks = t.collect(`ai.voice.tts.audio.${sessionId}`, TTSAudioChunkSchema);
      await client.flush();
      return chunks;
    },
    async [Symbol.asyncDispose]() {
      await t[Symbol.asyncDispose]();
      voices[Symbol.dispose]();
      await xtts.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Whether a status list has reached its end. */
function finished(statuses: { status: string }[]): boolean {
  return statuses.some((s) => s.status === "completed" || s.status === "error");
}

/** Asserts that the promise rejects with a RemoteError of this type and message. */
async function rejectsWith(promise: Promise<unknown>, type: string, message: string | RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.type, type);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

function clones(xtts: { requests: { path: string }[] }): number {
  return xtts.requests.filter((r) => r.path === "/clone_speaker").length;
}

/** The JSON body of the last synthesis request the fake received. */
function lastSynthesis(xtts: { requests: { path: string; json?: unknown }[] }) {
  const last = xtts.requests.filter((r) => r.path === "/tts" || r.path === "/tts_stream").at(-1);
  return last?.json as { language: string; speaker_embedding: number[] } | undefined;
}

Deno.test("sessionIdOf() takes the last token and refuses subjects without one", () => {
  assert.equal(sessionIdOf("ai.voice.tts.request.s-1".split(".")), "s-1");
  assert.equal(sessionIdOf("ai.voice.tts.request.a.b".split(".")), "b");
  for (const subject of ["ai.voice.tts.request.", "ai.voice.tts.request"]) {
    assert.throws(
      () => sessionIdOf(subject.split(".")),
      new RegExp(`the subject "${subject.replaceAll(".", "\\.")}" names no session id`),
    );
  }
});

Deno.test("a full synthesis answers TTSFullResponse on the audio and reply subjects, after processing", async () => {
  await using t = await setup();
  const statuses = await t.statuses("s1");
  const audio = collect(t.client, "ai.voice.tts.audio.s1", TTSFullResponseSchema);
  await t.client.flush();
  const text = "Hello from the module.";

  const reply = await t.synthesize("s1", { text });

  const expected = wrapPcmAsWav(t.xtts.pcmFor(text), { sampleRate: 24000 });
  assert.equal(reply.sessionId, "s1");
  assert.deepEqual(new Uint8Array(reply.audio), expected);
  assert.deepEqual(
    [reply.sampleRate, reply.channels, reply.bitDepth, reply.audioEncoding],
    [24000, 1, 16, AudioEncoding.WAV],
  );
  assert.ok(reply.timestamp > 0n);
  const [published] = await audio.until((m) => m.length === 1);
  assert.deepEqual(new Uint8Array(published?.audio ?? []), expected);
  const sequence = await statuses.until(finished);
  assert.deepEqual(sequence.map((s) => [s.sessionId, s.status]), [
    ["s1", "processing"],
    ["s1", "completed"],
  ]);
  // Defaults: speaker "default" is the backend's first studio speaker, language "en".
  assert.deepEqual(lastSynthesis(t.xtts), {
    text,
    language: "en",
    speaker_embedding: [0.1, 0.2, 0.3, 0.4],
    gpt_cond_latent: [[1, 2], [3, 4]],
  });
  audio.close();
  statuses.close();
});

Deno.test("a streamed synthesis forwards each chunk before the backend finishes, then an is_last chunk", async () => {
  const gates = Array.from({ length: 3 }, () => Promise.withResolvers<void>());
  await using t = await setup({ xtts: { pace: (i) => gates[i]?.promise ?? Promise.resolve() } });
  const statuses = await t.statuses("s2");
  const chunks = await t.chunks("s2");
  const text = "Hello streaming world, again."; // 29 chars: three backend pieces

  const reply = t.synthesize("s2", { text, stream: true });
  gates[0]!.resolve();
  await chunks.until((m) => m.length === 1);
  // The first audio is out while the backend still holds the rest.
  assert.deepEqual(statuses.messages.map((s) => s.status), ["processing"]);
  assert.equal(chunks.messages[0]?.isLast, false);
  gates[1]!.resolve();
  gates[2]!.resolve();
  const all = await chunks.until((m) => m.some((c) => c.isLast));

  assert.deepEqual(all.map((c) => c.chunkIndex), all.map((_, i) => i));
  assert.deepEqual(all.map((c) => c.isLast), all.map((_, i) => i === all.length - 1));
  assert.deepEqual(
    all.map((c) => c.totalChunks),
    all.map((_, i) => i === all.length - 1 ? all.length : 0),
  );
  assert.deepEqual(concatBytes(all.map((c) => c.audio)), t.xtts.pcmFor(text));
  assert.equal(all.at(-1)?.audio.length, 0);
  for (const chunk of all) {
    assert.equal(chunk.sessionId, "s2");
    assert.deepEqual(
      [chunk.sampleRate, chunk.channels, chunk.bitDepth, chunk.audioEncoding],
      [24000, 1, 16, AudioEncoding.PCM_S16LE],
    );
  }
  const answered = await reply;
  assert.equal(answered.sessionId, "s2");
  assert.equal(answered.audio.length, 0);
  assert.equal(answered.sampleRate, 24000);
  assert.deepEqual((await statuses.until(finished)).map((s) => s.status), [
    "processing",
    "completed",
  ]);
  chunks.close();
  statuses.close();
});

Deno.test("streamed chunks are cut at whole samples when the backend splits a sample", async () => {
  await using t = await setup({ xtts: { chunkBytes: 1001 } });
  const chunks = await t.chunks("odd");
  const text = "Odd sized pieces.";
  await t.synthesize("odd", { text, stream: true });
  const all = await chunks.until((m) => m.some((c) => c.isLast));
  assert.ok(all.length > 3);
  for (const chunk of all) assert.equal(chunk.audio.length % 2, 0);
  assert.deepEqual(concatBytes(all.map((c) => c.audio)), t.xtts.pcmFor(text));
  chunks.close();
});

Deno.test("a custom voice speaks with its cloned latents, cached until its WAV changes", async () => {
  await using t = await setup();
  await t.synthesize("v1", { text: "One.", speaker: "narrator" });
  assert.equal(clones(t.xtts), 1);
  // The fake derives the latents from the WAV's size: 44 + 2000 bytes.
  assert.equal(lastSynthesis(t.xtts)?.speaker_embedding[0], 2.044);
  // The voice's language is the default; the request's wins.
  assert.equal(lastSynthesis(t.xtts)?.language, "de");
  await t.synthesize("v1", { text: "Two.", speaker: "narrator", language: "fr", stream: true });
  assert.equal(lastSynthesis(t.xtts)?.language, "fr");
  assert.equal(clones(t.xtts), 1);

  await Deno.writeFile(`${t.dir}/narrator/reference.wav`, testWav(3000));
  await t.synthesize("v1", { text: "Three.", speaker: "narrator" });
  assert.equal(clones(t.xtts), 2);
  assert.equal(lastSynthesis(t.xtts)?.speaker_embedding[0], 6.044);
  await t.synthesize("v1", { text: "Four.", speaker: "narrator" });
  assert.equal(clones(t.xtts), 2);
});

Deno.test("a built-in speaker is found by name, and TTS_DEFAULT_SPEAKER picks the default", async () => {
  await using t = await setup({ defaultSpeaker: "Claribel Dervla" });
  await t.synthesize("b1", { text: "Hi.", speaker: "Ana Florence" });
  assert.deepEqual(lastSynthesis(t.xtts)?.speaker_embedding, [0.1, 0.2, 0.3, 0.4]);
  await t.synthesize("b1", { text: "Hi.", speaker: "default", stream: true });
  assert.deepEqual(lastSynthesis(t.xtts)?.speaker_embedding, [0.5, 0.6, 0.7, 0.8]);
  const list = await request(
    t.client,
    "ai.voice.tts.voices.list",
    TTSRequestSchema,
    {},
    TTSVoiceListResponseSchema,
    { timeout: 5000 },
  );
  assert.equal(list.defaultSpeaker, "Claribel Dervla");
  assert.equal(clones(t.xtts), 0);
});

Deno.test("speaker_wav_b64 clones a voice for each request; a bad one is InvalidArgument", async () => {
  await using t = await setup();
  const wav = testWav(700);
  const b64 = btoa(String.fromCharCode(...wav));
  await t.synthesize("c1", { text: "Cloned.", speakerWavB64: b64, speaker: "narrator" });
  await t.synthesize("c1", { text: "Cloned again.", speakerWavB64: b64, stream: true });
  assert.equal(clones(t.xtts), 2);
  assert.equal(lastSynthesis(t.xtts)?.speaker_embedding[0], 1.444);
  const uploaded = t.xtts.requests.find((r) => r.path === "/clone_speaker")?.form?.get("wav_file");
  assert.ok(uploaded instanceof Blob);
  assert.deepEqual(new Uint8Array(await uploaded.arrayBuffer()), wav);

  const statuses = await t.statuses("c2");
  await rejectsWith(
    t.synthesize("c2", { text: "x", speakerWavB64: "%%% not base64" }),
    "InvalidArgument",
    "Cannot clone the voice: speaker_wav_b64 is not valid base64",
  );
  await rejectsWith(
    t.synthesize("c2", { text: "x", speakerWavB64: btoa("just some text, not a WAV") }),
    "InvalidArgument",
    /^Cannot clone the voice: speaker_wav_b64 is not WAV \(Cannot parse WAV: /,
  );
  const huge = btoa(String.fromCharCode(...testWav(60_000)));
  await rejectsWith(
    t.synthesize("c2", { text: "x", speakerWavB64: huge }),
    "InvalidArgument",
    "Cannot clone the voice: speaker_wav_b64 is larger than 100000 bytes",
  );
  const errors = await statuses.until((m) => m.length === 3);
  assert.deepEqual(errors.map((s) => s.status), ["error", "error", "error"]);
  assert.match(errors[0]!.message, /not valid base64/);
  assert.equal(clones(t.xtts), 2);
  statuses.close();
});

Deno.test("voices.list and voices.refresh answer an empty payload, whatever its Msg-Type", async () => {
  await using t = await setup();
  const raw = await t.client.request("ai.voice.tts.voices.list", new Uint8Array(0), {
    timeout: 5000,
  });
  const list = decodeMsg(TTSVoiceListResponseSchema, raw);
  assert.equal(list.defaultSpeaker, "default");
  assert.deepEqual(
    list.customVoices.map((v) => [v.name, v.language, v.modelType, v.createdAt]),
    [["narrator", "de", "xtts_v2", "2026-11-01T10:00:00Z"]],
  );
  assert.ok(list.lastRefresh > 0n && list.timestamp >= list.lastRefresh);

  await writeVoice(t.dir, "oma", { "reference.wav": testWav(100) });
  const refreshed = await request(
    t.client,
    "ai.voice.tts.voices.refresh",
    TTSVoiceInfoSchema,
    { name: "ignored" },
    TTSVoiceRefreshResponseSchema,
    { timeout: 5000 },
  );
  assert.equal(refreshed.count, 2);
  assert.deepEqual(refreshed.customVoices.map((v) => v.name), ["narrator", "oma"]);
  const after = await request(
    t.client,
    "ai.voice.tts.voices.list",
    TTSVoiceInfoSchema,
    {},
    TTSVoiceListResponseSchema,
    { timeout: 5000 },
  );
  assert.deepEqual(after.customVoices.map((v) => v.name), ["narrator", "oma"]);
  await t.synthesize("o1", { text: "Grüß Gott.", speaker: "oma" });
  assert.equal(clones(t.xtts), 1);
});

Deno.test("bad requests get a clear error status and ErrorResponse, and the service goes on", async () => {
  await using t = await setup({ maxChars: 40 });
  const statuses = await t.statuses("bad");
  const cases: [MessageInitShape<typeof TTSRequestSchema>, string][] = [
    [{ text: "" }, "Cannot synthesize speech: the text is empty"],
    [{ text: "  \n\t " }, "Cannot synthesize speech: the text is empty"],
    [{ text: "x".repeat(41) }, "Cannot synthesize speech: the text is longer than 40 characters"],
    [{ text: "Hi.", speaker: "Nobody" }, 'Cannot synthesize speech: unknown speaker "Nobody"'],
    [
      { text: "Hi.", speaker: "Nobody", stream: true },
      'Cannot synthesize speech: unknown speaker "Nobody"',
    ],
  ];
  for (const [req, message] of cases) {
    await rejectsWith(t.synthesize("bad", req), "InvalidArgument", message);
  }
  // 40 characters outside the BMP are 80 UTF-16 units, and still 40 characters.
  await t.synthesize("ok", { text: "😀".repeat(40) });
  const errors = (await statuses.until((m) => m.filter((s) => s.status === "error").length === 5))
    .filter((s) => s.status === "error");
  assert.deepEqual(errors.map((s) => s.message), cases.map(([, message]) => message));

  const raw = await t.client.request("ai.voice.tts.request.bad", new Uint8Array([0xff, 0xff]), {
    timeout: 5000,
  });
  assert.match(new TextDecoder().decode(raw.data), /Cannot decode messages\.v1\.TTSRequest/);
  const reply = await t.synthesize("ok", { text: "Still here." });
  assert.ok(reply.audio.length > 44);
  statuses.close();
});

Deno.test("audio too large for one NATS message is refused with advice to stream", async () => {
  await using t = await setup();
  // 3000 characters are 1.44 MB of WAV at the fake's rate, above the default 1 MB payload.
  const text = "a".repeat(3000);
  await rejectsWith(
    t.synthesize("big", { text }),
    "InvalidArgument",
    /^Cannot send the audio: 1440044 bytes exceed the NATS max payload of 1048576; request stream=true/,
  );
  const chunks = await t.chunks("big");
  await t.synthesize("big", { text, stream: true });
  const all = await chunks.until((m) => m.some((c) => c.isLast));
  assert.equal(concatBytes(all.map((c) => c.audio)).length, 1_440_000);
  chunks.close();
});

Deno.test("a backend 500 is a BackendError with an error status; the next request works", async () => {
  await using t = await setup();
  const statuses = await t.statuses("e1");
  t.xtts.failNext(500, { path: "/tts", body: '{"detail":"CUDA out of memory"}' });
  await rejectsWith(
    t.synthesize("e1", { text: "Boom." }),
    "BackendError",
    /^Backend "tts" failed with status 500: .*CUDA out of memory/,
  );
  const sequence = await statuses.until(finished);
  assert.deepEqual(sequence.map((s) => s.status), ["processing", "error"]);
  assert.match(sequence[1]!.message, /status 500/);
  const reply = await t.synthesize("e1", { text: "Fine." });
  assert.equal(reply.sessionId, "e1");
  statuses.close();
});

Deno.test("a backend that does not answer in time is a Timeout; the next request works", async () => {
  await using t = await setup({ ttsTimeoutMs: 1000 });
  const statuses = await t.statuses("slow");
  t.xtts.hangNext();
  await rejectsWith(t.synthesize("slow", { text: "Wait.", stream: true }), "Timeout", /.+/);
  const sequence = await statuses.until(finished);
  assert.deepEqual(sequence.map((s) => s.status), ["processing", "error"]);
  const reply = await t.synthesize("slow", { text: "Quick." });
  assert.ok(reply.audio.length > 44);
  statuses.close();
});

Deno.test("a request past its deadline is answered Timeout and its status says error", async () => {
  await using t = await setup({ timeoutMs: 200 });
  const statuses = await t.statuses("late");
  t.xtts.hangNext();
  await rejectsWith(
    t.synthesize("late", { text: "Wait." }),
    "Timeout",
    'Cannot finish "synthesize": deadline of 200 ms exceeded',
  );
  const sequence = await statuses.until(finished);
  assert.deepEqual(sequence.map((s) => [s.status, s.message]), [
    ["processing", ""],
    ["error", 'Cannot finish "synthesize": deadline of 200 ms exceeded'],
  ]);
  statuses.close();
});

Deno.test("a stream the backend cuts ends with an error status and no is_last chunk", async () => {
  await using t = await setup({ xtts: { chunkBytes: 960, cutAfterChunks: 2 } });
  const statuses = await t.statuses("cut");
  const chunks = await t.chunks("cut");
  await rejectsWith(
    t.synthesize("cut", { text: "This stream breaks in the middle.", stream: true }),
    "BackendUnavailable",
    /.+/,
  );
  assert.deepEqual((await statuses.until(finished)).map((s) => s.status), ["processing", "error"]);
  await t.client.flush();
  assert.ok(chunks.messages.length >= 1);
  assert.ok(chunks.messages.every((c) => !c.isLast));
  chunks.close();
  statuses.close();
});

Deno.test("20 concurrent streamed sessions: every chunk in its session, in order, complete", async () => {
  await using t = await setup({ xtts: { chunkBytes: 960, delayMs: 1 }, concurrency: 4 });
  const chunks = await t.chunks("*");
  const statuses = await t.statuses("*");
  const texts = Array.from({ length: 20 }, (_, i) => `Session ${i} says ${"ab".repeat(i)}.`);
  const replies = await Promise.all(
    texts.map((text, i) => t.synthesize(`c${i}`, { text, stream: true })),
  );
  assert.deepEqual(replies.map((r) => r.sessionId), texts.map((_, i) => `c${i}`));
  const all = await chunks.until((m) => m.filter((c) => c.isLast).length === 20);
  texts.forEach((text, i) => {
    const mine = all.filter((c) => c.subject === `ai.voice.tts.audio.c${i}`);
    assert.ok(mine.every((c) => c.sessionId === `c${i}`));
    assert.deepEqual(mine.map((c) => c.chunkIndex), mine.map((_, n) => n));
    assert.ok(mine.at(-1)?.isLast);
    assert.deepEqual(concatBytes(mine.map((c) => c.audio)), t.xtts.pcmFor(text), `session c${i}`);
  });
  const done = await statuses.until((m) => m.filter((s) => s.status === "completed").length === 20);
  assert.equal(done.filter((s) => s.status === "error").length, 0);
  chunks.close();
  statuses.close();
});

Deno.test("requests of one session are synthesized in arrival order, never interleaved", async () => {
  await using t = await setup({ xtts: { chunkBytes: 960, delayMs: 10 } });
  const chunks = await t.chunks("same");
  const long = "The first sentence is the longer one.";
  const short = "Short.";
  t.client.publish(
    "ai.voice.tts.request.same",
    encode(TTSRequestSchema, { text: long, stream: true }),
  );
  t.client.publish(
    "ai.voice.tts.request.same",
    encode(TTSRequestSchema, { text: short, stream: true }),
  );
  const all = await chunks.until((m) => m.filter((c) => c.isLast).length === 2);
  const split = all.findIndex((c) => c.isLast) + 1;
  assert.deepEqual(concatBytes(all.slice(0, split).map((c) => c.audio)), t.xtts.pcmFor(long));
  assert.deepEqual(concatBytes(all.slice(split).map((c) => c.audio)), t.xtts.pcmFor(short));
  assert.equal(all[split]?.chunkIndex, 0);
  chunks.close();
});

Deno.test("with TTS_API=openai a speaker name is sent as the voice and streaming works", async () => {
  await using t = await setup({ api: "openai" });
  const chunks = await t.chunks("oa");
  await t.synthesize("oa", { text: "Open voice.", speaker: "nova", stream: true });
  const all = await chunks.until((m) => m.some((c) => c.isLast));
  assert.deepEqual(concatBytes(all.map((c) => c.audio)), t.xtts.pcmFor("Open voice."));
  const sent = t.xtts.requests.find((r) => r.path === "/v1/audio/speech")?.json;
  assert.deepEqual(sent, {
    model: "tts-1",
    input: "Open voice.",
    voice: "nova",
    response_format: "pcm",
  });
  await rejectsWith(
    t.synthesize("oa", { text: "x", speaker: "narrator" }),
    "InvalidArgument",
    'Cannot clone a speaker: the "openai" TTS API does not support it',
  );
  chunks.close();
});
