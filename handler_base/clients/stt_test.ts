import assert from "node:assert/strict";
import {
  BackendError,
  InvalidArgumentError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { startFakeWhisper } from "../testing/fake_whisper.ts";
import { createSttClient, type SttClientOptions } from "./stt.ts";
import { parseWav, wrapPcmAsWav } from "./wav.ts";

function stt(url: string, options: Partial<SttClientOptions> = {}) {
  return createSttClient({ baseUrl: url, sleep: () => Promise.resolve(), ...options });
}

async function uploaded(form: FormData | undefined): Promise<Uint8Array> {
  const file = form?.get("file");
  assert.ok(file instanceof File);
  assert.equal(file.name, "audio.wav");
  assert.equal(file.type, "audio/wav");
  return new Uint8Array(await file.arrayBuffer());
}

Deno.test("SttClient.transcribe() wraps PCM in a WAV header and sends the OpenAI form", async () => {
  await using fake = startFakeWhisper({ transcript: ({ file }) => `  ${file.length} bytes  ` });
  const pcm = new Uint8Array(3200).map((_, i) => i % 256);
  const result = await stt(fake.url, { model: "large-v3" }).transcribe(pcm, { language: "de" });
  assert.deepEqual(result, { text: "3244 bytes" });
  const form = fake.requests[0]?.form;
  const wav = await uploaded(form);
  assert.deepEqual(wav, wrapPcmAsWav(pcm, { sampleRate: 16000, channels: 1, bitDepth: 16 }));
  assert.equal(form?.get("model"), "large-v3");
  assert.equal(form?.get("language"), "de");
  assert.equal(form?.get("response_format"), "json");
  assert.equal(fake.requests[0]?.path, "/v1/audio/transcriptions");
});

Deno.test("SttClient.transcribe() uses the given PCM layout and the client defaults", async () => {
  await using fake = startFakeWhisper();
  const client = stt(fake.url, { language: "en" });
  await client.transcribe(new Uint8Array(8), { format: { sampleRate: 48000, channels: 2 } });
  const form = fake.requests[0]?.form;
  assert.deepEqual(parseWav(await uploaded(form)).format, {
    sampleRate: 48000,
    channels: 2,
    bitDepth: 16,
    sampleFormat: "pcm",
  });
  assert.equal(form?.get("model"), "whisper-1");
  assert.equal(form?.get("language"), "en");
  await stt(fake.url).transcribe(new Uint8Array(2), { prompt: "NATS, JetStream" });
  assert.equal(fake.requests[1]?.form?.get("language"), null);
  assert.equal(fake.requests[1]?.form?.get("prompt"), "NATS, JetStream");
});

Deno.test("SttClient.transcribe() passes a WAV file through unchanged", async () => {
  await using fake = startFakeWhisper();
  const wav = await Deno.readFile(new URL("./testdata/sine_24k_stereo_s16.wav", import.meta.url));
  assert.equal((await stt(fake.url).transcribe(wav)).text, "hello world");
  assert.deepEqual(await uploaded(fake.requests[0]?.form), wav);
});

Deno.test("SttClient.transcribe() rejects empty or broken audio without a request", async () => {
  await using fake = startFakeWhisper();
  await assert.rejects(stt(fake.url).transcribe(new Uint8Array(0)), InvalidArgumentError);
  await assert.rejects(stt(fake.url).transcribe(new Uint8Array(3)), InvalidArgumentError);
  const broken = wrapPcmAsWav(new Uint8Array(8)).subarray(0, 40);
  await assert.rejects(stt(fake.url).transcribe(broken), /Cannot parse WAV/);
  assert.equal(fake.requests.length, 0);
});

Deno.test("SttClient retries a 503, not a 500, and checks the answer", async () => {
  await using fake = startFakeWhisper();
  fake.failNext(503);
  assert.equal((await stt(fake.url).transcribe(new Uint8Array(2))).text, "hello world");
  assert.equal(fake.requests.length, 2);
  const second = await fake.requests[1]?.form?.get("file");
  assert.ok(second instanceof File && second.size === 46, "the form is sent again whole");
  fake.failNext(500);
  await assert.rejects(stt(fake.url).transcribe(new Uint8Array(2)), BackendError);
  assert.equal(fake.requests.length, 3);
  fake.override(() => Response.json({ transcript: "wrong field" }));
  await assert.rejects(stt(fake.url).transcribe(new Uint8Array(2)), InvalidResponseError);
  fake.override(() => Response.json({ text: "hallo", language: "german" }));
  assert.deepEqual(await stt(fake.url).transcribe(new Uint8Array(2)), {
    text: "hallo",
    language: "german",
  });
});

Deno.test("SttClient times out", async () => {
  await using fake = startFakeWhisper();
  fake.hangNext();
  await assert.rejects(
    stt(fake.url, { timeoutMs: 200 }).transcribe(new Uint8Array(2)),
    TimeoutError,
  );
});
