import assert from "node:assert/strict";
import type { Msg } from "@nats-io/nats-core";
import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
import { createLlmClient } from "@homelab/handler-base/clients/llm";
import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { deadline } from "@homelab/handler-base/async";
import {
  ChatRequestSchema,
  type ChatResponse,
  ChatResponseSchema,
  type ChatStreamChunk,
  ChatStreamChunkSchema,
  create,
  decode,
  encode,
  type ErrorResponse,
  ErrorResponseSchema,
  GreetingRequestSchema,
  GreetingResponseSchema,
  type MessageInitShape,
  MSG_TYPE_HEADER,
} from "@homelab/handler-base/messages";
import { createTelemetry } from "@homelab/handler-base/telemetry";
import {
  closedPortUrl,
  type FakeEmbeddings,
  type FakeLlm,
  type FakeLlmConfig,
  type FakeMilvus,
  type FakeReranker,
  type FakeXtts,
  type RecordedRequest,
  type RecordedSpan,
  recordingTracerProvider,
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeXtts,
  startTestService,
  type TestService,
} from "@homelab/handler-base/testing";
import { type ChatHandlerOptions, createChatEndpoints } from "./handler.ts";

// ---------------------------------------------------------------------------
// Fixtures

/** The query most tests ask; the fake reranker scores by shared words. */
const QUERY = "How does JetStream store messages?";

/** Milvus hits, best distance first; reranking against QUERY reorders them. */
const HITS = [
  { id: 1, text: "Milvus is a vector database.", distance: 0.95 },
  { id: 2, text: "NATS is a messaging system.", distance: 0.9 },
  { id: 3, text: "JetStream stores messages in streams.", distance: 0.85 },
  { id: 4, text: "Kubernetes schedules pods.", distance: 0.8 },
  { id: 5, text: "How JetStream does store messages on disk.", distance: 0.75 },
  { id: 6, text: "Ray Serve hosts the models.", distance: 0.7 },
];
/** The first five hits (top_k 5) in Milvus order. */
const MILVUS_SOURCES = HITS.slice(0, 5).map((hit) => hit.text);
/** The three the reranker keeps: word overlap 5/5, 2/5, then the first of the ties. */
const RERANKED_SOURCES = [HITS[4]!.text, HITS[2]!.text, HITS[0]!.text];

/** The question inside a chat prompt (the whole user turn when there is no context). */
function questionOf(body: Record<string, unknown>): string {
  const messages = body.messages as { role: string; content: string }[];
  const user = messages.at(-1)!.content;
  return user.match(/Question: (.*)$/)?.[1] ?? user;
}

/** What the fake LLM answers to a question. */
function answerTo(question: string): string {
  return `You asked: ${question} Here is a fine answer in several words.`;
}

/** The deltas the fake LLM streams for an answer (words with their trailing space). */
function deltasOf(answer: string): string[] {
  return answer.match(/\S+\s*|\s+/g) ?? [];
}

function isPrompt(request: RecordedRequest): boolean {
  return request.path === "/v1/chat/completions";
}

// ---------------------------------------------------------------------------
// Harness: a real nats-server, the fakes, and the endpoints in a service

interface SetupOptions {
  /** A backend replaced by a URL where nothing listens. */
  down?: "embeddings" | "milvus" | "reranker" | "llm";
  handler?: ChatHandlerOptions;
  llm?: FakeLlmConfig;
  /** How long stopping the service waits for its handlers. @default 1000 */
  shutdownGraceMs?: number;
}

interface ChatResult {
  /** The decoded reply, when the request was sent with one. */
  reply?: ChatResponse | ErrorResponse;
  /** The ChatResponse published on the response subject. */
  response: ChatResponse;
  /** The stream chunks, in arrival order. */
  chunks: ChatStreamChunk[];
}

interface Harness extends AsyncDisposable {
  /** The service over a real nats-server, from the test kit. */
  t: TestService;
  client: TestService["nc"];
  service: TestService["service"];
  llm: FakeLlm;
  embeddings: FakeEmbeddings;
  milvus: FakeMilvus;
  reranker: FakeReranker;
  xtts: FakeXtts;
  tracing: ReturnType<typeof recordingTracerProvider>;
  logs: readonly Record<string, unknown>[];
  /**
   * Sends a chat and collects its stream chunks and response. `reply: false`
   * publishes without a reply subject.
   */
  chat(
    init: MessageInitShape<typeof ChatRequestSchema>,
    options?: { subject?: string; reply?: boolean },
  ): Promise<ChatResult>;
  /** Sends a request and decodes the reply as ChatResponse or ErrorResponse. */
  ask(subject: string, data: Uint8Array): Promise<ChatResponse | ErrorResponse>;
}

function decodeReply(msg: Msg): ChatResponse | ErrorResponse {
  const type = msg.headers?.get(MSG_TYPE_HEADER);
  if (type === ErrorResponseSchema.typeName) return decode(ErrorResponseSchema, msg.data);
  assert.equal(type, ChatResponseSchema.typeName);
  return decode(ChatResponseSchema, msg.data);
}

function isErrorResponse(reply: unknown): reply is ErrorResponse {
  return (reply as { $typeName?: string })?.$typeName === ErrorResponseSchema.typeName;
}

/** Asserts that the reply is the ChatResponse that was published. */
function assertReplyIs(reply: ChatResponse | ErrorResponse | undefined, response: ChatResponse) {
  assert.ok(reply && !isErrorResponse(reply), JSON.stringify(reply));
  assert.deepEqual(encode(ChatResponseSchema, reply), encode(ChatResponseSchema, response));
}

async function setup(options: SetupOptions = {}): Promise<Harness> {
  const llm = startFakeLlm({ reply: (body) => answerTo(questionOf(body)), ...options.llm });
  const embeddings = startFakeEmbeddings();
  const milvus = startFakeMilvus({ hits: HITS });
  const reranker = startFakeReranker();
  const xtts = startFakeXtts();
  const url = (name: SetupOptions["down"], fake: { url: string }) =>
    options.down === name ? closedPortUrl() : fake.url;
  const http = { retries: 0, timeoutMs: 10_000 };
  const clients = {
    llm: createLlmClient({
      ...http,
      baseUrl: url("llm", llm),
      model: "small",
      premiumModel: "large",
    }),
    rag: {
      embeddings: createEmbeddingsClient({ ...http, baseUrl: url("embeddings", embeddings) }),
      milvus: createMilvusClient({ ...http, baseUrl: url("milvus", milvus) }),
      reranker: createRerankerClient({ ...http, baseUrl: url("reranker", reranker) }),
    },
    tts: createTtsClient({ ...http, baseUrl: xtts.url }),
  };
  const tracing = recordingTracerProvider();
  const t = await startTestService({
    name: "chat-handler",
    endpoints: createChatEndpoints(clients, { streamMinIntervalMs: 0, ...options.handler }),
    telemetry: createTelemetry({ serviceName: "chat-handler", tracerProvider: tracing }),
    shutdownGraceMs: options.shutdownGraceMs ?? 1000,
  });
  const client = t.nc;

  async function ask(subject: string, data: Uint8Array) {
    return decodeReply(await client.request(subject, data, { timeout: 10_000 }));
  }

  return {
    t,
    client,
    service: t.service,
    llm,
    embeddings,
    milvus,
    reranker,
    xtts,
    tracing,
    logs: t.logs,
    ask,
    async chat(init, { subject = "ai.chat.request", reply = true } = {}) {
      const requestId = init.requestId ?? crypto.randomUUID();
      const responseSubject = init.responseSubject || `ai.chat.response.${requestId}`;
      // Both subscriptions deliver in arrival order on one connection, so
      // every chunk is in when the response is.
      using chunks = t.collect(`ai.chat.response.stream.${requestId}`, ChatStreamChunkSchema);
      using responses = t.collect(responseSubject, ChatResponseSchema);
      const data = encode(ChatRequestSchema, { ...init, requestId });
      let answer: ChatResponse | ErrorResponse | undefined;
      if (reply) answer = await ask(subject, data);
      else client.publish(subject, data);
      const [response] = await responses.until((all) => all.length > 0, { timeoutMs: 10_000 });
      return { ...(answer ? { reply: answer } : {}), response: response!, chunks: chunks.messages };
    },
    async [Symbol.asyncDispose]() {
      await t[Symbol.asyncDispose]();
      await Promise.all([llm, embeddings, milvus, reranker, xtts].map((fake) => fake.close()));
    },
  };
}

/** The chat span (the runtime's consumer span) of a request id. */
function chatSpan(h: Harness, requestId: string): RecordedSpan {
  const span = h.tracing.spans.find((s) => s.attributes["chat.request_id"] === requestId);
  assert.ok(span, `no span for ${requestId}`);
  return span;
}

function warnings(h: Harness, message: string): Record<string, unknown>[] {
  return h.logs.filter((line) => line.level === "warn" && line.msg === message);
}

// ---------------------------------------------------------------------------
// Tests

Deno.test("chat: every combination of rag, reranker, streaming and tts", async (t) => {
  await using h = await setup();
  for (let combination = 0; combination < 16; combination++) {
    const enableRag = Boolean(combination & 1);
    const enableReranker = Boolean(combination & 2);
    const enableStreaming = Boolean(combination & 4);
    const enableTts = Boolean(combination & 8);
    const name = `rag=${enableRag} reranker=${enableReranker} streaming=${enableStreaming} ` +
      `tts=${enableTts}`;
    await t.step(name, async () => {
      const before = {
        llm: h.llm.requests.length,
        embeddings: h.embeddings.requests.length,
        milvus: h.milvus.requests.length,
        reranker: h.reranker.requests.length,
        xtts: h.xtts.requests.length,
      };
      const requestId = `combo-${combination}`;
      const { reply, response, chunks } = await h.chat({
        requestId,
        userId: "u1",
        message: QUERY,
        enableRag,
        enableReranker,
        enableStreaming,
        enableTts,
      });
      const expected = answerTo(QUERY);
      assertReplyIs(reply, response);
      assert.equal(response.success, true, response.error);
      assert.equal(response.response, expected);
      assert.equal(response.responseText, expected);
      assert.equal(response.userId, "u1");
      assert.equal(response.usedRag, enableRag);
      const sources = !enableRag ? [] : enableReranker ? RERANKED_SOURCES : MILVUS_SOURCES;
      assert.deepEqual(response.ragSources, sources);

      const called = (fake: { requests: RecordedRequest[] }, from: number) =>
        fake.requests.length > from;
      assert.equal(called(h.embeddings, before.embeddings), enableRag);
      assert.equal(called(h.milvus, before.milvus), enableRag);
      assert.equal(called(h.reranker, before.reranker), enableRag && enableReranker);
      assert.equal(called(h.xtts, before.xtts), enableTts);

      const prompts = h.llm.requests.slice(before.llm);
      assert.equal(prompts.length, 1);
      const body = prompts[0]!.json as Record<string, unknown>;
      assert.equal(body.stream, enableStreaming);
      const user = (body.messages as { content: string }[])[1]!.content;
      assert.equal(user.includes("Context:"), enableRag);
      for (const source of sources) assert.ok(user.includes(source), source);

      if (enableStreaming) {
        assert.deepEqual(chunks.slice(0, -1).map((c) => c.content), deltasOf(expected));
        assert.ok(chunks.slice(0, -1).every((c) => c.type === "chunk" && !c.done));
        const last = chunks.at(-1)!;
        assert.equal(last.type, "done");
        assert.equal(last.done, true);
        assert.ok(chunks.every((c) => c.requestId === requestId && c.timestamp > 0n));
      } else {
        assert.deepEqual(chunks, []);
      }

      if (enableTts) {
        assert.equal(new TextDecoder().decode(response.audio.subarray(0, 4)), "RIFF");
      } else {
        assert.equal(response.audio.length, 0);
      }
    });
  }
});

Deno.test("chat: the prompt carries the reranked context in order, after the system prompt", async () => {
  await using h = await setup({ handler: { systemPrompt: "Service prompt." } });
  const { response } = await h.chat({
    message: QUERY,
    enableRag: true,
    enableReranker: true,
  });
  assert.deepEqual(response.ragSources, RERANKED_SOURCES);
  const body = h.llm.requests.filter(isPrompt)[0]!.json as Record<string, unknown>;
  const [system, user] = body.messages as { role: string; content: string }[];
  assert.deepEqual(system, { role: "system", content: "Service prompt." });
  assert.equal(user!.role, "user");
  const positions = RERANKED_SOURCES.map((text, i) => user!.content.indexOf(`[${i + 1}] ${text}`));
  assert.ok(positions.every((p) => p >= 0), user!.content);
  assert.deepEqual([...positions].sort((a, b) => a - b), positions);
  assert.ok(user!.content.indexOf(QUERY) > positions.at(-1)!, "the question follows the context");
  for (const dropped of [HITS[1]!.text, HITS[3]!.text]) assert.ok(!user!.content.includes(dropped));

  const rerank = h.reranker.requests[0]!.json as Record<string, unknown>;
  assert.equal(rerank.query, QUERY);
  assert.deepEqual(rerank.documents, MILVUS_SOURCES);
});

Deno.test("chat: the request's system prompt, collection, top_k and premium are used", async () => {
  await using h = await setup({ handler: { collection: "service_docs" } });
  await h.chat({ message: "hi", systemPrompt: "Talk like a pirate.", premium: true });
  const body = h.llm.requests[0]!.json as Record<string, unknown>;
  assert.equal(body.model, "large");
  assert.deepEqual((body.messages as unknown[])[0], {
    role: "system",
    content: "Talk like a pirate.",
  });

  for (const [topK, limit] of [[0, 5], [3, 3], [500, 50]] as const) {
    await h.chat({ message: QUERY, enableRag: true, topK });
    const search = h.milvus.requests.at(-1)!.json as Record<string, unknown>;
    assert.equal(search.limit, limit, `top_k ${topK}`);
    assert.equal(search.collectionName, "service_docs");
  }
  await h.chat({ message: QUERY, enableRag: true, collection: "other" });
  assert.equal((h.milvus.requests.at(-1)!.json as Record<string, unknown>).collectionName, "other");
  const standard = h.llm.requests.at(-1)!.json as Record<string, unknown>;
  assert.equal(standard.model, "small");
  assert.match(
    (standard.messages as { content: string }[])[0]!.content,
    /helpful, friendly assistant/,
  );
});

Deno.test("chat: ENABLE_TTS synthesizes every answer, a custom response subject gets it", async () => {
  await using h = await setup({ handler: { enableTts: true } });
  const { response, reply } = await h.chat({
    message: "hi",
    responseSubject: "my.inbox.chat-7",
  });
  assert.equal(response.success, true);
  assert.equal(new TextDecoder().decode(response.audio.subarray(0, 4)), "RIFF");
  assertReplyIs(reply, response);
});

Deno.test("chat: a TTS failure answers the text without audio", async () => {
  await using h = await setup();
  h.xtts.failNext(500, { path: "/tts" });
  const { response } = await h.chat({ requestId: "tts-fails", message: "hi", enableTts: true });
  assert.equal(response.success, true);
  assert.equal(response.response, answerTo("hi"));
  assert.equal(response.audio.length, 0);
  assert.equal(warnings(h, "Answering without audio: speech synthesis failed").length, 1);
  assert.equal(chatSpan(h, "tts-fails").events[0]?.name, "chat.tts_failed");
});

Deno.test("chat: deltas arriving within the minimum interval are merged, never dropped", async () => {
  const reply = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
  await using h = await setup({ llm: { reply }, handler: { streamMinIntervalMs: 60_000 } });
  const { response, chunks } = await h.chat({ message: "hi", enableStreaming: true });
  assert.equal(response.response, reply);
  // The first delta goes out at once; the rest arrive within the interval
  // and are flushed together when the stream ends.
  assert.deepEqual(chunks.map((c) => [c.type, c.content, c.done]), [
    ["chunk", "word0 ", false],
    ["chunk", reply.slice("word0 ".length), false],
    ["done", "", true],
  ]);
});

Deno.test("chat: a stream that breaks before its first token falls back to one call", async () => {
  await using h = await setup({ llm: { cutAfterEvents: 1 } });
  const { response, chunks, reply } = await h.chat({
    requestId: "fallback",
    message: "hi",
    enableStreaming: true,
  });
  assert.equal(response.success, true, response.error);
  assertReplyIs(reply, response);
  assert.deepEqual(chunks.map((c) => [c.type, c.content]), [["chunk", answerTo("hi")], [
    "done",
    "",
  ]]);
  assert.deepEqual(h.llm.requests.map((r) => (r.json as Record<string, unknown>).stream), [
    true,
    false,
  ]);
  assert.equal(
    warnings(h, "Streaming failed before the first token: answering in one call").length,
    1,
  );
  assert.equal(chatSpan(h, "fallback").events[0]?.name, "chat.stream_fallback");
});

Deno.test("chat: a stream that breaks after tokens fails with an error chunk, no fallback", async () => {
  await using h = await setup({ llm: { cutAfterEvents: 3 } });
  const { response, chunks, reply } = await h.chat({ message: "hi", enableStreaming: true });
  assert.equal(response.success, false);
  assert.match(response.error, /Cannot reach backend "llm"/);
  assert.equal(response.response, "");
  const deltas = deltasOf(answerTo("hi"));
  assert.deepEqual(chunks.map((c) => c.content), [deltas[0], deltas[1], response.error]);
  assert.deepEqual(chunks.at(-1)!.type, "error");
  assert.equal(chunks.at(-1)!.done, true);
  assert.ok(isErrorResponse(reply));
  assert.equal(reply.type, "BackendUnavailable");
  assert.equal(reply.message, response.error);
  assert.equal(h.llm.requests.length, 1);
});

Deno.test("chat: retrieval failures degrade to an answer without context", async (t) => {
  const cases: { down: "embeddings" | "milvus" | "reranker" | "milvus-code"; searched: boolean }[] =
    [
      { down: "embeddings", searched: false },
      { down: "milvus", searched: false },
      { down: "milvus-code", searched: true },
      { down: "reranker", searched: true },
    ];
  for (const { down, searched } of cases) {
    await t.step(`${down} down`, async () => {
      await using h = await setup(down === "milvus-code" ? {} : { down });
      // Milvus answers failures with HTTP 200 and a non-zero code.
      if (down === "milvus-code") h.milvus.config.collections = ["somewhere_else"];
      for (const enableStreaming of [false, true]) {
        const requestId = `degraded-${enableStreaming}`;
        const { response, reply, chunks } = await h.chat({
          requestId,
          message: QUERY,
          enableRag: true,
          enableReranker: true,
          enableStreaming,
        });
        assert.equal(response.success, true, response.error);
        assertReplyIs(reply, response);
        assert.equal(response.usedRag, false);
        assert.deepEqual(response.ragSources, []);
        assert.equal(response.response, answerTo(QUERY));
        if (enableStreaming) assert.equal(chunks.at(-1)?.type, "done");
        const body = h.llm.requests.at(-1)!.json as Record<string, unknown>;
        assert.equal((body.messages as { content: string }[])[1]!.content, QUERY);
        const span = chatSpan(h, requestId);
        assert.equal(span.attributes["chat.used_rag"], false);
        assert.equal(span.attributes["chat.rag_degraded"], true);
        assert.equal(span.events[0]?.name, "chat.rag_degraded");
      }
      assert.equal(warnings(h, "Answering without RAG: retrieval failed").length, 2);
      assert.equal(h.milvus.requests.length > 0, searched);
    });
  }
});

Deno.test("chat: an LLM failure publishes success=false and answers an ErrorResponse", async (t) => {
  await t.step("the LLM answers 500", async () => {
    await using h = await setup();
    h.llm.failNext(500, { body: '{"detail":"CUDA out of memory"}' });
    const { response, reply, chunks } = await h.chat({ message: "hi", userId: "u9" });
    assert.equal(response.success, false);
    assert.equal(response.userId, "u9");
    assert.match(response.error, /Backend "llm" failed with status 500/);
    assert.ok(isErrorResponse(reply));
    assert.deepEqual([reply.error, reply.type, reply.message], [
      true,
      "BackendError",
      response.error,
    ]);
    assert.deepEqual(chunks, []);
    const [logged] = h.logs.filter((line) => line.msg === "Cannot handle message");
    assert.equal(logged?.error_type, "BackendError");
  });
  await t.step("the LLM is down, streaming", async () => {
    await using h = await setup({ down: "llm" });
    const { response, reply, chunks } = await h.chat({ message: "hi", enableStreaming: true });
    assert.equal(response.success, false);
    assert.match(response.error, /Cannot reach backend "llm"/);
    assert.ok(isErrorResponse(reply));
    assert.equal(reply.type, "BackendUnavailable");
    assert.deepEqual(chunks.map((c) => [c.type, c.content, c.done]), [
      ["error", response.error, true],
    ]);
  });
});

Deno.test("chat: bad requests get InvalidArgument and never disturb the service", async () => {
  await using h = await setup({ handler: { maxQueryChars: 50 } });
  const cases: [string, MessageInitShape<typeof ChatRequestSchema>, RegExp][] = [
    ["empty", { message: "" }, /the message is empty/],
    ["blank", { message: "  \n", query: "\t" }, /the message is empty/],
    ["too long", { message: "x".repeat(51) }, /51 characters, more than 50/],
    ["negative top_k", { message: "hi", enableRag: true, topK: -1 }, /top_k -1 is negative/],
  ];
  for (const [what, init, pattern] of cases) {
    const { response, reply, chunks } = await h.chat({ ...init, enableStreaming: true });
    assert.ok(isErrorResponse(reply), what);
    assert.equal(reply.type, "InvalidArgument", what);
    assert.match(reply.message, pattern, what);
    assert.equal(response.success, false, what);
    assert.equal(response.error, reply.message, what);
    assert.deepEqual(chunks.map((c) => c.type), ["error"], what);
  }
  // Ids that cannot make a subject are refused on the reply subject only.
  for (
    const [what, init] of [
      ["request id with a dot", { requestId: "a.b", message: "hi" }],
      ["request id with a wildcard", { requestId: "a*", message: "hi" }],
      ["response subject with a wildcard", {
        requestId: "ok",
        responseSubject: "x.>",
        message: "hi",
      }],
    ] as const
  ) {
    const reply = await h.ask("ai.chat.request", encode(ChatRequestSchema, init));
    assert.ok(isErrorResponse(reply), what);
    assert.equal(reply.type, "InvalidArgument", what);
  }
  const garbage = await h.ask("ai.chat.request", new Uint8Array([0xff, 0xff, 0xff]));
  assert.ok(isErrorResponse(garbage));
  assert.equal(garbage.type, "InvalidMessage");
  assert.equal(h.llm.requests.length, 0);

  const { response } = await h.chat({ message: "still there?" });
  assert.equal(response.success, true);
  assert.equal(response.response, answerTo("still there?"));
  assert.ok(h.logs.some((line) => line.msg === "Cannot handle message" && line.level === "warn"));
});

Deno.test("chat: a missing request id is generated and carried by the subjects", async () => {
  await using h = await setup();
  const seen: { subject: string; type: string }[] = [];
  const chunks: ChatStreamChunk[] = [];
  const responded = Promise.withResolvers<{ subject: string; response: ChatResponse }>();
  h.client.subscribe("ai.chat.response.>", {
    callback: (_, msg) => {
      const type = msg.headers?.get(MSG_TYPE_HEADER) ?? "";
      seen.push({ subject: msg.subject, type });
      if (type === ChatStreamChunkSchema.typeName) {
        chunks.push(decode(ChatStreamChunkSchema, msg.data));
      } else {
        responded.resolve({ subject: msg.subject, response: decode(ChatResponseSchema, msg.data) });
      }
    },
  });
  await h.client.flush();
  h.client.publish(
    "ai.chat.user.u5.message",
    encode(ChatRequestSchema, { message: "hi", enableStreaming: true }),
  );
  const { subject, response } = await deadline(responded.promise, 10_000, { what: "the response" });
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const requestId = subject.slice("ai.chat.response.".length);
  assert.match(requestId, uuid);
  assert.equal(response.userId, "u5", "the user id comes from the subject");
  assert.equal(response.response, answerTo("hi"));
  assert.ok(chunks.length > 1);
  assert.ok(chunks.every((c) => c.requestId === requestId));
  assert.ok(seen.slice(0, -1).every((s) => s.subject === `ai.chat.response.stream.${requestId}`));

  // With a reply subject, the requester gets the answer without knowing the id.
  const reply = await h.ask("ai.chat.request", encode(ChatRequestSchema, { query: "again" }));
  assert.ok(!isErrorResponse(reply));
  assert.equal(reply.response, answerTo("again"));
});

Deno.test("chat: 100 concurrent streamed chats from 10 users never cross streams", async () => {
  await using h = await setup({ handler: { streamMinIntervalMs: 5 } });
  const results = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
    const user = `user${i % 10}`;
    const question = `question ${i} from ${user}`;
    const result = await h.chat(
      { requestId: `c${i}`, message: question, enableStreaming: true, enableRag: i % 2 === 0 },
      { subject: `ai.chat.user.${user}.message`, reply: false },
    );
    return { i, user, question, ...result };
  }));
  for (const { i, user, question, response, chunks } of results) {
    const expected = answerTo(question);
    assert.equal(response.success, true, response.error);
    assert.equal(response.userId, user);
    assert.equal(response.response, expected);
    assert.ok(chunks.every((c) => c.requestId === `c${i}`));
    assert.equal(chunks.slice(0, -1).map((c) => c.content).join(""), expected);
    assert.deepEqual(chunks.map((c) => c.done), [...chunks.slice(1).map(() => false), true]);
  }
  assert.equal(h.llm.requests.length, 100);
});

Deno.test("chat: the deadline aborts the LLM stream and fails the chat", async () => {
  // The first word goes out, then the stream stalls until the client leaves.
  const stall = new Promise<void>(() => {});
  await using h = await setup({
    handler: { timeoutMs: 1000 },
    llm: { pace: (index) => index < 2 ? Promise.resolve() : stall },
  });
  const result = h.chat({ requestId: "slow", message: "hi", enableStreaming: true });
  const request = await deadline(h.llm.nextRequest(), 10_000, { what: "the LLM request" });
  await deadline(request.disconnected, 10_000, { what: "the LLM connection to close" });
  const { response, reply, chunks } = await result;
  assert.ok(isErrorResponse(reply));
  assert.equal(reply.type, "Timeout");
  assert.equal(response.success, false);
  assert.match(response.error, /deadline of 1000 ms exceeded/);
  assert.equal(chunks.at(-1)?.type, "error");
  // The first word, unless the deadline came first on a very slow machine.
  assert.ok(chunks.length <= 2);
  if (chunks.length === 2) assert.equal(chunks[0]!.content, deltasOf(answerTo("hi"))[0]);
});

Deno.test("chat: the deadline aborts a whole-answer LLM call too", async () => {
  await using h = await setup({ handler: { timeoutMs: 200 } });
  h.llm.hangNext();
  const result = h.chat({ message: "hi" });
  const request = await deadline(h.llm.nextRequest(), 10_000, { what: "the LLM request" });
  await deadline(request.disconnected, 10_000, { what: "the LLM connection to close" });
  const { response, reply } = await result;
  assert.ok(isErrorResponse(reply));
  assert.equal(reply.type, "Timeout");
  assert.equal(response.success, false);
});

Deno.test("chat: a deadline during synthesis fails the chat but leaves the ended stream alone", async () => {
  await using h = await setup({ handler: { timeoutMs: 1000 } });
  h.xtts.hangNext();
  const { response, reply, chunks } = await h.chat({
    message: "hi",
    enableStreaming: true,
    enableTts: true,
  });
  assert.ok(isErrorResponse(reply));
  assert.equal(reply.type, "Timeout");
  assert.equal(response.success, false);
  assert.equal(chunks.at(-1)?.type, "done");
  assert.ok(chunks.every((c) => c.type !== "error"));
  assert.equal(chunks.slice(0, -1).map((c) => c.content).join(""), answerTo("hi"));
  await deadline(h.xtts.requests[0]!.disconnected, 10_000, { what: "the TTS connection to close" });
});

Deno.test("chat: stopping the service aborts a running LLM stream", async () => {
  // Held after the first word.
  const stall = new Promise<void>(() => {});
  await using h = await setup({
    llm: { pace: (index) => index < 2 ? Promise.resolve() : stall },
    shutdownGraceMs: 50,
  });
  using firstChunk = h.t.collect("ai.chat.response.stream.stopping", ChatStreamChunkSchema);
  const result = h.chat({ requestId: "stopping", message: "hi", enableStreaming: true }, {
    reply: false,
  });
  const request = await deadline(h.llm.nextRequest(), 10_000, { what: "the LLM request" });
  const gone = request.disconnected;
  await firstChunk.until((all) => all.length > 0, { timeoutMs: 10_000 });
  await h.t.stop();
  await deadline(gone, 10_000, { what: "the LLM connection to close" });
  const { response, chunks } = await result;
  assert.equal(response.success, false);
  assert.match(response.error, /the service is stopping/);
  assert.deepEqual(chunks.map((c) => c.type), ["chunk", "error"]);
});

Deno.test("greeting: an LLM-written greeting on the greeting subject and the reply", async () => {
  await using h = await setup({ llm: { reply: "  Welcome back, Ada! Lovely to see you.  " } });
  using published = h.t.collect("ai.chat.user.u1.greeting.response", GreetingResponseSchema);
  const msg = await h.client.request(
    "ai.chat.user.u1.greeting.request",
    encode(GreetingRequestSchema, { username: "ada99", nickname: "Ada", premium: true }),
    { timeout: 10_000 },
  );
  const reply = decode(GreetingResponseSchema, msg.data);
  assert.deepEqual([reply.userId, reply.greeting], ["u1", "Welcome back, Ada! Lovely to see you."]);
  const [onSubject] = await published.until((all) => all.length > 0, { timeoutMs: 10_000 });
  assert.deepEqual(
    encode(GreetingResponseSchema, onSubject!),
    encode(GreetingResponseSchema, reply),
  );
  const body = h.llm.requests[0]!.json as Record<string, unknown>;
  assert.equal(body.model, "large");
  assert.equal(body.stream, false);
  assert.match((body.messages as { content: string }[])[1]!.content, /Greet Ada\b/);

  await h.client.request(
    "ai.chat.user.u2.greeting.request",
    encode(GreetingRequestSchema, { userId: "u2", username: "bob" }),
    { timeout: 10_000 },
  );
  const second = h.llm.requests[1]!.json as Record<string, unknown>;
  assert.equal(second.model, "small");
  assert.match((second.messages as { content: string }[])[1]!.content, /Greet bob\b/);
});

Deno.test("greeting: an LLM failure still greets, by name", async () => {
  await using h = await setup({ down: "llm" });
  const msg = await h.client.request(
    "ai.chat.user.u3.greeting.request",
    encode(GreetingRequestSchema, create(GreetingRequestSchema, { username: "carol" })),
    { timeout: 10_000 },
  );
  const reply = decode(GreetingResponseSchema, msg.data);
  assert.deepEqual([reply.userId, reply.greeting], ["u3", "Hello, carol!"]);
  assert.equal(warnings(h, "Greeting without the LLM: generation failed").length, 1);
});
