import assert from "node:assert/strict";
import { BackendError } from "../../handler_base/errors.ts";
import { createTtsClient } from "../../handler_base/clients/tts.ts";
import { parseWav } from "../../handler_base/clients/wav.ts";
import { concatBytes } from "../../handler_base/testing/fake_http.ts";
import { startTtsStandIn, TTS_STREAM_RATE, TTS_WAV_RATE } from "./tts.ts";

/** The loudest sample of 16-bit PCM. */
function peak(pcm: Uint8Array): number {
  const samples = new Int16Array(pcm.slice().buffer, 0, Math.floor(pcm.length / 2));
  return samples.reduce((max, s) => Math.max(max, Math.abs(s)), 0);
}

Deno.test("TTS stand-in: flite speech through the project's TTS client is a valid 16 kHz WAV", async () => {
  await using tts = startTtsStandIn();
  assert.equal(tts.readiness.ok, true, tts.readiness.hint ?? "");
  assert.equal(tts.voices[0]?.name, "flite-slt");
  const client = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  const { audio, format } = await client.synthesize("Turn on the kitchen lights.");
  assert.deepEqual(format, {
    sampleRate: TTS_WAV_RATE,
    channels: 1,
    bitDepth: 16,
    encoding: "wav",
  });
  const { data } = parseWav(audio);
  const seconds = data.length / 2 / TTS_WAV_RATE;
  assert.ok(seconds > 0.8 && seconds < 5, `${seconds} s of speech`);
  assert.ok(peak(data) > 1000, "the audio is not silent");
});

Deno.test("TTS stand-in: streams 24 kHz PCM sentence by sentence, with an optional WAV header", async () => {
  await using tts = startTtsStandIn();
  const client = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  const text = "Hello there. This is the second sentence.";
  const chunks: Uint8Array[] = [];
  const stream = client.synthesizeStream(text, { speaker: "flite-kal16", addWavHeader: true });
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(stream.format.sampleRate, TTS_STREAM_RATE);
  assert.ok(chunks.length > 2, `${chunks.length} chunks`);
  const { format, data } = parseWav(concatBytes(chunks), { streaming: true });
  assert.equal(format.sampleRate, TTS_STREAM_RATE);
  assert.ok(data.length / 2 / TTS_STREAM_RATE > 1, "both sentences are spoken");
  assert.ok(peak(data) > 1000);

  // The same text whole, at 16 kHz, is about as long.
  const whole = parseWav((await client.synthesize(text, { speaker: "flite-kal16" })).audio).data;
  const ratio = (data.length / TTS_STREAM_RATE) / (whole.length / TTS_WAV_RATE);
  assert.ok(ratio > 0.8 && ratio < 1.25, `stream/whole duration ratio ${ratio}`);
});

Deno.test("TTS stand-in: the OpenAI speech shape, espeak-ng, other languages and cloning", async () => {
  await using tts = startTtsStandIn();
  const openai = createTtsClient({ baseUrl: tts.url, api: "openai", timeoutMs: 20_000 });
  const wav = await openai.synthesize("Good morning.", { speaker: "espeak-ng" });
  assert.equal(wav.format.sampleRate, TTS_WAV_RATE);
  assert.ok(peak(parseWav(wav.audio).data) > 1000);
  const pcm = concatBytes(await Array.fromAsync(openai.synthesizeStream("Good morning.")));
  assert.ok(pcm.length > TTS_STREAM_RATE, "at least half a second at 24 kHz");
  await assert.rejects(openai.synthesize("Hi", { speaker: "nobody" }), (error: unknown) => {
    assert.ok(error instanceof BackendError);
    assert.equal(error.status, 400);
    assert.match(error.message, /unknown voice "nobody"/);
    return true;
  });

  const xtts = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  const german = await xtts.synthesize("Guten Morgen.", { language: "de" });
  assert.ok(parseWav(german.audio).data.length > 0);
  await assert.rejects(xtts.synthesize("Hi", { language: "zz" }), /no voice "zz"/);

  // A cloned voice is one of the stand-in's voices, the same for the same recording.
  const latents = await xtts.cloneSpeaker(wav.audio);
  assert.deepEqual(await xtts.cloneSpeaker(wav.audio), latents);
  const cloned = await xtts.synthesize("Hello.", { speaker: latents });
  assert.ok(parseWav(cloned.audio).data.length > 0);
});

Deno.test("TTS stand-in: bad requests get the XTTS error shape and the server keeps serving", async () => {
  await using tts = startTtsStandIn();
  const post = async (path: string, body: string) => {
    const response = await fetch(`${tts.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    return { status: response.status, json: await response.json() };
  };
  assert.deepEqual(await post("/tts", "{not json"), {
    status: 400,
    json: { detail: "Cannot parse the body: it is not JSON" },
  });
  assert.equal((await post("/tts", JSON.stringify({ text: " ", language: "en" }))).status, 422);
  assert.equal(
    (await post("/tts", JSON.stringify({ text: "x".repeat(5001), language: "en" }))).status,
    422,
  );
  assert.equal(
    (await post("/v1/audio/speech", JSON.stringify({ input: "Hi", response_format: "mp3" })))
      .status,
    400,
  );
  assert.equal((await post("/nowhere", "{}")).status, 404);
  const client = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  assert.ok((await client.synthesize("Still here.")).audio.length > 44);
});

Deno.test("TTS stand-in: without a synthesizer a tone stands in and the readiness says what to install", async () => {
  await using tts = startTtsStandIn({ programs: { flite: null, espeakNg: null } });
  assert.equal(tts.readiness.ok, false);
  assert.match(tts.readiness.hint ?? "", /apt-get install flite espeak-ng/);
  assert.deepEqual(tts.voices.map((v) => v.name), ["tone"]);
  const client = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  const { audio, format } = await client.synthesize("one two three");
  assert.equal(format.sampleRate, TTS_WAV_RATE);
  assert.ok(peak(parseWav(audio).data) > 1000);
});
