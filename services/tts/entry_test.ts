import assert from "node:assert/strict";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import {
  encode,
  TTSAudioChunkSchema,
  TTSFullResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
} from "@homelab/handler-base/messages";
import { connectNats, request } from "@homelab/handler-base/natsutil";
import {
  collect,
  concatBytes,
  type NatsServer,
  runEntryToExit,
  startFakeXtts,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";
import { testWav, writeVoice } from "./test_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const ENTRY = new URL("../tts.ts", import.meta.url).pathname;

/** Runs services/tts.ts with the `tts-module` permission set plus `extraFlags`, until it serves. */
function startTtsModule(
  server: NatsServer,
  env: Record<string, string>,
  extraFlags: string[] = [],
) {
  return startServiceProcess({
    entry: ENTRY,
    flags: ["-P=tts-module", ...extraFlags],
    cwd: ROOT,
    env: { NATS_URL: server.url, ...env },
  });
}

Deno.test("services/tts.ts runs with -P=tts-module: voices, streamed and full synthesis, clean stop", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using xtts = startFakeXtts({ chunkBytes: 960 });
  const dir = await Deno.makeTempDir();
  try {
    await writeVoice(dir, "narrator", {
      "reference.wav": testWav(1000),
      "metadata.json": { language: "en", model_type: "xtts_v2" },
    });
    await writeVoice(dir, "broken", { "metadata.json": "{" });
    const tts = await startTtsModule(
      server,
      { TTS_URL: xtts.url, TTS_VOICES_DIR: dir, LOG_LEVEL: "info" },
      [`--allow-read=${dir}`],
    );
    const client = await connectNats({ servers: server.url, name: "client" });
    try {
      const list = await request(
        client,
        "ai.voice.tts.voices.list",
        TTSRequestSchema,
        {},
        TTSVoiceListResponseSchema,
        { timeout: 5000 },
      );
      assert.deepEqual(list.customVoices.map((v) => v.name), ["narrator"]);
      assert.ok(tts.lines.some((l) => l.includes("Skipping voice folder")));

      const chunks = collect(client, "ai.voice.tts.audio.p1", TTSAudioChunkSchema);
      await client.flush();
      const text = "Spoken through the real entry file.";
      await request(
        client,
        "ai.voice.tts.request.p1",
        TTSRequestSchema,
        { text, speaker: "narrator", stream: true },
        TTSFullResponseSchema,
        { timeout: 10_000 },
      );
      const all = await chunks.until((m) => m.some((c) => c.isLast));
      assert.deepEqual(concatBytes(all.map((c) => c.audio)), xtts.pcmFor(text));
      chunks.close();

      const full = await request(
        client,
        "ai.voice.tts.request.p2",
        TTSRequestSchema,
        { text: "Whole." },
        TTSFullResponseSchema,
        { timeout: 10_000 },
      );
      assert.equal(full.sampleRate, 24000);
      assert.equal(xtts.requests.filter((r) => r.path === "/clone_speaker").length, 1);
    } finally {
      await client.close();
    }
    assert.equal((await tts.stop()).code, 0, tts.lines.join("\n"));
    assert.ok(!tts.lines.some((l) => l.includes("NotCapable")), tts.lines.join("\n"));
    // Its start, phase by phase: loading the modules and the setup (the voices scan) come first.
    const started = tts.logged("Started");
    assert.ok(started, tts.lines.join("\n"));
    const phases = started.phases_ms as Record<string, number>;
    assert.deepEqual(Object.keys(phases), ["load", "setup", "health", "connect", "subscribe"]);
    assert.ok(Object.values(phases).every((ms) => ms >= 0), JSON.stringify(started));
    // From the runtime's time origin on, the phases account for the whole start (each is
    // rounded to 0.1 ms).
    const sum = Object.values(phases).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(Number(started.startup_ms) - sum) <= 0.3, JSON.stringify(started));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("services/tts.ts without read access to its voices directory logs it and serves built-in speakers", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using xtts = startFakeXtts();
  const dir = await Deno.makeTempDir();
  try {
    await writeVoice(dir, "narrator", { "reference.wav": testWav(100) });
    const tts = await startTtsModule(server, { TTS_URL: xtts.url, TTS_VOICES_DIR: dir });
    const client = await connectNats({ servers: server.url, name: "client" });
    try {
      const list = await request(
        client,
        "ai.voice.tts.voices.list",
        TTSRequestSchema,
        {},
        TTSVoiceListResponseSchema,
        { timeout: 5000 },
      );
      assert.deepEqual(list.customVoices, []);
      const reply = await request(
        client,
        "ai.voice.tts.request.p3",
        TTSRequestSchema,
        { text: "Built in.", speaker: "Claribel Dervla" },
        TTSFullResponseSchema,
        { timeout: 10_000 },
      );
      assert.ok(reply.audio.length > 44);
    } finally {
      await client.close();
    }
    assert.equal((await tts.stop()).code, 0);
    assert.ok(
      tts.lines.some((l) => l.includes("Cannot scan the voices directory")),
      tts.lines.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("services/tts.ts with CONSUME_MODE=jetstream handles a request stored while it was down", async () => {
  await using server = await startNatsServer({ jetstream: true });
  await using xtts = startFakeXtts({ chunkBytes: 960 });
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    await ensureStreams(client, { only: ["AI_VOICE_STREAM"] });
    const statuses = collect(client, "ai.voice.tts.status.*", TTSStatusSchema);
    const full = collect(client, "ai.voice.tts.audio.early", TTSFullResponseSchema);
    const chunks = collect(client, "ai.voice.tts.audio.live", TTSAudioChunkSchema);
    client.publish("ai.voice.tts.request.early", encode(TTSRequestSchema, { text: "Stored." }));
    await client.flush();

    const tts = await startTtsModule(server, {
      TTS_URL: xtts.url,
      CONSUME_MODE: "jetstream",
      ENSURE_STREAMS: "true",
    });
    const [early] = await full.until((m) => m.length === 1);
    assert.equal(early?.sessionId, "early");
    assert.ok((early?.audio.length ?? 0) > 44);

    client.publish(
      "ai.voice.tts.request.live",
      encode(TTSRequestSchema, { text: "Streamed from the consumer.", stream: true }),
    );
    const all = await chunks.until((m) => m.some((c) => c.isLast));
    assert.deepEqual(
      concatBytes(all.map((c) => c.audio)),
      xtts.pcmFor("Streamed from the consumer."),
    );
    const done = await statuses.until((m) =>
      m.filter((s) => s.status === "completed").length === 2
    );
    assert.deepEqual(
      done.filter((s) => s.status === "completed").map((s) => s.sessionId),
      ["early", "live"],
    );
    // The voice endpoints stay request-reply: AI_VOICE_STREAM does not ack them.
    const list = await request(
      client,
      "ai.voice.tts.voices.list",
      TTSRequestSchema,
      {},
      TTSVoiceListResponseSchema,
      { timeout: 5000 },
    );
    assert.equal(list.defaultSpeaker, "default");
    for (const c of [statuses, full, chunks]) c.close();
    assert.equal((await tts.stop()).code, 0, tts.lines.join("\n"));
    assert.ok(tts.lines.some((l) => l.includes("jetstream_endpoints")), tts.lines.join("\n"));
    // Ensuring the streams is a phase of its own, between the connection and the subscriptions.
    assert.deepEqual(Object.keys(tts.logged("Started")?.phases_ms ?? {}), [
      "load",
      "setup",
      "health",
      "connect",
      "streams",
      "subscribe",
    ]);
  } finally {
    await client.close();
  }
});

Deno.test("services/tts.ts exits 78 naming every bad variable", async () => {
  const { code, stderr: message } = await runEntryToExit({
    entry: ENTRY,
    flags: ["-P=tts-module"],
    cwd: ROOT,
    env: { TTS_MAX_CHARS: "lots", TTS_API: "coqui" },
  });
  assert.equal(code, 78, message);
  assert.match(
    message,
    /Cannot load configuration: TTS_API must be one of xtts, openai .*; TTS_MAX_CHARS must be/,
  );
});
