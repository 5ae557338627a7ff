/**
 * The endpoints of chat-handler (SYSTEM.md section 5): RAG chat on
 * `ai.chat.user.*.message` and `ai.chat.request`, greetings on
 * `ai.chat.user.*.greeting.request`.
 *
 * A chat runs: effective query (empty or longer than `maxQueryChars` is
 * `InvalidArgument`) -> optional retrieval (embed, Milvus `top_k` in 1..50,
 * default 5, optional rerank keeping `rerankKeep`) -> LLM with the request's
 * system prompt or the service's -> optional TTS of the answer -> one
 * `ChatResponse` on `response_subject` (or `ai.chat.response.{request_id}`)
 * and as the reply. A missing `request_id` gets a random UUID.
 *
 * Streaming publishes `ChatStreamChunk`s on `ai.chat.response.stream.{id}`
 * in order, deltas that arrive within `streamMinIntervalMs` of the previous
 * chunk merged into one, then `type="done", done=true`. A stream that fails
 * before its first token falls back to one non-streaming call whose answer
 * goes out as one chunk.
 *
 * Degradation and failure, decided:
 * - Retrieval failure (embedder, Milvus or reranker) answers without
 *   context, `used_rag=false`, with a warning log and a `chat.rag_degraded`
 *   span event. A TTS failure answers without audio (log and
 *   `chat.tts_failed` event): the text answer stands.
 * - Any other failure (bad request, LLM, deadline, shutdown) publishes
 *   `ChatResponse{success: false, error}` on the response subject (and a
 *   chunk `type="error", done=true` when streaming), then answers the reply
 *   subject with a typed `ErrorResponse`, the error-boundary convention of
 *   SYSTEM.md section 2. The error is not retryable: the requester already
 *   has its answer, so a JetStream redelivery would only repeat it.
 * - An LLM failure while greeting falls back to a plain "Hello, name!" (log
 *   and `chat.greeting_fallback` event), so the frontend always gets a
 *   greeting.
 *
 * The LLM, retrieval and TTS calls take `ctx.signal`, so a deadline or a
 * shutdown closes the backend request instead of leaving it running.
 *
 * In JetStream consume mode, user messages and greetings come from durable
 * consumers on `COMPANIONS_CHAT` (`chat-handler` and `chat-handler-greeting`:
 * one stream, two durables); `ai.chat.request` is in no stream and stays a
 * core subscription. A request on a stored subject is answered by the
 * stream's ack, and the results arrive on the per-id subjects. A failed chat
 * is dead-lettered, not redelivered: its requester already has the failure.
 *
 * Requires `--allow-net` to the backends and NATS (through the clients and
 * the runtime).
 *
 * @example Serve the endpoints
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { ChatRequestSchema, ChatResponseSchema } from "@homelab/handler-base/messages";
 * import {
 *   startFakeEmbeddings,
 *   startFakeLlm,
 *   startFakeMilvus,
 *   startTestService,
 * } from "@homelab/handler-base/testing";
 * import { createChatEndpoints } from "./handler.ts";
 *
 * await using llm = startFakeLlm({ reply: "NATS is a message bus." });
 * await using embeddings = startFakeEmbeddings();
 * await using milvus = startFakeMilvus();
 * const endpoints = createChatEndpoints({
 *   llm: createLlmClient({ baseUrl: llm.url }),
 *   rag: {
 *     embeddings: createEmbeddingsClient({ baseUrl: embeddings.url }),
 *     milvus: createMilvusClient({ baseUrl: milvus.url }),
 *   },
 * }, { streamMinIntervalMs: 20 });
 * await using t = await startTestService({ name: "chat-handler", endpoints });
 * const reply = await t.request(
 *   "ai.chat.request",
 *   ChatRequestSchema,
 *   { message: "What is NATS?", enableRag: true },
 *   ChatResponseSchema,
 * );
 * assert.deepEqual([reply.response, reply.usedRag], ["NATS is a message bus.", true]);
 * ```
 *
 * @module
 */
import type { ChatMessage, LlmClient } from "@homelab/handler-base/clients/llm";
import { type RagClients, retrieveOrDegrade } from "@homelab/handler-base/clients/rag";
import type { TtsClient } from "@homelab/handler-base/clients/tts";
import {
  errorType,
  HandlerError,
  InvalidArgumentError,
  toErrorResponse,
} from "@homelab/handler-base/errors";
import { defineEndpoint, type Endpoint, type HandlerContext } from "@homelab/handler-base/handler";
import { countCodePoints, exceedsCodePoints, truncateText } from "@homelab/handler-base/text";
import {
  type ChatRequest,
  ChatRequestSchema,
  type ChatResponse,
  ChatResponseSchema,
  ChatStreamChunkSchema,
  create,
  effectiveQuery,
  type GreetingRequest,
  GreetingRequestSchema,
  type GreetingResponse,
  GreetingResponseSchema,
  unixSeconds,
} from "@homelab/handler-base/messages";
import { createCoalescer } from "./coalesce.ts";
import { chatMessages } from "@homelab/handler-base/prompt";
import { DEFAULT_SYSTEM_PROMPT, greetingMessages } from "./prompt.ts";

/** The backend clients chat-handler uses. */
export interface ChatClients {
  /** The chat completions client. */
  llm: LlmClient;
  /** Embeddings, Milvus and reranker, for retrieval. */
  rag: RagClients;
  /** Speech synthesis; without it, TTS requests answer without audio. */
  tts?: TtsClient;
}

/** Options of {@linkcode createChatEndpoints}. */
export interface ChatHandlerOptions {
  /**
   * The system prompt of requests that carry none.
   *
   * @default DEFAULT_SYSTEM_PROMPT
   */
  systemPrompt?: string;
  /**
   * The Milvus collection of requests that name none.
   *
   * @default "knowledge_base"
   */
  collection?: string;
  /**
   * Synthesize every answer, whatever the request's `enable_tts`.
   *
   * @default false
   */
  enableTts?: boolean;
  /**
   * The longest accepted query, in characters.
   *
   * @default 8000
   */
  maxQueryChars?: number;
  /**
   * The least time between two stream chunks, in milliseconds; deltas that
   * arrive sooner are merged into the next chunk. 0 sends one chunk per delta.
   *
   * @default 20
   */
  streamMinIntervalMs?: number;
  /**
   * How many documents reranking keeps.
   *
   * @default 3
   */
  rerankKeep?: number;
  /**
   * The deadline of one message, in milliseconds.
   *
   * @default 120000
   */
  timeoutMs?: number;
  /**
   * How many messages each endpoint handles at once.
   *
   * @default 32
   */
  concurrency?: number;
}

/** The subjects chat-handler listens on. */
export const CHAT_SUBJECTS = {
  /** Chat requests from the frontend, per user. */
  userMessage: "ai.chat.user.*.message",
  /** Chat requests from direct clients. */
  request: "ai.chat.request",
  /** Greeting requests from the frontend, per user. */
  greeting: "ai.chat.user.*.greeting.request",
} as const;

/** The JetStream stream that stores user messages and greetings (SYSTEM.md section 4). */
const CHAT_STREAM = "COMPANIONS_CHAT";
const DEFAULT_TOP_K = 5;
const MAX_TOP_K = 50;
const GREETING_MAX_TOKENS = 80;
const MAX_ID_CHARS = 256;
/** A subject token: no separator, wildcard or whitespace. */
const SUBJECT_TOKEN = /^[^\s.*>]+$/;

/**
 * Creates the chat and greeting endpoints over the given clients.
 *
 * @param clients The LLM, retrieval and TTS clients.
 * @param options Defaults, limits and stream pacing.
 * @returns The endpoints: user messages, direct requests and greetings.
 * @throws {RangeError} When `streamMinIntervalMs` is negative.
 *
 * @example With the service defaults
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatClientsFromConfig, chatModuleConfigSpec } from "./config.ts";
 * import { createChatEndpoints } from "./handler.ts";
 *
 * const endpoints = createChatEndpoints(chatClientsFromConfig(loadConfig(chatModuleConfigSpec, {})));
 * assert.deepEqual(endpoints.map((e) => e.subject), [
 *   "ai.chat.user.*.message",
 *   "ai.chat.request",
 *   "ai.chat.user.*.greeting.request",
 * ]);
 * ```
 */
export function createChatEndpoints(
  clients: ChatClients,
  options: ChatHandlerOptions = {},
): Endpoint[] {
  const {
    systemPrompt = DEFAULT_SYSTEM_PROMPT,
    collection = "knowledge_base",
    enableTts = false,
    maxQueryChars = 8000,
    streamMinIntervalMs = 20,
    rerankKeep = 3,
    timeoutMs = 120_000,
    concurrency = 32,
  } = options;
  if (!(streamMinIntervalMs >= 0)) {
    throw new RangeError(
      `Cannot create the chat endpoints: streamMinIntervalMs ${streamMinIntervalMs} is negative`,
    );
  }
  const limits = { timeoutMs, concurrency };

  function checkedQuery(req: ChatRequest): string {
    const query = effectiveQuery(req);
    if (query === "") throw new InvalidArgumentError("Cannot chat: the message is empty");
    if (exceedsCodePoints(query, maxQueryChars)) {
      throw new InvalidArgumentError(
        `Cannot chat: the message has ${
          countCodePoints(query)
        } characters, more than ${maxQueryChars}`,
      );
    }
    return query;
  }

  /**
   * Streams the answer as chunks, then the done chunk (and marks the stream
   * ended); returns the whole answer.
   */
  async function streamAnswer(
    messages: ChatMessage[],
    req: ChatRequest,
    requestId: string,
    stream: StreamState,
    ctx: HandlerContext,
  ): Promise<string> {
    const { signal } = ctx;
    const subject = streamSubject(requestId);
    let answer = "";
    let chunks = 0;
    const coalescer = createCoalescer((content) => {
      chunks++;
      ctx.publish(subject, ChatStreamChunkSchema, {
        requestId,
        type: "chunk",
        content,
        timestamp: unixSeconds(),
      });
    }, { minIntervalMs: streamMinIntervalMs });
    try {
      try {
        for await (const delta of clients.llm.stream(messages, { premium: req.premium, signal })) {
          answer += delta;
          coalescer.push(delta);
        }
      } catch (error) {
        if (answer !== "" || signal.aborted) throw error;
        ctx.log.warn("Streaming failed before the first token: answering in one call", {
          error,
          error_type: errorType(error),
        });
        ctx.span.addEvent("chat.stream_fallback", { "error.type": errorType(error) });
        answer = (await clients.llm.generate(messages, { premium: req.premium, signal })).text;
        coalescer.push(answer);
      }
    } finally {
      // What arrived before a failure is still sent, ahead of the error chunk.
      coalescer.flush();
      ctx.span.setAttribute("chat.stream_chunks", chunks);
    }
    ctx.publish(subject, ChatStreamChunkSchema, {
      requestId,
      type: "done",
      done: true,
      timestamp: unixSeconds(),
    });
    stream.ended = true;
    return answer;
  }

  async function synthesizeOrSkip(
    answer: string,
    ctx: HandlerContext,
  ): Promise<Uint8Array | undefined> {
    if (!clients.tts || answer.trim() === "") return undefined;
    try {
      return (await clients.tts.synthesize(answer, { signal: ctx.signal })).audio;
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      const type = errorType(error);
      ctx.log.warn("Answering without audio: speech synthesis failed", {
        error,
        error_type: type,
      });
      ctx.span.addEvent("chat.tts_failed", { "error.type": type });
      return undefined;
    }
  }

  async function answer(
    req: ChatRequest,
    requestId: string,
    userId: string,
    stream: StreamState,
    ctx: HandlerContext,
  ): Promise<ChatResponse> {
    const query = checkedQuery(req);
    const topK = checkedTopK(req.topK);
    const retrieval = req.enableRag
      ? await retrieveOrDegrade(query, clients.rag, {
        topK,
        collection: req.collection || collection,
        rerank: req.enableReranker,
        keep: rerankKeep,
        signal: ctx.signal,
        logger: ctx.log,
        span: ctx.span,
        eventPrefix: "chat",
      })
      : undefined;
    const sources = retrieval?.sources ?? [];
    const usedRag = sources.length > 0;
    ctx.span.setAttributes({ "chat.used_rag": usedRag, "chat.rag_sources": sources.length });
    const messages = chatMessages(
      req.systemPrompt || systemPrompt,
      query,
      usedRag ? retrieval!.context : "",
    );
    const text = req.enableStreaming
      ? await streamAnswer(messages, req, requestId, stream, ctx)
      : (await clients.llm.generate(messages, { premium: req.premium, signal: ctx.signal })).text;
    const audio = req.enableTts || enableTts ? await synthesizeOrSkip(text, ctx) : undefined;
    return create(ChatResponseSchema, {
      userId,
      response: text,
      responseText: text,
      usedRag,
      ragSources: sources.map((source) => source.text),
      success: true,
      ...(audio ? { audio } : {}),
    });
  }

  async function handleChat(req: ChatRequest, ctx: HandlerContext): Promise<ChatResponse> {
    const requestId = req.requestId || crypto.randomUUID();
    ctx.addLogFields({ request_id: requestId, user_id: req.userId || userIdOf(ctx) });
    checkToken("chat", "request_id", requestId);
    if (req.responseSubject) checkSubject("response_subject", req.responseSubject);
    const userId = req.userId || userIdOf(ctx);
    const responseSubject = req.responseSubject || `ai.chat.response.${requestId}`;
    ctx.span.setAttributes({
      "chat.request_id": requestId,
      "chat.rag": req.enableRag,
      "chat.reranker": req.enableReranker,
      "chat.streaming": req.enableStreaming,
      "chat.tts": req.enableTts || enableTts,
      "chat.premium": req.premium,
    });
    const stream: StreamState = { ended: false };
    let response: ChatResponse;
    try {
      response = await answer(req, requestId, userId, stream, ctx);
    } catch (error) {
      const { message } = toErrorResponse(error);
      try {
        // A failure after the done chunk (while synthesizing) leaves the stream as it is.
        if (req.enableStreaming && !stream.ended) {
          ctx.publish(streamSubject(requestId), ChatStreamChunkSchema, {
            requestId,
            type: "error",
            content: message,
            done: true,
            timestamp: unixSeconds(),
          });
        }
        ctx.publish(responseSubject, ChatResponseSchema, {
          userId,
          success: false,
          error: message,
        });
      } catch (publishError) {
        ctx.log.warn("Cannot publish the failed chat response", { error: publishError });
      }
      throw new HandlerError(errorType(error), message, { cause: error, retryable: false });
    }
    ctx.publish(responseSubject, ChatResponseSchema, response);
    return response;
  }

  async function handleGreeting(
    req: GreetingRequest,
    ctx: HandlerContext,
  ): Promise<GreetingResponse> {
    const userId = req.userId || userIdOf(ctx);
    ctx.addLogFields({ user_id: userId });
    checkToken("greet", "user_id", userId);
    const name = truncateText(req.nickname.trim() || req.username.trim(), MAX_ID_CHARS);
    let greeting = "";
    try {
      const generation = await clients.llm.generate(greetingMessages(name), {
        premium: req.premium,
        maxTokens: GREETING_MAX_TOKENS,
        signal: ctx.signal,
      });
      greeting = generation.text.trim();
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      const type = errorType(error);
      ctx.log.warn("Greeting without the LLM: generation failed", { error, error_type: type });
      ctx.span.addEvent("chat.greeting_fallback", { "error.type": type });
    }
    if (greeting === "") greeting = name ? `Hello, ${name}!` : "Hello!";
    const response = create(GreetingResponseSchema, { userId, greeting });
    ctx.publish(`ai.chat.user.${userId}.greeting.response`, GreetingResponseSchema, response);
    return response;
  }

  return [
    defineEndpoint({
      subject: CHAT_SUBJECTS.userMessage,
      name: "chat-user-message",
      stream: CHAT_STREAM,
      request: ChatRequestSchema,
      response: ChatResponseSchema,
      handle: handleChat,
      ...limits,
    }),
    defineEndpoint({
      subject: CHAT_SUBJECTS.request,
      name: "chat-request",
      request: ChatRequestSchema,
      response: ChatResponseSchema,
      handle: handleChat,
      ...limits,
    }),
    defineEndpoint({
      subject: CHAT_SUBJECTS.greeting,
      name: "greeting",
      stream: CHAT_STREAM,
      durable: "chat-handler-greeting",
      request: GreetingRequestSchema,
      response: GreetingResponseSchema,
      handle: handleGreeting,
      ...limits,
    }),
  ];
}

/** Whether a chat's stream got its done chunk. */
interface StreamState {
  ended: boolean;
}

function streamSubject(requestId: string): string {
  return `ai.chat.response.stream.${requestId}`;
}

/** The user id in `ai.chat.user.{user_id}.…`, or "" on other subjects. */
function userIdOf(ctx: HandlerContext): string {
  const tokens = ctx.tokens;
  return tokens[0] === "ai" && tokens[1] === "chat" && tokens[2] === "user" ? tokens[3] ?? "" : "";
}

/** `top_k` with 0 meaning the default, bounded to 1..50. */
function checkedTopK(topK: number): number {
  if (topK < 0) throw new InvalidArgumentError(`Cannot chat: top_k ${topK} is negative`);
  return Math.min(topK || DEFAULT_TOP_K, MAX_TOP_K);
}

function checkToken(action: string, field: string, value: string): void {
  if (value === "") throw new InvalidArgumentError(`Cannot ${action}: ${field} is missing`);
  if (exceedsCodePoints(value, MAX_ID_CHARS) || !SUBJECT_TOKEN.test(value)) {
    throw new InvalidArgumentError(
      `Cannot ${action}: ${field} must be one subject token of at most ${MAX_ID_CHARS} characters`,
    );
  }
}

function checkSubject(field: string, value: string): void {
  if (
    exceedsCodePoints(value, MAX_ID_CHARS) || !value.split(".").every((t) => SUBJECT_TOKEN.test(t))
  ) {
    throw new InvalidArgumentError(`Cannot chat: ${field} is not a valid subject to publish to`);
  }
}
