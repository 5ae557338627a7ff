/**
 * The variables of voice-assistant besides those every service reads (NATS,
 * runtime, consume mode: see `@homelab/handler-base/main`): the backends'
 * (STT, LLM, RAG, TTS, each declared by its client module) and its own
 * `VOICE_*` settings; and the handler options a loaded configuration
 * describes.
 *
 * Loading needs `--allow-env` for exactly `configVarNames(voiceService.spec)`
 * (the `voice-assistant` permission set of the root `deno.json`). Importing
 * this module reads nothing.
 *
 * @example Load with defaults
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { voiceModuleConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(voiceModuleConfigSpec, { VOICE_ENABLE_RAG: "false" });
 * console.log(config.enableRag, config.maxAudioBytes); // false 4194304
 * ```
 *
 * @module
 */
import { llmConfigSpec } from "@homelab/handler-base/clients/llm";
import { ragConfigSpec } from "@homelab/handler-base/clients/rag";
import { sttConfigSpec } from "@homelab/handler-base/clients/stt";
import { ttsConfigSpec } from "@homelab/handler-base/clients/tts";
import { type Config, ConfigError, envVar } from "@homelab/handler-base/config";
import { languageCode } from "./audio.ts";
import type { VoiceHandlerOptions } from "./handler.ts";
import { DEFAULT_NO_SPEECH_REPLY, DEFAULT_VOICE_SYSTEM_PROMPT } from "./pipeline.ts";

/**
 * The variables of voice-assistant, besides the NATS, runtime and
 * consume-mode families:
 * - the backends: `WHISPER_*`, `VLLM_URL` and `LLM_*`, `EMBEDDINGS_*`,
 *   `RERANKER_*`, `MILVUS_*`, `COLLECTION_NAME`, `TTS_*`;
 * - `VOICE_MAX_AUDIO_BYTES` (4 MiB): the largest accepted request audio;
 * - `VOICE_ENABLE_RAG` (true), `VOICE_RERANK` (true), `VOICE_TOP_K` (5),
 *   `VOICE_RERANK_KEEP` (3): retrieval;
 * - `VOICE_SYSTEM_PROMPT` (answers meant to be heard), `VOICE_MAX_TOKENS`
 *   (300): the LLM's part;
 * - `VOICE_NO_SPEECH_REPLY`: the answer when no speech was recognised;
 * - `VOICE_MIN_SENTENCE_CHARS` (20), `VOICE_MAX_SENTENCE_CHARS` (220): how
 *   the answer is cut for synthesis;
 * - `VOICE_TTS_PARALLELISM` (2): sentences synthesized at once;
 * - `VOICE_TTS_SPEAKER` (the backend's default), `VOICE_LANGUAGE` ("en": the
 *   speech's language when neither the request nor Whisper names one);
 * - `VOICE_TIMEOUT_MS` (60 s): the deadline of one request, all stages;
 *   `VOICE_CONCURRENCY` (8): requests at once per replica.
 */
export const voiceModuleConfigSpec = {
  ...sttConfigSpec,
  ...llmConfigSpec,
  ...ragConfigSpec,
  ...ttsConfigSpec,
  maxAudioBytes: envVar.int("VOICE_MAX_AUDIO_BYTES", { default: 4 * 1024 * 1024, min: 2 }),
  enableRag: envVar.bool("VOICE_ENABLE_RAG", { default: true }),
  rerank: envVar.bool("VOICE_RERANK", { default: true }),
  topK: envVar.int("VOICE_TOP_K", { default: 5, min: 1, max: 50 }),
  rerankKeep: envVar.int("VOICE_RERANK_KEEP", { default: 3, min: 1, max: 50 }),
  systemPrompt: envVar.string("VOICE_SYSTEM_PROMPT", { default: DEFAULT_VOICE_SYSTEM_PROMPT }),
  maxTokens: envVar.int("VOICE_MAX_TOKENS", { default: 300, min: 1 }),
  noSpeechReply: envVar.string("VOICE_NO_SPEECH_REPLY", { default: DEFAULT_NO_SPEECH_REPLY }),
  minSentenceChars: envVar.int("VOICE_MIN_SENTENCE_CHARS", { default: 20, min: 0, max: 1000 }),
  maxSentenceChars: envVar.int("VOICE_MAX_SENTENCE_CHARS", { default: 220, min: 2, max: 5000 }),
  ttsParallelism: envVar.int("VOICE_TTS_PARALLELISM", { default: 2, min: 1, max: 8 }),
  ttsSpeaker: envVar.string("VOICE_TTS_SPEAKER"),
  language: envVar.string("VOICE_LANGUAGE", { default: "en" }),
  timeoutMs: envVar.duration("VOICE_TIMEOUT_MS", { default: 60_000 }),
  concurrency: envVar.int("VOICE_CONCURRENCY", { default: 8, min: 1 }),
};

/** The loaded {@linkcode voiceModuleConfigSpec}. */
export type VoiceModuleConfig = Config<typeof voiceModuleConfigSpec>;

/**
 * The handler options a loaded configuration describes.
 *
 * @param config The loaded configuration.
 * @returns The options of `createVoiceEndpoints` (without a tracer).
 * @throws {ConfigError} When `VOICE_MAX_SENTENCE_CHARS` is not above
 *   `VOICE_MIN_SENTENCE_CHARS`, or `VOICE_LANGUAGE` or `VOICE_NO_SPEECH_REPLY`
 *   is unusable; the service then exits 78.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { voiceModuleConfigSpec, voiceOptionsFromConfig } from "./config.ts";
 *
 * const options = voiceOptionsFromConfig(loadConfig(voiceModuleConfigSpec, {}));
 * console.log(options.minSentenceChars, options.maxSentenceChars); // 20 220
 * ```
 */
export function voiceOptionsFromConfig(config: VoiceModuleConfig): VoiceHandlerOptions {
  const problems = [];
  if (config.maxSentenceChars <= config.minSentenceChars) {
    problems.push({
      name: "VOICE_MAX_SENTENCE_CHARS",
      problem: `must be above VOICE_MIN_SENTENCE_CHARS (${config.minSentenceChars})`,
    });
  }
  if (!/^[a-z]{2,3}(-[a-z]{2,4})?$/i.test(config.language)) {
    problems.push({ name: "VOICE_LANGUAGE", problem: 'must be a language code such as "en"' });
  }
  if (config.noSpeechReply.trim() === "") {
    problems.push({ name: "VOICE_NO_SPEECH_REPLY", problem: "must not be blank" });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    maxAudioBytes: config.maxAudioBytes,
    enableRag: config.enableRag,
    rerank: config.rerank,
    topK: config.topK,
    rerankKeep: config.rerankKeep,
    collection: config.collection,
    systemPrompt: config.systemPrompt,
    maxTokens: config.maxTokens,
    noSpeechReply: config.noSpeechReply,
    minSentenceChars: config.minSentenceChars,
    maxSentenceChars: config.maxSentenceChars,
    ttsParallelism: config.ttsParallelism,
    defaultLanguage: languageCode(config.language),
    timeoutMs: config.timeoutMs,
    concurrency: config.concurrency,
    ...(config.ttsSpeaker ? { speaker: config.ttsSpeaker } : {}),
  };
}
