/**
 * The configuration of chat-handler: the variables it reads besides those
 * every service reads (the backends' own, declared by their client modules,
 * and its `CHAT_*` tuning), and the clients and handler options a loaded
 * configuration describes.
 *
 * Needs `--allow-env` for exactly `configVarNames(chatService.spec)` when
 * loading from `Deno.env`; importing reads nothing.
 *
 * @example Load and build the clients
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatClientsFromConfig, chatModuleConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(chatModuleConfigSpec, { MILVUS_HOST: "127.0.0.1" });
 * const clients = chatClientsFromConfig(config);
 * assert.deepEqual([config.collection, typeof clients.llm.stream], ["knowledge_base", "function"]);
 * ```
 *
 * @module
 */
import { type Config, envVar } from "@homelab/handler-base/config";
import { llmClientFromConfig, llmConfigSpec } from "@homelab/handler-base/clients/llm";
import { ragClientsFromConfig, ragConfigSpec } from "@homelab/handler-base/clients/rag";
import { ttsClientFromConfig, ttsConfigSpec } from "@homelab/handler-base/clients/tts";
import type { ClientFromConfigOptions } from "@homelab/handler-base/clients/http";
import type { ChatClients, ChatHandlerOptions } from "./handler.ts";
import { DEFAULT_SYSTEM_PROMPT } from "./prompt.ts";

/**
 * The variables of chat-handler besides the NATS, runtime and consume-mode
 * families: the LLM's, retrieval's (embeddings, Milvus, reranker,
 * `COLLECTION_NAME`) and the TTS backend's, then `ENABLE_TTS` (synthesize
 * every answer), `CHAT_SYSTEM_PROMPT`, `CHAT_MAX_QUERY_CHARS` (8000),
 * `CHAT_STREAM_MIN_INTERVAL_MS` (20), `CHAT_RERANK_KEEP` (3),
 * `CHAT_TIMEOUT_MS` (2 minutes) and `CHAT_CONCURRENCY` (32).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configVarNames } from "@homelab/handler-base/config";
 * import { chatModuleConfigSpec } from "./config.ts";
 *
 * assert.equal(configVarNames(chatModuleConfigSpec).includes("CHAT_RERANK_KEEP"), true);
 * ```
 */
export const chatModuleConfigSpec = {
  ...llmConfigSpec,
  ...ragConfigSpec,
  ...ttsConfigSpec,
  enableTts: envVar.bool("ENABLE_TTS", { default: false }),
  systemPrompt: envVar.string("CHAT_SYSTEM_PROMPT", { default: DEFAULT_SYSTEM_PROMPT }),
  maxQueryChars: envVar.int("CHAT_MAX_QUERY_CHARS", { default: 8000, min: 1 }),
  streamMinIntervalMs: envVar.duration("CHAT_STREAM_MIN_INTERVAL_MS", { default: 20 }),
  rerankKeep: envVar.int("CHAT_RERANK_KEEP", { default: 3, min: 1, max: 50 }),
  timeoutMs: envVar.duration("CHAT_TIMEOUT_MS", { default: 120_000 }),
  concurrency: envVar.int("CHAT_CONCURRENCY", { default: 32, min: 1 }),
};

/** The loaded {@linkcode chatModuleConfigSpec}. */
export type ChatModuleConfig = Config<typeof chatModuleConfigSpec>;

/**
 * The backend clients a loaded configuration describes.
 *
 * @param config The loaded variables.
 * @param options The logger and the circuit breakers (`setup`'s `context.clients`).
 * @returns The LLM, retrieval and TTS clients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatClientsFromConfig, chatModuleConfigSpec } from "./config.ts";
 *
 * const clients = chatClientsFromConfig(loadConfig(chatModuleConfigSpec, { TTS_API: "openai" }));
 * assert.equal(clients.tts?.api, "openai");
 * ```
 */
export function chatClientsFromConfig(
  config: ChatModuleConfig,
  options: ClientFromConfigOptions = {},
): ChatClients {
  return {
    llm: llmClientFromConfig(config, options),
    rag: ragClientsFromConfig(config, options),
    tts: ttsClientFromConfig(config, options),
  };
}

/**
 * The handler options a loaded configuration describes.
 *
 * @param config The loaded variables.
 * @returns The options of `createChatEndpoints`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { chatHandlerOptionsFromConfig, chatModuleConfigSpec } from "./config.ts";
 *
 * const options = chatHandlerOptionsFromConfig(loadConfig(chatModuleConfigSpec, {}));
 * assert.deepEqual([options.maxQueryChars, options.concurrency], [8000, 32]);
 * ```
 */
export function chatHandlerOptionsFromConfig(config: ChatModuleConfig): ChatHandlerOptions {
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
