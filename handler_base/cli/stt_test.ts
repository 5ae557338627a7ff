import assert from "node:assert/strict";
import { parseWav } from "../clients/wav.ts";
import { defineEndpoint } from "../handler.ts";
import {
  AudioEncoding,
  type STTStreamMessage,
  STTStreamMessageSchema,
  STTTranscriptionSchema,
} from "../messages.ts";
import { connectNats } from "../natsutil.ts";
import { startNatsServer, startTestService } from "../testing/mod.ts";
import { runIn, tempDir } from "./testdata/cli_helpers.ts";
import { createUi, memoryOutput } from "./output.ts";
import { chunkBytes, listen, pacedChunks, rechunk } from "./stt.ts";

/** A stt-module stand-in that speaks the contract: a partial after 5 chunks, the final at end. */
async function startSttStandIn(natsUrl?: string) {
  const received: STTStreamMessage[] = [];
  const endpoint = defineEndpoint({
    subject: "ai.voice.stream.>",
    request: STTStreamMessageSchema,
    concurrency: 1, // in order, as stt-module keeps a session's chunks
    maxPending: 10_000, // tests send a whole file at once (--speed 0)
    handle(message, ctx) {
      received.push(message);
      const session = ctx.tokens.at(-1)!;
      const chunks = received.filter((m) => m.type === "chunk").length;
      const subject = `ai.voice.transcription.${session}`;
      if (message.type === "chunk" && chunks === 5) {
        ctx.publish(subject, STTTranscriptionSchema, {
          sessionId: session,
          transcript: "turn on",
          sequence: 0,
          isPartial: true,
          hasVoiceActivity: true,
        });
      } else if (message.type === "end") {
        ctx.publish(subject, STTTranscriptionSchema, {
          sessionId: session,
          transcript: "turn on the kitchen lights",
          sequence: 1,
          isFinal: true,
          hasVoiceActivity: true,
        });
      }
      return Promise.resolve();
    },
  });
  const service = await startTestService({
    name: "stt-module",
    endpoints: [endpoint],
    ...(natsUrl ? { natsUrl } : {}),
  });
  return Object.assign(service, { received });
}

/** Speech of a known sentence, as 16 kHz mono 16-bit WAV (espeak-ng, resampled by sox). */
async function speechWav(dir: string): Promise<string> {
  const raw = `${dir}/espeak.wav`;
  const wav = `${dir}/speech.wav`;
  const espeak = await new Deno.Command("espeak-ng", {
    args: ["-w", raw, "turn on the kitchen lights"],
  }).output();
  assert.ok(espeak.success, new TextDecoder().decode(espeak.stderr));
  const sox = await new Deno.Command("sox", {
    args: [raw, "-r", "16000", "-c", "1", "-b", "16", wav],
  })
    .output();
  assert.ok(sox.success, new TextDecoder().decode(sox.stderr));
  return wav;
}

Deno.test("cli stt streams a WAV in 100 ms chunks and prints the partial, then the final", async () => {
  await using stt = await startSttStandIn();
  await using dir = await tempDir();
  const file = await speechWav(dir.path);
  const { data } = parseWav(await Deno.readFile(file));
  const run = await runIn(stt.url, ["stt", file]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split("\n"), [
    "partial #0: turn on",
    "final   #1: turn on the kitchen lights",
    "transcript: turn on the kitchen lights",
  ]);
  const [start, ...rest] = stt.received;
  assert.equal(start?.type, "start");
  assert.deepEqual(
    [start?.sampleRate, start?.channels, start?.bitDepth, start?.audioEncoding],
    [16000, 1, 16, AudioEncoding.PCM_S16LE],
  );
  assert.equal(rest.at(-1)?.type, "end");
  const sizes = rest.filter((m) => m.type === "chunk").map((m) => m.audio.length);
  assert.ok(sizes.length > 5);
  assert.ok(sizes.slice(0, -1).every((size) => size === 3200), `chunk sizes ${sizes}`);
  assert.equal(sizes.reduce((a, b) => a + b, 0), data.length);
});

Deno.test("cli stt --json gives the transcriptions in order, then the result", async () => {
  await using stt = await startSttStandIn();
  await using dir = await tempDir();
  const file = await speechWav(dir.path);
  const run = await runIn(stt.url, ["stt", file, "--speed", "0", "--chunk-ms", "20", "--json"]);
  assert.equal(run.code, 0, JSON.stringify(run.events));
  assert.deepEqual(run.events.map((e) => [e.type, e.isFinal ?? null]), [
    ["transcription", false],
    ["transcription", true],
    ["result", null],
  ]);
  assert.equal(run.events.at(-1)!.transcript, "turn on the kitchen lights");
  const sizes = stt.received.filter((m) => m.type === "chunk").map((m) => m.audio.length);
  assert.equal(sizes[0], 640);
});

Deno.test("cli stt with no stt-module is exit code 4; a missing file is exit code 2", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using dir = await tempDir();
  const file = await speechWav(dir.path);
  const none = await runIn(server.url, ["stt", file]);
  assert.equal(none.code, 4);
  assert.match(none.stderr, /^error: Cannot transcribe: no stt-module answers/m);
  const missing = await runIn(server.url, ["stt", `${dir.path}/nope.wav`]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: Cannot read .*nope\.wav/m);
});

Deno.test("listen() streams what the recorder writes, and names the recorders when none exists", async () => {
  await using stt = await startSttStandIn();
  await using dir = await tempDir();
  const { data } = parseWav(await Deno.readFile(await speechWav(dir.path)));
  const raw = `${dir.path}/speech.raw`;
  await Deno.writeFile(raw, data);
  const nc = await connectNats({ servers: stt.url, name: "listen-test" });
  try {
    const out = memoryOutput();
    const ctx = { nc, ui: createUi(out), timeoutMs: 10_000 };
    const result = await listen(ctx, { recorders: [{ command: "cat", args: () => [raw] }] });
    assert.equal(result.transcript, "turn on the kitchen lights");
    assert.equal(result.chunksSent, Math.ceil(data.length / 3200));
    assert.match(out.stdoutText(), /partial #0: turn on\nfinal {3}#1: turn on/);

    await assert.rejects(
      listen(ctx, { recorders: [{ command: "no-such-recorder-here", args: () => [] }] }),
      (error: Error & { code?: number }) =>
        error.code === 5 && /no recorder found \(no-such-recorder-here\)/.test(error.message),
    );
  } finally {
    await nc.close();
  }
});

Deno.test("pacedChunks() cuts whole frames; rechunk() re-cuts a stream", async () => {
  const format = { sampleRate: 16000, channels: 1, bitDepth: 16 };
  assert.equal(chunkBytes(format, 30), 960);
  assert.equal(chunkBytes({ ...format, channels: 2 }, 10), 640);
  const sizes: number[] = [];
  for await (const c of pacedChunks(new Uint8Array(2000), format, { chunkMs: 30, speed: 0 })) {
    sizes.push(c.length);
  }
  assert.deepEqual(sizes, [960, 960, 80]);
  const pieces: number[] = [];
  const source = ReadableStream.from([new Uint8Array(3), new Uint8Array(7), new Uint8Array(1)]);
  for await (const c of rechunk(source, 4)) pieces.push(c.length);
  assert.deepEqual(pieces, [4, 4, 3]);
});
