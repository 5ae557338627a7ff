import assert from "node:assert/strict";
import { parseWav } from "../clients/wav.ts";
import { startFakeXtts, startTestService } from "../testing/mod.ts";
import { ttsService } from "../../services/tts/service.ts";
import { runIn, tempDir } from "./testdata/cli_helpers.ts";
import { formatVoices } from "./speech.ts";

async function startTts() {
  const xtts = startFakeXtts({ chunkBytes: 960 });
  const voicesDir = await tempDir();
  const service = await startTestService({
    definition: ttsService,
    env: { TTS_URL: xtts.url, TTS_VOICES_DIR: voicesDir.path },
  });
  return {
    service,
    async [Symbol.asyncDispose]() {
      await service[Symbol.asyncDispose]();
      await xtts[Symbol.asyncDispose]();
      await voicesDir[Symbol.asyncDispose]();
    },
  };
}

Deno.test("cli tts writes tts-module's WAV to the file", async () => {
  await using tts = await startTts();
  await using dir = await tempDir();
  const file = `${dir.path}/hello.wav`;
  const run = await runIn(tts.service.url, ["tts", "Hello there", "-o", file, "--json"]);
  assert.equal(run.code, 0, JSON.stringify(run.events));
  const result = run.events.at(-1)!;
  assert.equal(result.type, "result");
  assert.equal(result.sampleRate, 24000);
  const { format, data } = parseWav(await Deno.readFile(file));
  assert.equal(format.sampleRate, 24000);
  assert.equal(data.length, "Hello there".length * 240 * 2);
});

Deno.test("cli tts --stream assembles the chunks into one valid WAV and times the first audio", async () => {
  await using tts = await startTts();
  await using dir = await tempDir();
  const file = `${dir.path}/stream.wav`;
  const text = "A longer sentence, so that the audio comes in many chunks.";
  const run = await runIn(tts.service.url, ["tts", text, "-o", file, "--stream"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /Wrote \d+ bytes \((\d+) chunks\) at 24000 Hz .*first audio after/);
  const chunks = Number(run.stderr.match(/\((\d+) chunks\)/)![1]);
  assert.ok(chunks > 2, run.stderr);
  const { format, data } = parseWav(await Deno.readFile(file));
  assert.equal(format.sampleRate, 24000);
  assert.equal(data.length, text.length * 240 * 2);
});

Deno.test("cli tts: an unknown voice is tts-module's InvalidArgument, exit code 1", async () => {
  await using tts = await startTts();
  await using dir = await tempDir();
  const run = await runIn(tts.service.url, [
    "tts",
    "Hi",
    "-o",
    `${dir.path}/x.wav`,
    "--voice",
    "nobody",
    "--json",
  ]);
  assert.equal(run.code, 1);
  const error = run.events.at(-1)!;
  assert.equal(error.type, "error");
  assert.equal(error.kind, "remote_error");
  assert.match(String(error.message), /InvalidArgument/);
});

Deno.test("cli tts without -o is a usage error, exit code 2, before connecting", async () => {
  const run = await runIn("nats://127.0.0.1:1", ["tts", "Hi"]);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /tts needs --output/);
});

Deno.test("cli voices lists the default speaker; --refresh rescans", async () => {
  await using tts = await startTts();
  const list = await runIn(tts.service.url, ["voices"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^default speaker: \S+/);
  const refresh = await runIn(tts.service.url, ["voices", "--refresh", "--json"]);
  assert.equal(refresh.code, 0);
  assert.deepEqual(refresh.events, [{
    type: "result",
    command: "voices",
    defaultSpeaker: "",
    voices: [],
    refreshed: true,
  }]);
});

Deno.test("formatVoices() lists each custom voice on its own line", () => {
  const lines = formatVoices({
    defaultSpeaker: "default",
    refreshed: false,
    voices: [{ name: "ada", language: "en", modelType: "xtts", createdAt: "2026-01-01" }],
  });
  assert.deepEqual(lines, ["default speaker: default", "ada\ten\txtts\t2026-01-01"]);
});
