/**
 * The configuration of chat-handler: the environment variables it reads
 * (SYSTEM.md section 6, the consume mode, and its own `CHAT_*` tuning), and the backend
 * clients and handler options a loaded configuration describes.
 *
 * Needs `--allow-env` for exactly `configVarNames(chatConfigSpec)` when
 * loading from `Deno.env`; importing reads nothing.
 *
 * @example Load and build the clients
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatClientsFromConfig, chatConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(chatConfigSpec, { MILVUS_HOST: "127.0.0.1", MILVUS_PORT: "19530" });
 * const clients = chatClientsFromConfig(config);
 * console.log(config.collection, typeof clients.llm.stream); // "knowledge_base" "function"
 * ```
 *
 * @module
 */
import {
  type Config,
  envVar,
  type NatsConfigSpec,
  natsConfigSpec,
  type RuntimeConfigSpec,
  runtimeConfigSpec,
  type VarSpec,
} from "@homelab/handler-base/config";
import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
import { createLlmClient } from "@homelab/handler-base/clients/llm";
import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { type ConsumeConfigSpec, consumeConfigSpec } from "@homelab/handler-base/jetstream";
import type { Logger } from "@homelab/handler-base/log";
import type { ChatClients, ChatHandlerOptions } from "./handler.ts";
import { DEFAULT_SYSTEM_PROMPT } from "./prompt.ts";

/**
 * The type of {@linkcode chatConfigSpec}: NATS, runtime, consume mode,
 * backends and chat tuning.
 */
export type ChatConfigSpec = NatsConfigSpec & RuntimeConfigSpec & ConsumeConfigSpec & {
  /** `VLLM_URL`: the OpenAI-compatible LLM server. */
  readonly vllmUrl: VarSpec<string>;
  /** `LLM_MODEL`: the model requests ask for; unset lets the server pick. */
  readonly llmModel: VarSpec<string | undefined>;
  /** `LLM_PREMIUM_MODEL`: the model of premium users; unset uses `LLM_MODEL`. */
  readonly llmPremiumModel: VarSpec<string | undefined>;
  /** `LLM_MAX_TOKENS`: the longest answer in tokens. */
  readonly llmMaxTokens: VarSpec<number>;
  /** `LLM_TIMEOUT_MS`: one LLM call (for streams: the head and each wait for a chunk). */
  readonly llmTimeoutMs: VarSpec<number>;
  /** `EMBEDDINGS_URL`: the embeddings server. */
  readonly embeddingsUrl: VarSpec<string>;
  /** `EMBEDDINGS_TIMEOUT_MS`: one embeddings call. */
  readonly embeddingsTimeoutMs: VarSpec<number>;
  /** `RERANKER_URL`: the reranker server. */
  readonly rerankerUrl: VarSpec<string>;
  /** `RERANKER_TIMEOUT_MS`: one rerank call. */
  readonly rerankerTimeoutMs: VarSpec<number>;
  /** `MILVUS_HOST`: Milvus's host name (or a URL with its scheme). */
  readonly milvusHost: VarSpec<string>;
  /** `MILVUS_PORT`: Milvus's port (its REST API). */
  readonly milvusPort: VarSpec<number>;
  /** `MILVUS_TOKEN`: Milvus's token (secret). */
  readonly milvusToken: VarSpec<string | undefined>;
  /** `MILVUS_TIMEOUT_MS`: one search. */
  readonly milvusTimeoutMs: VarSpec<number>;
  /** `COLLECTION_NAME`: the collection of requests that name none. */
  readonly collection: VarSpec<string>;
  /** `TTS_URL`: the TTS server. */
  readonly ttsUrl: VarSpec<string>;
  /** `TTS_API`: `xtts` or `openai`. */
  readonly ttsApi: VarSpec<"xtts" | "openai">;
  /** `TTS_TIMEOUT_MS`: one synthesis. */
  readonly ttsTimeoutMs: VarSpec<number>;
  /** `ENABLE_TTS`: synthesize every answer. */
  readonly enableTts: VarSpec<boolean>;
  /** `CHAT_SYSTEM_PROMPT`: the system prompt of requests that carry none. */
  readonly systemPrompt: VarSpec<string>;
  /** `CHAT_MAX_QUERY_CHARS`: the longest accepted query. */
  readonly maxQueryChars: VarSpec<number>;
  /** `CHAT_STREAM_MIN_INTERVAL_MS`: the least time between two stream chunks. */
  readonly streamMinIntervalMs: VarSpec<number>;
  /** `CHAT_RERANK_KEEP`: how many documents reranking keeps. */
  readonly rerankKeep: VarSpec<number>;
  /** `CHAT_TIMEOUT_MS`: the deadline of one message. */
  readonly timeoutMs: VarSpec<number>;
  /** `CHAT_CONCURRENCY`: messages handled at once per endpoint. */
  readonly concurrency: VarSpec<number>;
};

/**
 * The variables chat-handler reads: NATS and runtime, the consume mode
 * (`CONSUME_MODE`: core queue subscriptions, or durable JetStream consumers
 * on `COMPANIONS_CHAT` for user messages and greetings), the backends of
 * SYSTEM.md section 6 each with a `*_TIMEOUT_MS`, and the chat tuning:
 * `CHAT_SYSTEM_PROMPT`, `CHAT_MAX_QUERY_CHARS`, `CHAT_STREAM_MIN_INTERVAL_MS`,
 * `CHAT_RERANK_KEEP`, `CHAT_TIMEOUT_MS` (the deadline of one message) and
 * `CHAT_CONCURRENCY` (messages handled at once per endpoint).
 *
 * @example List the names for `--allow-env`
 * ```ts
 * import { configVarNames } from "@homelab/handler-base/config";
 * import { chatConfigSpec } from "./config.ts";
 *
 * console.log(configVarNames(chatConfigSpec).includes("VLLM_URL")); // true
 * ```
 */
export const chatConfigSpec: ChatConfigSpec = Object.freeze({
  ...natsConfigSpec,
  ...runtimeConfigSpec,
  ...consumeConfigSpec,
  vllmUrl: envVar.url("VLLM_URL", {
    default: "http://llm-draft.ai-ml.svc.cluster.local:8000",
    schemes: ["http", "https"],
  }),
  llmModel: envVar.string("LLM_MODEL"),
  llmPremiumModel: envVar.string("LLM_PREMIUM_MODEL"),
  llmMaxTokens: envVar.int("LLM_MAX_TOKENS", { default: 1024, min: 1 }),
  llmTimeoutMs: envVar.duration("LLM_TIMEOUT_MS", { default: 60_000 }),
  embeddingsUrl: envVar.url("EMBEDDINGS_URL", {
    default: "http://embeddings-predictor.ai-ml.svc.cluster.local",
    schemes: ["http", "https"],
  }),
  embeddingsTimeoutMs: envVar.duration("EMBEDDINGS_TIMEOUT_MS", { default: 10_000 }),
  rerankerUrl: envVar.url("RERANKER_URL", {
    default: "http://reranker-predictor.ai-ml.svc.cluster.local",
    schemes: ["http", "https"],
  }),
  rerankerTimeoutMs: envVar.duration("RERANKER_TIMEOUT_MS", { default: 10_000 }),
  milvusHost: envVar.string("MILVUS_HOST", { default: "milvus.ai-ml.svc.cluster.local" }),
  milvusPort: envVar.int("MILVUS_PORT", { default: 19530, min: 1, max: 65535 }),
  milvusToken: envVar.string("MILVUS_TOKEN", { secret: true }),
  milvusTimeoutMs: envVar.duration("MILVUS_TIMEOUT_MS", { default: 10_000 }),
  collection: envVar.string("COLLECTION_NAME", { default: "knowledge_base" }),
  ttsUrl: envVar.url("TTS_URL", {
    default: "http://tts-predictor.ai-ml.svc.cluster.local",
    schemes: ["http", "https"],
  }),
  ttsApi: envVar.oneOf("TTS_API", ["xtts", "openai"], { default: "xtts" }),
  ttsTimeoutMs: envVar.duration("TTS_TIMEOUT_MS", { default: 60_000 }),
  enableTts: envVar.bool("ENABLE_TTS", { default: false }),
  systemPrompt: envVar.string("CHAT_SYSTEM_PROMPT", { default: DEFAULT_SYSTEM_PROMPT }),
  maxQueryChars: envVar.int("CHAT_MAX_QUERY_CHARS", { default: 8000, min: 1 }),
  streamMinIntervalMs: envVar.duration("CHAT_STREAM_MIN_INTERVAL_MS", { default: 20 }),
  rerankKeep: envVar.int("CHAT_RERANK_KEEP", { default: 3, min: 1, max: 50 }),
  timeoutMs: envVar.duration("CHAT_TIMEOUT_MS", { default: 120_000 }),
  concurrency: envVar.int("CHAT_CONCURRENCY", { default: 32, min: 1 }),
});

/** The loaded {@linkcode chatConfigSpec}. */
export type ChatConfig = Config<ChatConfigSpec>;

/**
 * The base URL of Milvus's REST API from `MILVUS_HOST` (a host name, or a
 * URL with its scheme) and `MILVUS_PORT`.
 *
 * @param host The host name or URL.
 * @param port The port.
 * @returns The base URL.
 * @throws {TypeError} When the host does not make a valid URL.
 *
 * @example
 * ```ts
 * import { milvusBaseUrl } from "./config.ts";
 *
 * console.log(milvusBaseUrl("milvus.ai-ml.svc.cluster.local", 19530));
 * // http://milvus.ai-ml.svc.cluster.local:19530
 * ```
 */
export function milvusBaseUrl(host: string, port: number): string {
  const url = new URL(/^https?:\/\//.test(host) ? host : `http://${host}`);
  url.port = String(port);
  return url.origin;
}

/**
 * The backend clients a loaded configuration describes.
 *
 * @param config The loaded configuration.
 * @param logger Where the clients report retries.
 * @returns The LLM, RAG and TTS clients.
 * @throws {TypeError} When a URL does not parse (loadConfig already checked them).
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatClientsFromConfig, chatConfigSpec } from "./config.ts";
 *
 * const clients = chatClientsFromConfig(loadConfig(chatConfigSpec, {}));
 * console.log(clients.tts?.api); // "xtts"
 * ```
 */
export function chatClientsFromConfig(config: ChatConfig, logger?: Logger): ChatClients {
  const shared = logger ? { logger } : {};
  return {
    llm: createLlmClient({
      ...shared,
      baseUrl: config.vllmUrl,
      timeoutMs: config.llmTimeoutMs,
      maxTokens: config.llmMaxTokens,
      ...(config.llmModel ? { model: config.llmModel } : {}),
      ...(config.llmPremiumModel ? { premiumModel: config.llmPremiumModel } : {}),
    }),
    rag: {
      embeddings: createEmbeddingsClient({
        ...shared,
        baseUrl: config.embeddingsUrl,
        timeoutMs: config.embeddingsTimeoutMs,
      }),
      milvus: createMilvusClient({
        ...shared,
        baseUrl: milvusBaseUrl(config.milvusHost, config.milvusPort),
        timeoutMs: config.milvusTimeoutMs,
        collection: config.collection,
        ...(config.milvusToken ? { token: config.milvusToken } : {}),
      }),
      reranker: createRerankerClient({
        ...shared,
        baseUrl: config.rerankerUrl,
        timeoutMs: config.rerankerTimeoutMs,
      }),
    },
    tts: createTtsClient({
      ...shared,
      baseUrl: config.ttsUrl,
      api: config.ttsApi,
      timeoutMs: config.ttsTimeoutMs,
    }),
  };
}

/**
 * The handler options a loaded configuration describes.
 *
 * @param config The loaded configuration.
 * @returns The options of `createChatEndpoints`.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatConfigSpec, chatHandlerOptionsFromConfig } from "./config.ts";
 *
 * const options = chatHandlerOptionsFromConfig(loadConfig(chatConfigSpec, { ENABLE_TTS: "true" }));
 * console.log(options.enableTts); // true
 * ```
 */
export function chatHandlerOptionsFromConfig(config: ChatConfig): ChatHandlerOptions {
  return {
    systemPrompt: config.systemPrompt,
    collection: config.collection,
    enableTts: config.enableTts,
    maxQueryChars: config.maxQueryChars,
    streamMinIntervalMs: config.streamMinIntervalMs,
    rerankKeep: config.rerankKeep,
    timeoutMs: config.timeoutMs,
    concurrency: config.concurrency,
  };
}
