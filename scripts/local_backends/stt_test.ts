import assert from "node:assert/strict";
import { BackendError } from "../../handler_base/errors.ts";
import { createSttClient } from "../../handler_base/clients/stt.ts";
import { createTtsClient } from "../../handler_base/clients/tts.ts";
import { runProcess } from "./_process.ts";
import { startSttStandIn, STT_FALLBACK_TEXT } from "./stt.ts";
import { startTtsStandIn } from "./tts.ts";

// pocketsphinx runs at about half of real time on a small machine: short utterances only.
const SENTENCE = "turn on the kitchen lights";

async function fliteSpeech(text: string): Promise<Uint8Array> {
  await using tts = startTtsStandIn();
  const client = createTtsClient({ baseUrl: tts.url, timeoutMs: 20_000 });
  return (await client.synthesize(text)).audio;
}

Deno.test("STT stand-in: flite speech comes back with the same words through the project's STT client", async () => {
  await using stt = startSttStandIn();
  assert.equal(stt.readiness.ok, true, stt.readiness.hint ?? "");
  const client = createSttClient({ baseUrl: stt.url, timeoutMs: 60_000, language: "en" });
  const { text } = await client.transcribe(await fliteSpeech(SENTENCE));
  assert.equal(text, SENTENCE);
});

Deno.test("STT stand-in: converts 44.1 kHz stereo with sox before recognising", async () => {
  const wav = await fliteSpeech(SENTENCE);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/in.wav`, wav);
    const sox = await runProcess("sox", [
      `${dir}/in.wav`,
      "-r",
      "44100",
      "-c",
      "2",
      `${dir}/out.wav`,
    ]);
    assert.equal(sox.code, 0, sox.stderr);
    await using stt = startSttStandIn();
    const client = createSttClient({ baseUrl: stt.url, timeoutMs: 60_000 });
    const { text } = await client.transcribe(await Deno.readFile(`${dir}/out.wav`));
    assert.equal(text, SENTENCE);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("STT stand-in: bad uploads get an OpenAI error, not a crash", async () => {
  await using stt = startSttStandIn();
  const send = async (fields: Record<string, string | Blob>) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    const response = await fetch(`${stt.url}/v1/audio/transcriptions`, {
      method: "POST",
      body: form,
    });
    const body = await response.json();
    return { status: response.status, message: body.error?.message as string };
  };
  const notWav = new Blob([new TextEncoder().encode("plain text, not audio")]);
  assert.deepEqual(await send({ file: notWav, model: "whisper-1" }), {
    status: 400,
    message: "Cannot transcribe: the file is not a WAV file",
  });
  assert.equal((await send({ model: "whisper-1" })).status, 400);
  const wav = new Blob([new Uint8Array(await fliteSpeech("hi"))]);
  assert.match(
    (await send({ file: wav, model: "whisper-1", language: "de" })).message,
    /English only/,
  );
  assert.match(
    (await send({ file: wav, model: "whisper-1", response_format: "srt" })).message,
    /srt is not supported/,
  );
  const response = await fetch(`${stt.url}/v1/audio/transcriptions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(response.status, 400);
  await response.body?.cancel();

  const client = createSttClient({ baseUrl: stt.url, timeoutMs: 60_000 });
  await assert.rejects(
    client.transcribe(new Uint8Array(3200), { language: "fr" }),
    (error: unknown) => error instanceof BackendError && error.status === 400,
  );
});

Deno.test("STT stand-in: silence is an empty text", async () => {
  await using stt = startSttStandIn();
  const client = createSttClient({ baseUrl: stt.url, timeoutMs: 60_000 });
  assert.equal((await client.transcribe(new Uint8Array(16000))).text, "");
});

Deno.test("STT stand-in: without pocketsphinx a placeholder text stands in and the readiness says what to install", async () => {
  await using stt = startSttStandIn({ programs: { pocketsphinx: null } });
  assert.equal(stt.readiness.ok, false);
  assert.match(stt.readiness.hint ?? "", /apt-get install pocketsphinx/);
  const client = createSttClient({ baseUrl: stt.url, timeoutMs: 10_000 });
  assert.equal((await client.transcribe(new Uint8Array(3200))).text, STT_FALLBACK_TEXT);
});
