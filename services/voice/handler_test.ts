import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/nats-core";
import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
import { createLlmClient } from "@homelab/handler-base/clients/llm";
import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
import { createSttClient } from "@homelab/handler-base/clients/stt";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { parseWav, wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { createService, type Service } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import {
  AudioEncoding,
  decode,
  encode,
  type ErrorResponse,
  ErrorResponseSchema,
  type MessageInitShape,
  MSG_TYPE_HEADER,
  type TTSAudioChunk,
  TTSAudioChunkSchema,
  VoiceRequestSchema,
  type VoiceResponse,
  VoiceResponseSchema,
} from "@homelab/handler-base/messages";
import { connectNats } from "@homelab/handler-base/natsutil";
import { createTelemetry } from "@homelab/handler-base/telemetry";
import {
  closedPortUrl,
  concatBytes,
  type FakeEmbeddings,
  type FakeLlm,
  type FakeLlmConfig,
  type FakeMilvus,
  type FakeReranker,
  type FakeWhisper,
  type FakeXtts,
  type FakeXttsConfig,
  type NatsServer,
  recordingTracerProvider,
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeWhisper,
  startFakeXtts,
  startNatsServer,
} from "@homelab/handler-base/testing";
import { createVoiceEndpoints, type VoiceHandlerOptions } from "./handler.ts";
import { DEFAULT_NO_SPEECH_REPLY } from "./pipeline.ts";
import { SentenceChunker, speakable } from "./sentences.ts";

// ---------------------------------------------------------------------------
// Fixtures

const QUESTION = "How does JetStream store messages?";
const ANSWER = "JetStream keeps every message in a stream on disk. " +
  "Consumers read them back at their own pace. That is all there is to it.";
/** The sentences of ANSWER with the test's chunking (minChars 10). */
const SENTENCES = [
  "JetStream keeps every message in a stream on disk.",
  "Consumers read them back at their own pace.",
  "That is all there is to it.",
];
const HITS = [
  { id: 1, text: "Milvus is a vector database.", distance: 0.95 },
  { id: 2, text: "JetStream stores messages in streams.", distance: 0.9 },
  { id: 3, text: "How JetStream does store messages on disk.", distance: 0.85 },
  { id: 4, text: "Kubernetes schedules pods.", distance: 0.8 },
];

/** One second of a 16 kHz mono s16le tone. */
function pcm16k(ms = 1000): Uint8Array {
  const samples = new Int16Array(16 * ms).map((_, i) => Math.round(3000 * Math.sin(i / 8)));
  return new Uint8Array(samples.buffer);
}

/** The deltas the fake LLM streams for a text (words with their trailing space). */
function deltasOf(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

/** Rejects when the promise takes longer than 10 s (a guard, not a measurement). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Bytes as a plain Uint8Array (decoded protobuf bytes may be Buffers). */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

// ---------------------------------------------------------------------------
// Harness: a real nats-server, the fakes, and the endpoint in a service

interface SetupOptions {
  down?: "embeddings" | "milvus" | "reranker";
  handler?: VoiceHandlerOptions;
  llm?: FakeLlmConfig;
  xtts?: FakeXttsConfig;
  transcript?: string;
}

/** What a client saw of one request on `ai.voice.response.>`, in arrival order. */
type VoiceEvent =
  | { kind: "chunk"; chunk: TTSAudioChunk }
  | { kind: "response"; response: VoiceResponse };

interface VoiceResult {
  /** The decoded reply, when the request was sent with one. */
  reply?: VoiceResponse | ErrorResponse;
  /** The VoiceResponse published on `ai.voice.response.{id}`. */
  response: VoiceResponse;
  /** The audio chunks, in arrival order. */
  chunks: TTSAudioChunk[];
  /** Chunks and the response, in arrival order. */
  events: VoiceEvent[];
}

interface Harness extends AsyncDisposable {
  server: NatsServer;
  client: NatsConnection;
  service: Service;
  whisper: FakeWhisper;
  llm: FakeLlm;
  embeddings: FakeEmbeddings;
  milvus: FakeMilvus;
  reranker: FakeReranker;
  xtts: FakeXtts;
  tracing: ReturnType<typeof recordingTracerProvider>;
  logs: Record<string, unknown>[];
  /** Events per request id, as they arrive. */
  events(requestId: string): VoiceEvent[];
  /** Waits until the events of a request satisfy a condition (bounded). */
  until(requestId: string, done: (events: VoiceEvent[]) => boolean): Promise<VoiceEvent[]>;
  /** Sends a request (with a reply subject unless `reply: false`) and waits for its response. */
  voice(
    init: MessageInitShape<typeof VoiceRequestSchema>,
    options?: { reply?: boolean },
  ): Promise<VoiceResult>;
}

function isErrorResponse(reply: unknown): reply is ErrorResponse {
  return (reply as { $typeName?: string })?.$typeName === ErrorResponseSchema.typeName;
}

async function setup(options: SetupOptions = {}): Promise<Harness> {
  const server = await startNatsServer({ jetstream: false });
  const whisper = startFakeWhisper({ transcript: options.transcript ?? QUESTION });
  const llm = startFakeLlm({ reply: ANSWER, ...options.llm });
  const embeddings = startFakeEmbeddings();
  const milvus = startFakeMilvus({ hits: HITS });
  const reranker = startFakeReranker();
  const xtts = startFakeXtts({ chunkBytes: 960, ...options.xtts });
  const url = (name: SetupOptions["down"], fake: { url: string }) =>
    options.down === name ? closedPortUrl() : fake.url;
  const http = { retries: 0, timeoutMs: 10_000 };
  const clients = {
    stt: createSttClient({ ...http, baseUrl: whisper.url }),
    llm: createLlmClient({ ...http, baseUrl: llm.url }),
    tts: createTtsClient({ ...http, baseUrl: xtts.url }),
    rag: {
      embeddings: createEmbeddingsClient({ ...http, baseUrl: url("embeddings", embeddings) }),
      milvus: createMilvusClient({ ...http, baseUrl: url("milvus", milvus) }),
      reranker: createRerankerClient({ ...http, baseUrl: url("reranker", reranker) }),
    },
  };
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger({
    service: "voice-assistant",
    level: "debug",
    write: (line) => logs.push(JSON.parse(line)),
  });
  const tracing = recordingTracerProvider();
  const serviceConn = await connectNats({ servers: server.url, name: "voice-assistant" });
  const client = await connectNats({ servers: server.url, name: "client" });
  const service = createService(serviceConn, {
    name: "voice-assistant",
    endpoints: createVoiceEndpoints(clients, {
      minSentenceChars: 10,
      tracer: tracing.getTracer("voice-assistant"),
      ...options.handler,
    }),
    logger,
    telemetry: createTelemetry({ serviceName: "voice-assistant", tracerProvider: tracing }),
  });
  await service.start();

  // Callbacks run in arrival order, so chunks and responses keep their order.
  const byId = new Map<string, VoiceEvent[]>();
  const waiters = new Set<() => void>();
  const sub = client.subscribe("ai.voice.response.>", {
    callback: (_error, msg) => {
      const tokens = msg.subject.split(".");
      const isChunk = tokens[3] === "audio";
      const id = tokens.at(-1)!;
      const list = byId.get(id) ?? [];
      byId.set(id, list);
      if (isChunk) {
        assert.equal(msg.headers?.get(MSG_TYPE_HEADER), TTSAudioChunkSchema.typeName);
        list.push({ kind: "chunk", chunk: decode(TTSAudioChunkSchema, msg.data) });
      } else {
        assert.equal(msg.headers?.get(MSG_TYPE_HEADER), VoiceResponseSchema.typeName);
        list.push({ kind: "response", response: decode(VoiceResponseSchema, msg.data) });
      }
      for (const wake of waiters) wake();
    },
  });
  await client.flush();

  const events = (id: string) => byId.get(id) ?? [];
  function until(id: string, done: (events: VoiceEvent[]) => boolean): Promise<VoiceEvent[]> {
    if (done(events(id))) return Promise.resolve(events(id));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`Condition not met for ${id} after ${events(id).length} events`));
      }, 10_000);
      function check() {
        if (!done(events(id))) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(events(id));
      }
      waiters.add(check);
    });
  }

  return {
    server,
    client,
    service,
    whisper,
    llm,
    embeddings,
    milvus,
    reranker,
    xtts,
    tracing,
    logs,
    events,
    until,
    async voice(init, { reply = true } = {}) {
      const requestId = init.requestId ?? crypto.randomUUID();
      const data = encode(VoiceRequestSchema, { audio: pcm16k(), ...init, requestId });
      let answer: VoiceResponse | ErrorResponse | undefined;
      if (reply) {
        const msg = await client.request("ai.voice.request", data, { timeout: 10_000 });
        answer = msg.headers?.get(MSG_TYPE_HEADER) === ErrorResponseSchema.typeName
          ? decode(ErrorResponseSchema, msg.data)
          : decode(VoiceResponseSchema, msg.data);
      } else {
        client.publish("ai.voice.request", data);
      }
      const all = await until(requestId, (e) => e.some((x) => x.kind === "response"));
      const response = all.find((e) => e.kind === "response")!;
      return {
        ...(answer ? { reply: answer } : {}),
        response: (response as { response: VoiceResponse }).response,
        chunks: all.flatMap((e) => e.kind === "chunk" ? [e.chunk] : []),
        events: all,
      };
    },
    async [Symbol.asyncDispose]() {
      sub.unsubscribe();
      await service.stop({ graceMs: 1000 });
      await serviceConn.close();
      await client.close();
      await Promise.all(
        [whisper, llm, embeddings, milvus, reranker, xtts].map((fake) => fake.close()),
      );
      await server[Symbol.asyncDispose]();
    },
  };
}

/** The PCM the fake XTTS makes for each sentence, joined in order. */
function expectedPcm(h: Harness, sentences: readonly string[]): Uint8Array {
  return concatBytes(sentences.map((s) => h.xtts.pcmFor(speakable(s))));
}

/**
 * Asserts the audio invariants: chunk indexes 0..n in order, audio chunks
 * with the format, one last chunk with `is_last` and `total_chunks`, every
 * chunk before the response, and the response's WAV equal to the chunks joined.
 */
function assertAudio(result: VoiceResult): Uint8Array {
  const { chunks, events, response } = result;
  assert.equal(events.at(-1)?.kind, "response", "the response comes after every chunk");
  assert.equal(events.filter((e) => e.kind === "response").length, 1);
  const joined = plain(concatBytes(chunks.map((c) => c.audio)));
  if (chunks.length === 0) {
    assert.equal(response.audio.length, 0);
    return joined;
  }
  assert.deepEqual(chunks.map((c) => c.chunkIndex), chunks.map((_, i) => i));
  const last = chunks.at(-1)!;
  assert.equal(last.isLast, true);
  assert.equal(last.totalChunks, chunks.length);
  assert.equal(last.audio.length, 0);
  for (const chunk of chunks.slice(0, -1)) {
    assert.equal(chunk.isLast, false);
    assert.equal(chunk.totalChunks, 0);
    assert.ok(chunk.audio.length > 0 && chunk.audio.length % 2 === 0);
  }
  for (const chunk of chunks) {
    assert.equal(chunk.sessionId, response.requestId);
    assert.deepEqual(
      [chunk.sampleRate, chunk.channels, chunk.bitDepth, chunk.audioEncoding],
      [24000, 1, 16, AudioEncoding.PCM_S16LE],
    );
  }
  const wav = parseWav(response.audio);
  assert.deepEqual(
    [wav.format.sampleRate, wav.format.channels, wav.format.bitDepth],
    [24000, 1, 16],
  );
  assert.deepEqual(plain(wav.data), joined);
  return joined;
}

function assertReplyIs(reply: VoiceResult["reply"], response: VoiceResponse): void {
  assert.ok(reply && !isErrorResponse(reply), JSON.stringify(reply));
  assert.deepEqual(encode(VoiceResponseSchema, reply), encode(VoiceResponseSchema, response));
}

function warnings(h: Harness, message: string): Record<string, unknown>[] {
  return h.logs.filter((line) => line.level === "warn" && line.msg === message);
}

function userTurn(h: Harness): string {
  const body = h.llm.requests.at(-1)!.json as { messages: { content: string }[] };
  return body.messages.at(-1)!.content;
}

// ---------------------------------------------------------------------------
// Tests

Deno.test("voice: the full path, speech to speech with RAG, chunk by chunk", async () => {
  await using h = await setup();
  const result = await h.voice({ requestId: "full", collection: "docs", language: "en" });
  const { response, reply, chunks } = result;
  assert.equal(response.error, "", response.error);
  assertReplyIs(reply, response);
  assert.equal(response.requestId, "full");
  assert.equal(response.transcription, QUESTION);
  assert.equal(response.response, ANSWER);
  // Reranked by shared words with the question, best first, with the reranker's scores.
  assert.deepEqual(response.sources.map((s) => s.text), [
    HITS[2]!.text,
    HITS[1]!.text,
    HITS[0]!.text,
  ]);
  assert.ok(response.sources[0]!.score > response.sources[2]!.score);
  // The prompt carries the context and the question; the collection is the request's.
  assert.match(userTurn(h), /\[1\] How JetStream does store messages on disk\./);
  assert.match(userTurn(h), /Question: How does JetStream store messages\?$/);
  assert.equal((h.milvus.requests[0]!.json as { collectionName: string }).collectionName, "docs");
  // Whisper got a WAV and the language.
  assert.equal(h.whisper.requests[0]!.form?.get("language"), "en");
  // One synthesis per sentence, in order, and the audio is theirs.
  const texts = h.xtts.requests.filter((r) => r.path === "/tts_stream").map((r) =>
    (r.json as { text: string }).text
  );
  // Two syntheses run at once: they may reach the backend in either order.
  assert.deepEqual(texts.toSorted(), SENTENCES.toSorted());
  assert.ok(chunks.length > SENTENCES.length + 1, `${chunks.length} chunks`);
  assert.deepEqual(assertAudio(result), expectedPcm(h, SENTENCES));
});

Deno.test("voice: every stage is a child span of the message span, with its duration", async () => {
  await using h = await setup();
  const { response } = await h.voice({ requestId: "spans" });
  assert.equal(response.error, "");
  const message = h.tracing.spans.find((s) => s.attributes["voice.request_id"] === "spans");
  assert.ok(message);
  const stages = h.tracing.spans.filter((s) => s.name.startsWith("voice."));
  assert.deepEqual(stages.map((s) => s.name), [
    "voice.stt",
    "voice.rag",
    "voice.llm",
    "voice.tts",
    "voice.tts",
    "voice.tts",
  ]);
  for (const stage of stages) {
    assert.equal(stage.parent, message.name, stage.name);
    assert.equal(typeof stage.attributes["voice.duration_ms"], "number", stage.name);
    assert.ok(stage.ended, stage.name);
  }
  assert.deepEqual(
    stages.filter((s) => s.name === "voice.tts").map((s) => s.attributes["voice.sentence_index"]),
    [0, 1, 2],
  );
  assert.equal(stages[2]!.attributes["voice.sentences"], 3);
  assert.equal(message.events.filter((e) => e.name === "voice.first_audio").length, 1);
  assert.equal(message.attributes["voice.used_rag"], true);
});

Deno.test("voice: the first audio chunk goes out while the LLM is still writing", async () => {
  // The LLM sends the role event and the first sentence's words, then waits
  // until the client has received audio: a pipeline that waited for the
  // whole answer would never send any, and the wait below would fail.
  const gate = Promise.withResolvers<void>();
  const firstSentenceEvents = 1 + deltasOf(SENTENCES[0]! + " ").length;
  const order: string[] = [];
  await using h = await setup({
    llm: {
      pace: (index) => {
        if (index < firstSentenceEvents) return Promise.resolve();
        if (index === firstSentenceEvents) order.push(`llm holds at event ${index}`);
        return gate.promise;
      },
    },
  });
  const pending = h.voice({ requestId: "early" }, { reply: false });
  await h.until("early", (events) => events.some((e) => e.kind === "chunk"));
  order.push("first chunk received");
  assert.equal(h.events("early").some((e) => e.kind === "response"), false);
  gate.resolve();
  order.push("llm released");
  const result = await pending;
  assert.deepEqual(order, [
    `llm holds at event ${firstSentenceEvents}`,
    "first chunk received",
    "llm released",
  ]);
  assert.equal(result.response.response, ANSWER);
  assert.deepEqual(assertAudio(result), expectedPcm(h, SENTENCES));
});

Deno.test("voice: sentences synthesized at the same time still go out in order", async () => {
  // The first sentence's synthesis is held until the second one has been
  // synthesized whole: emitting in completion order would put it first.
  const firstHeld = Promise.withResolvers<void>();
  await using h = await setup({ handler: { ttsParallelism: 2 } });
  h.xtts.override(async (request) => {
    if (request.path !== "/tts_stream") return undefined;
    if ((request.json as { text: string }).text === SENTENCES[0]) await firstHeld.promise;
    return undefined;
  });
  h.llm.config.reply = `${SENTENCES[0]} ${SENTENCES[1]}`;
  const pending = h.voice({ requestId: "order" });
  await h.tracing.ended((s) =>
    s.name === "voice.tts" && s.attributes["voice.sentence_index"] === 1
  );
  assert.equal(h.events("order").length, 0);
  firstHeld.resolve();
  const result = await pending;
  assert.deepEqual(assertAudio(result), expectedPcm(h, SENTENCES.slice(0, 2)));
});

Deno.test("voice: without RAG, the question goes to the LLM alone", async () => {
  await using h = await setup({ handler: { enableRag: false } });
  const result = await h.voice({ requestId: "norag" });
  assert.equal(result.response.error, "");
  assert.equal(userTurn(h), QUESTION);
  assert.deepEqual(result.response.sources, []);
  assert.equal(h.embeddings.requests.length + h.milvus.requests.length, 0);
  assert.equal(h.tracing.spans.some((s) => s.name === "voice.rag"), false);
  assert.deepEqual(assertAudio(result), expectedPcm(h, SENTENCES));
});

Deno.test("voice: failing retrieval backends degrade to an answer without context", async (t) => {
  for (const down of ["embeddings", "milvus", "reranker"] as const) {
    await t.step(`${down} down`, async () => {
      await using h = await setup({ down });
      const result = await h.voice({ requestId: `degraded-${down}` });
      assert.equal(result.response.error, "");
      assert.equal(result.response.response, ANSWER);
      assert.deepEqual(result.response.sources, []);
      assert.equal(userTurn(h), QUESTION);
      assertAudio(result);
      const message = h.tracing.spans.find((s) =>
        s.attributes["voice.request_id"] === `degraded-${down}`
      )!;
      assert.equal(message.attributes["voice.rag_degraded"], true);
      assert.ok(message.events.some((e) => e.name === "voice.rag_degraded"));
      assert.equal(warnings(h, "Answering without RAG: retrieval failed").length, 1);
    });
  }
});

Deno.test("voice: an empty transcription is answered politely without the LLM", async () => {
  await using h = await setup({ transcript: "" });
  const result = await h.voice({ requestId: "silence" });
  assert.equal(result.response.error, "");
  assert.equal(result.response.transcription, "");
  assert.equal(result.response.response, DEFAULT_NO_SPEECH_REPLY);
  assert.equal(h.llm.requests.length, 0);
  assert.equal(h.embeddings.requests.length, 0);
  assert.deepEqual(assertAudio(result), expectedPcm(h, [DEFAULT_NO_SPEECH_REPLY]));
});

Deno.test("voice: a failing STT backend answers the error, with nothing else", async () => {
  await using h = await setup();
  h.whisper.failNext(500, { body: '{"error":"CUDA out of memory"}' });
  const result = await h.voice({ requestId: "stt-down" });
  assertReplyIs(result.reply, result.response);
  assert.match(result.response.error, /"stt" failed with status 500/);
  assert.equal(result.response.transcription, "");
  assert.equal(result.chunks.length, 0);
  assert.equal(h.llm.requests.length, 0);
  assert.equal(warnings(h, "Answering with what was obtained: a stage failed").length, 1);
});

Deno.test("voice: a failing LLM answers the transcription and the error", async () => {
  await using h = await setup();
  h.llm.failNext(503, { headers: { "retry-after": "0" } });
  const result = await h.voice({ requestId: "llm-down" });
  assertReplyIs(result.reply, result.response);
  assert.match(result.response.error, /"llm"/);
  assert.equal(result.response.transcription, QUESTION);
  assert.equal(result.response.response, "");
  assert.equal(result.chunks.length, 0);
});

Deno.test("voice: an LLM stream cut midway keeps what was written and the audio already sent", async () => {
  // Two sentences, then the connection breaks: the audio is whatever went out
  // before, and the response's WAV is exactly that.
  const events = 1 + deltasOf(`${SENTENCES[0]} ${SENTENCES[1]} `).length;
  await using h = await setup({ llm: { cutAfterEvents: events } });
  const result = await h.voice({ requestId: "llm-cut" });
  assertReplyIs(result.reply, result.response);
  assert.match(result.response.error, /Cannot reach backend "llm"/);
  assert.equal(result.response.response, `${SENTENCES[0]} ${SENTENCES[1]} `);
  const joined = assertAudio(result);
  const full = expectedPcm(h, SENTENCES.slice(0, 2));
  assert.deepEqual(joined, full.subarray(0, joined.length));
});

Deno.test("voice: a failing TTS backend stops the LLM stream and answers the text and the error", async () => {
  const gate = Promise.withResolvers<void>();
  const firstSentenceEvents = 1 + deltasOf(SENTENCES[0]! + " ").length;
  await using h = await setup({
    llm: { pace: (index) => index < firstSentenceEvents ? Promise.resolve() : gate.promise },
  });
  h.xtts.failNext(500, { path: "/tts_stream" });
  try {
    const result = await h.voice({ requestId: "tts-down" });
    assertReplyIs(result.reply, result.response);
    assert.match(result.response.error, /"tts".*500/);
    assert.equal(result.response.transcription, QUESTION);
    assert.equal(result.response.response, `${SENTENCES[0]} `);
    assert.equal(result.chunks.length, 0);
    // The LLM stream in flight was closed, not left running (the gate stays
    // shut until then: a stream let run to its end would hide the close).
    await within(h.llm.requests[0]!.disconnected, "the LLM stream to be closed");
  } finally {
    gate.resolve();
  }
});

Deno.test("voice: the deadline cancels the stages in flight and still publishes the response", async () => {
  await using h = await setup({ handler: { timeoutMs: 300 } });
  h.llm.hangNext();
  const result = await h.voice({ requestId: "late" });
  assert.ok(isErrorResponse(result.reply));
  assert.equal(result.reply.type, "Timeout");
  assert.equal(result.response.transcription, QUESTION);
  assert.match(result.response.error, /300 ms/);
  await within(h.llm.requests[0]!.disconnected, "the LLM stream to be closed");
});

Deno.test("voice: a shutdown cancels the stages in flight and still publishes the response", async () => {
  await using h = await setup();
  h.xtts.hangNext();
  const pending = h.voice({ requestId: "stopping" }, { reply: false });
  const tts = await h.xtts.nextRequest(AbortSignal.timeout(10_000));
  await h.service.stop({ graceMs: 50 });
  const result = await pending;
  assert.match(result.response.error, /stopping/);
  assert.equal(result.response.transcription, QUESTION);
  await within(tts.disconnected, "the TTS stream to be closed");
});

Deno.test("voice: bad audio and arguments are refused with InvalidArgument", async (t) => {
  await using h = await setup({ handler: { maxAudioBytes: 64_000 } });
  const cases: {
    name: string;
    init: MessageInitShape<typeof VoiceRequestSchema>;
    error: RegExp;
  }[] = [
    { name: "empty", init: { audio: new Uint8Array(0) }, error: /the audio is empty/ },
    {
      name: "oversized",
      init: { audio: new Uint8Array(64_002) },
      error: /64002 bytes, more than the limit of 64000/,
    },
    {
      name: "mp3",
      init: { audio: new TextEncoder().encode("ID3\x04\x00\x00 frames") },
      error: /the audio is MP3; send WAV, or raw PCM 16 kHz mono/,
    },
    {
      name: "ogg",
      init: { audio: new TextEncoder().encode("OggS\x00\x02 opus") },
      error: /the audio is Ogg/,
    },
    { name: "odd bytes", init: { audio: new Uint8Array(3) }, error: /not whole 16-bit samples/ },
    {
      name: "broken wav",
      init: { audio: wrapPcmAsWav(pcm16k(10)).subarray(0, 30) },
      error: /the WAV file is invalid/,
    },
    {
      name: "bad language",
      init: { language: "english please" },
      error: /language "english please" is not a language code/,
    },
  ];
  for (const { name, init, error } of cases) {
    await t.step(name, async () => {
      const requestId = `bad-${name.replace(/\s/g, "-")}`;
      const { reply, response, chunks } = await h.voice({ ...init, requestId });
      assert.ok(isErrorResponse(reply), JSON.stringify(reply));
      assert.equal(reply.type, "InvalidArgument");
      assert.match(reply.message, /^Cannot transcribe the request: /);
      assert.match(reply.message, error);
      assert.equal(response.error, reply.message);
      assert.equal(chunks.length, 0);
    });
  }
  assert.equal(h.whisper.requests.length, 0);
  const bad = await h.client.request(
    "ai.voice.request",
    encode(VoiceRequestSchema, { requestId: "a.b", audio: pcm16k() }),
    { timeout: 10_000 },
  );
  const error = decode(ErrorResponseSchema, bad.data);
  assert.equal(error.type, "InvalidArgument");
  assert.match(error.message, /request_id must be one subject token/);
});

Deno.test("voice: WAV input at another rate and raw PCM both reach Whisper as WAV", async () => {
  await using h = await setup({ handler: { enableRag: false } });
  const wav = wrapPcmAsWav(pcm16k(500), { sampleRate: 44100 });
  const asWav = await h.voice({ requestId: "wav", audio: wav });
  assert.equal(asWav.response.error, "");
  const asPcm = await h.voice({ requestId: "pcm", audio: pcm16k(500) });
  assert.equal(asPcm.response.error, "");
  const [first, second] = await Promise.all(
    h.whisper.requests.map(async (r) =>
      new Uint8Array(await (r.form!.get("file") as Blob).arrayBuffer())
    ),
  );
  assert.deepEqual(first, wav);
  assert.equal(parseWav(second!).format.sampleRate, 16000);
  assert.deepEqual(parseWav(second!).data, pcm16k(500));
});

Deno.test("voice: a request without a reply subject and without an id gets a generated id", async () => {
  await using h = await setup({ handler: { enableRag: false } });
  const received = Promise.withResolvers<{ subject: string; response: VoiceResponse }>();
  h.client.subscribe("ai.voice.response.*", {
    max: 1,
    callback: (_error, msg) =>
      received.resolve({ subject: msg.subject, response: decode(VoiceResponseSchema, msg.data) }),
  });
  await h.client.flush();
  h.client.publish("ai.voice.request", encode(VoiceRequestSchema, { audio: pcm16k() }));
  const timer = setTimeout(() => received.reject(new Error("No response within 10 s")), 10_000);
  const { subject, response } = await received.promise.finally(() => clearTimeout(timer));
  assert.match(response.requestId, /^[0-9a-f-]{36}$/);
  assert.equal(subject, `ai.voice.response.${response.requestId}`);
  assert.equal(response.error, "");
});

Deno.test("voice: the sentence chunker of the test matches the fixture", () => {
  const chunker = new SentenceChunker({ minChars: 10 });
  assert.deepEqual([...chunker.push(ANSWER), ...chunker.flush()], SENTENCES);
});
