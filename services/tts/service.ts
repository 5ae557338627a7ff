/**
 * The definition of tts-module: its variables and how they become the TTS
 * client, the voice registry and the endpoints (see `handler.ts` for the
 * behaviour and `config.ts` for the variables).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ttsService } from "./service.ts";
 *
 * assert.deepEqual([ttsService.name, ttsService.spec.ttsVoicesDir.name], [
 *   "tts-module",
 *   "TTS_VOICES_DIR",
 * ]);
 * ```
 *
 * @module
 */
import { ttsClientFromConfig } from "@homelab/handler-base/clients/tts";
import { defineService } from "@homelab/handler-base/main";
import { ttsModuleConfigSpec } from "./config.ts";
import { createTtsEndpoints } from "./handler.ts";
import { startVoiceRegistry } from "./voices.ts";

/** tts-module: the NATS front of the TTS backend, with a registry of custom voices. */
export const ttsService = defineService({
  name: "tts-module",
  description: "Text to speech over NATS, full or streamed, with custom voices",
  config: ttsModuleConfigSpec,
  async setup(config, { logger, signal, clients }) {
    const defaultSpeaker = config.ttsDefaultSpeaker;
    const tts = ttsClientFromConfig(config, { ...clients, defaultSpeaker });
    const voices = await startVoiceRegistry({
      dir: config.ttsVoicesDir,
      tts,
      logger,
      maxReferenceBytes: config.ttsMaxReferenceBytes,
      refreshMs: config.ttsVoicesRefreshMs,
      signal,
    });
    const endpoints = createTtsEndpoints({
      tts,
      voices,
      maxChars: config.ttsMaxChars,
      maxReferenceBytes: config.ttsMaxReferenceBytes,
      concurrency: config.ttsMaxConcurrency,
      timeoutMs: config.ttsRequestTimeoutMs,
      ...(defaultSpeaker ? { defaultSpeaker } : {}),
    });
    return { endpoints, dispose: () => voices[Symbol.dispose]() };
  },
});
