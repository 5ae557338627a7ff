import assert from "node:assert/strict";
import { parseWav, wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import {
  encode,
  TTSAudioChunkSchema,
  VoiceRequestSchema,
  VoiceResponseSchema,
} from "@homelab/handler-base/messages";
import { connectNats, request } from "@homelab/handler-base/natsutil";
import {
  collect,
  concatBytes,
  type NatsServer,
  runEntryToExit,
  startFakeLlm,
  startFakeWhisper,
  startFakeXtts,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";

const ROOT = new URL("../../", import.meta.url).pathname;
const ENTRY = new URL("../voice.ts", import.meta.url).pathname;
const ANSWER = "The entry file works end to end. It speaks every sentence.";

/** Runs services/voice.ts with exactly the `voice-assistant` permission set, until it serves. */
function startVoiceAssistant(server: NatsServer, env: Record<string, string>) {
  return startServiceProcess({
    entry: ENTRY,
    flags: ["-P=voice-assistant"],
    cwd: ROOT,
    env: { NATS_URL: server.url, VOICE_ENABLE_RAG: "false", LOG_LEVEL: "info", ...env },
  });
}

function speech(): Uint8Array {
  const samples = new Int16Array(8000).map((_, i) => Math.round(2000 * Math.sin(i / 5)));
  return wrapPcmAsWav(new Uint8Array(samples.buffer));
}

Deno.test("services/voice.ts runs with -P=voice-assistant: speech in, chunks and a response out, clean stop", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using whisper = startFakeWhisper({ transcript: "Does the entry file work?" });
  await using llm = startFakeLlm({ reply: ANSWER });
  await using xtts = startFakeXtts({ chunkBytes: 960 });
  const voice = await startVoiceAssistant(server, {
    WHISPER_URL: whisper.url,
    VLLM_URL: llm.url,
    TTS_URL: xtts.url,
    VOICE_MIN_SENTENCE_CHARS: "10",
  });
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    using chunks = collect(client, "ai.voice.response.audio.e1", TTSAudioChunkSchema);
    using published = collect(client, "ai.voice.response.e1", VoiceResponseSchema);
    await client.flush();
    const reply = await request(
      client,
      "ai.voice.request",
      VoiceRequestSchema,
      { requestId: "e1", audio: speech(), language: "en" },
      VoiceResponseSchema,
      { timeout: 10_000 },
    );
    assert.equal(reply.error, "");
    assert.equal(reply.transcription, "Does the entry file work?");
    assert.equal(reply.response, ANSWER);
    const [response] = await published.until((m) => m.length === 1);
    assert.equal(response?.response, ANSWER);
    const all = await chunks.until((m) => m.some((c) => c.isLast));
    const joined = concatBytes(all.map((c) => c.audio));
    assert.deepEqual(
      joined,
      concatBytes(
        ["The entry file works end to end.", "It speaks every sentence."].map(xtts.pcmFor),
      ),
    );
    assert.deepEqual(new Uint8Array(parseWav(reply.audio).data), joined);
  } finally {
    await client.close();
  }
  assert.equal((await voice.stop()).code, 0, voice.lines.join("\n"));
});

Deno.test("services/voice.ts with CONSUME_MODE=jetstream handles a request stored while it was down", async () => {
  await using server = await startNatsServer({ jetstream: true });
  await using whisper = startFakeWhisper({ transcript: "Stored while down?" });
  await using llm = startFakeLlm({ reply: "Yes, and answered once it came up." });
  await using xtts = startFakeXtts();
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    await ensureStreams(client, { only: ["AI_VOICE_STREAM"] });
    using responses = collect(client, "ai.voice.response.*", VoiceResponseSchema);
    using chunks = collect(client, "ai.voice.response.audio.stored", TTSAudioChunkSchema);
    client.publish(
      "ai.voice.request",
      encode(VoiceRequestSchema, { requestId: "stored", audio: speech() }),
    );
    await client.flush();
    const voice = await startVoiceAssistant(server, {
      WHISPER_URL: whisper.url,
      VLLM_URL: llm.url,
      TTS_URL: xtts.url,
      CONSUME_MODE: "jetstream",
      ENSURE_STREAMS: "true",
    });
    const [response] = await responses.until((m) => m.length === 1);
    assert.equal(response?.requestId, "stored");
    assert.equal(response?.error, "");
    assert.equal(response?.response, "Yes, and answered once it came up.");
    await chunks.until((m) => m.some((c) => c.isLast));
    // AI_VOICE_STREAM is no_ack and the stored request has no reply subject:
    // a request gets no answer, the results come on the per-id subjects.
    await assert.rejects(
      client.request(
        "ai.voice.request",
        encode(VoiceRequestSchema, { requestId: "asked", audio: speech() }),
        { timeout: 500 },
      ),
    );
    const asked = await responses.until((m) => m.some((r) => r.requestId === "asked"));
    assert.equal(asked.find((r) => r.requestId === "asked")?.error, "");
    assert.equal((await voice.stop()).code, 0, voice.lines.join("\n"));
    assert.ok(voice.lines.some((l) => l.includes("jetstream_endpoints")), voice.lines.join("\n"));
  } finally {
    await client.close();
  }
});

Deno.test("services/voice.ts exits 78 naming every bad variable", async () => {
  const { code, stderr: message } = await runEntryToExit({
    entry: ENTRY,
    flags: ["-P=voice-assistant"],
    cwd: ROOT,
    env: { VOICE_MAX_AUDIO_BYTES: "lots", VOICE_TTS_PARALLELISM: "0" },
  });
  assert.equal(code, 78, message);
  assert.match(message, /VOICE_MAX_AUDIO_BYTES must be .*; VOICE_TTS_PARALLELISM must be/);
});

Deno.test("services/voice.ts exits 78 when the sentence bounds contradict each other", async () => {
  const { code, stderr: message } = await runEntryToExit({
    entry: ENTRY,
    flags: ["-P=voice-assistant"],
    cwd: ROOT,
    env: { VOICE_MIN_SENTENCE_CHARS: "300", VOICE_MAX_SENTENCE_CHARS: "200" },
  });
  assert.equal(code, 78, message);
  assert.match(message, /VOICE_MAX_SENTENCE_CHARS must be above VOICE_MIN_SENTENCE_CHARS \(300\)/);
});
