import assert from "node:assert/strict";
import {
  BackendError,
  BackendUnavailableError,
  InvalidArgumentError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { concatBytes } from "../testing/fake_http.ts";
import { startFakeXtts } from "../testing/fake_xtts.ts";
import { createTtsClient, type TtsClientOptions } from "./tts.ts";
import { parseWav, WAV_HEADER_BYTES, wrapPcmAsWav } from "./wav.ts";
import { deadline } from "../async.ts";

function tts(url: string, options: Partial<TtsClientOptions> = {}) {
  return createTtsClient({ baseUrl: url, sleep: () => Promise.resolve(), ...options });
}

function paths(fake: { requests: { method: string; path: string }[] }): string[] {
  return fake.requests.map((r) => `${r.method} ${r.path}`);
}

Deno.test("TtsClient.synthesize() resolves a studio speaker and returns the WAV and its format", async () => {
  await using fake = startFakeXtts();
  const client = tts(fake.url);
  const { audio, format } = await client.synthesize("Hello.", {
    speaker: "Claribel Dervla",
    language: "de",
  });
  assert.deepEqual(format, { sampleRate: 24000, channels: 1, bitDepth: 16, encoding: "wav" });
  assert.deepEqual(parseWav(audio).data, fake.pcmFor("Hello."));
  assert.deepEqual(paths(fake), ["GET /studio_speakers", "POST /tts"]);
  assert.deepEqual(fake.requests[1]?.json, {
    text: "Hello.",
    language: "de",
    speaker_embedding: [0.5, 0.6, 0.7, 0.8],
    gpt_cond_latent: [[5, 6], [7, 8]],
  });
});

Deno.test("TtsClient caches the studio speakers, refreshes them on demand and after the TTL", async () => {
  await using fake = startFakeXtts();
  const cached = tts(fake.url);
  await cached.synthesize("a");
  await cached.synthesize("b", { speaker: "Ana Florence" });
  assert.equal(paths(fake).filter((p) => p === "GET /studio_speakers").length, 1);
  assert.deepEqual((fake.requests[1]?.json as { speaker_embedding: number[] }).speaker_embedding, [
    0.1,
    0.2,
    0.3,
    0.4,
  ], "the first speaker is the default");
  const speakers = await cached.refreshSpeakers();
  assert.deepEqual([...speakers.keys()], ["Ana Florence", "Claribel Dervla"]);
  assert.equal(paths(fake).filter((p) => p === "GET /studio_speakers").length, 2);

  fake.requests.length = 0;
  const uncached = tts(fake.url, { speakersTtlMs: 0 });
  await uncached.studioSpeakers();
  await uncached.studioSpeakers();
  assert.deepEqual(paths(fake), ["GET /studio_speakers", "GET /studio_speakers"]);
});

Deno.test("TtsClient refreshes once for an unknown speaker, then rejects it", async () => {
  await using fake = startFakeXtts();
  const client = tts(fake.url, { defaultSpeaker: "Claribel Dervla" });
  await client.synthesize("warm the cache");
  assert.equal(
    (fake.requests[1]?.json as { speaker_embedding: number[] }).speaker_embedding[0],
    0.5,
  );
  fake.config.speakers = {
    ...fake.config.speakers,
    "New Voice": { speaker_embedding: [9], gpt_cond_latent: [[9]] },
  };
  await client.synthesize("x", { speaker: "New Voice" });
  const error = await client.synthesize("x", { speaker: "Nobody" }).catch((e) => e);
  assert.ok(error instanceof InvalidArgumentError);
  assert.equal(error.message, 'Cannot synthesize speech: unknown speaker "Nobody"');
  assert.equal(paths(fake).filter((p) => p === "GET /studio_speakers").length, 3);
});

Deno.test("TtsClient speaks with latents passed in, without listing speakers", async () => {
  await using fake = startFakeXtts();
  const speaker = { speakerEmbedding: [1, 2], gptCondLatent: [[3]] };
  await tts(fake.url, { language: "fr" }).synthesize("Salut", { speaker });
  assert.deepEqual(paths(fake), ["POST /tts"]);
  assert.deepEqual(fake.requests[0]?.json, {
    text: "Salut",
    language: "fr",
    speaker_embedding: [1, 2],
    gpt_cond_latent: [[3]],
  });
});

Deno.test("TtsClient.synthesizeStream() forwards chunks as they arrive", async () => {
  const gates: PromiseWithResolvers<void>[] = [];
  const gate = (i: number) => (gates[i] ??= Promise.withResolvers<void>());
  await using fake = startFakeXtts({ chunkBytes: 1000, pace: (i) => gate(i).promise });
  gate(0).resolve();
  const text = "Streaming text.";
  const stream = tts(fake.url).synthesizeStream(text, { speaker: "Ana Florence" });
  assert.deepEqual(stream.format, {
    sampleRate: 24000,
    channels: 1,
    bitDepth: 16,
    encoding: "pcm_s16le",
  });
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    // The next chunk is released only after this one was received.
    gate(chunks.length).resolve();
  }
  const pcm = fake.pcmFor(text);
  assert.deepEqual(concatBytes(chunks), pcm);
  assert.equal(chunks.length, Math.ceil(pcm.length / 1000));
  const body = fake.requests[1]?.json as Record<string, unknown>;
  assert.equal(body.add_wav_header, false);
  assert.equal(body.stream_chunk_size, "20");
  assert.equal(fake.requests[1]?.path, "/tts_stream");
});

Deno.test("TtsClient.synthesizeStream() can ask for a WAV header first", async () => {
  await using fake = startFakeXtts();
  const speaker = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  const stream = tts(fake.url).synthesizeStream("Hi", {
    speaker,
    addWavHeader: true,
    streamChunkSize: 5,
  });
  assert.equal(stream.format.encoding, "wav");
  const bytes = concatBytes(await Array.fromAsync(stream));
  assert.deepEqual(
    bytes.subarray(0, WAV_HEADER_BYTES),
    wrapPcmAsWav(new Uint8Array(0), { sampleRate: 24000 }),
  );
  assert.deepEqual(parseWav(bytes, { streaming: true }).data, fake.pcmFor("Hi"));
  assert.equal((fake.requests[0]?.json as { stream_chunk_size: string }).stream_chunk_size, "5");
});

Deno.test("TtsClient.synthesizeStream() fails with BackendUnavailableError when cut midway", async () => {
  await using fake = startFakeXtts({ chunkBytes: 100, cutAfterChunks: 2 });
  const speaker = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  const chunks: Uint8Array[] = [];
  const error = await (async () => {
    for await (const chunk of tts(fake.url).synthesizeStream("long text", { speaker })) {
      chunks.push(chunk);
    }
  })().catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError, String(error));
  assert.equal(concatBytes(chunks).length, 200);
});

Deno.test("TtsClient.synthesizeStream() closes the request when the caller aborts", async () => {
  await using fake = startFakeXtts({
    chunkBytes: 10,
    pace: (i) => (i === 0 ? Promise.resolve() : new Promise(() => {})),
  });
  const controller = new AbortController();
  const speaker = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  const reason = new Error("barge-in");
  const error = await (async () => {
    for await (
      const _ of tts(fake.url).synthesizeStream("x", { speaker, signal: controller.signal })
    ) {
      controller.abort(reason);
    }
  })().catch((e) => e);
  assert.equal(error, reason);
  await deadline(fake.requests[0]!.disconnected, 10_000, {
    what: "the client to close the request",
  });
});

Deno.test("TtsClient.cloneSpeaker() uploads the WAV as wav_file and returns latents", async () => {
  await using fake = startFakeXtts();
  const wav = wrapPcmAsWav(new Uint8Array(956));
  const latents = await tts(fake.url).cloneSpeaker(wav);
  assert.deepEqual(latents, {
    speakerEmbedding: [1, 0.5, 0.25, 0.125],
    gptCondLatent: [[1000, 1], [2, 3]],
  });
  const file = fake.requests[0]?.form?.get("wav_file");
  assert.ok(file instanceof File);
  assert.deepEqual(new Uint8Array(await file.arrayBuffer()), wav);
  await assert.rejects(tts(fake.url).cloneSpeaker(new Uint8Array(10)), InvalidArgumentError);
});

Deno.test("TtsClient checks its answers", async () => {
  await using fake = startFakeXtts();
  const speaker = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  const bad: unknown[] = [{ audio: "x" }, "!!!not base64!!!", btoa("not a wav file at all, sorry")];
  for (const body of bad) {
    fake.override((req) => req.path === "/tts" ? Response.json(body) : undefined);
    await assert.rejects(
      tts(fake.url).synthesize("x", { speaker }),
      InvalidResponseError,
      JSON.stringify(body),
    );
  }
  fake.override(() => Response.json({ Bad: { speaker_embedding: "x", gpt_cond_latent: [] } }));
  await assert.rejects(tts(fake.url).studioSpeakers(), InvalidResponseError);
  fake.override(() => Response.json({}));
  await assert.rejects(tts(fake.url).synthesize("x"), /has no studio speakers/);
});

Deno.test("TtsClient rejects empty text, retries a 503 and not a 500, and times out", async () => {
  await using fake = startFakeXtts();
  const speaker = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  await assert.rejects(tts(fake.url).synthesize("  ", { speaker }), InvalidArgumentError);
  assert.throws(() => tts(fake.url).synthesizeStream("", { speaker }), InvalidArgumentError);
  fake.failNext(503);
  await tts(fake.url).synthesize("x", { speaker });
  assert.equal(fake.requests.length, 2);
  fake.failNext(500);
  await assert.rejects(tts(fake.url).synthesize("x", { speaker }), BackendError);
  fake.hangNext();
  await assert.rejects(
    tts(fake.url, { timeoutMs: 200 }).synthesize("x", { speaker }),
    TimeoutError,
  );
});

Deno.test("TtsClient with the OpenAI API posts /v1/audio/speech", async () => {
  await using fake = startFakeXtts({ chunkBytes: 64 });
  const client = tts(fake.url, { api: "openai", defaultSpeaker: "nova" });
  assert.equal(client.api, "openai");
  const { audio, format } = await client.synthesize("Hello");
  assert.deepEqual(format, { sampleRate: 24000, channels: 1, bitDepth: 16, encoding: "wav" });
  assert.deepEqual(parseWav(audio).data, fake.pcmFor("Hello"));
  assert.deepEqual(fake.requests[0]?.json, {
    model: "tts-1",
    input: "Hello",
    voice: "nova",
    response_format: "wav",
  });
  const stream = client.synthesizeStream("Hello", { speaker: "echo" });
  assert.equal(stream.format.encoding, "pcm_s16le");
  assert.deepEqual(concatBytes(await Array.fromAsync(stream)), fake.pcmFor("Hello"));
  assert.deepEqual(fake.requests[1]?.json, {
    model: "tts-1",
    input: "Hello",
    voice: "echo",
    response_format: "pcm",
  });
  const latents = { speakerEmbedding: [1], gptCondLatent: [[1]] };
  await assert.rejects(client.synthesize("x", { speaker: latents }), InvalidArgumentError);
  await assert.rejects(client.cloneSpeaker(wrapPcmAsWav(new Uint8Array(2))), InvalidArgumentError);
  await assert.rejects(client.studioSpeakers(), /does not support it/);
  assert.equal(fake.requests.length, 2);
});
