/**
 * tts-module: the NATS front of the TTS backend (see `tts/handler.ts` for the
 * behaviour and `tts/config.ts` for the variables).
 *
 * Run: `deno run -P=tts-module services/tts.ts`. The `tts-module` permission
 * set of the root `deno.json` allows reading `/voices`, the voices directory
 * of the container image; with another `TTS_VOICES_DIR`, add
 * `--allow-read=<that directory>`.
 *
 * @example Run against a local stack
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 TTS_URL=http://127.0.0.1:8020 \
 *   deno run -P=tts-module services/tts.ts
 * ```
 *
 * @module
 */
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { ConfigError, loadConfig } from "@homelab/handler-base/config";
import { consumeSettingsFromConfig } from "@homelab/handler-base/jetstream";
import { createLogger } from "@homelab/handler-base/log";
import { natsOptionsFromConfig } from "@homelab/handler-base/natsutil";
import { runService, terminationSignal } from "@homelab/handler-base/run";
import { ttsConfigSpec } from "./tts/config.ts";
import { createTtsEndpoints } from "./tts/handler.ts";
import { startVoiceRegistry } from "./tts/voices.ts";

if (import.meta.main) {
  let config;
  try {
    config = loadConfig(ttsConfigSpec, Deno.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(78);
  }
  const name = "tts-module";
  const logger = createLogger({ service: name, level: config.logLevel });
  const signal = terminationSignal();
  const tts = createTtsClient({
    baseUrl: config.ttsUrl,
    api: config.ttsApi,
    timeoutMs: config.ttsTimeoutMs,
    logger,
    ...(config.ttsDefaultSpeaker ? { defaultSpeaker: config.ttsDefaultSpeaker } : {}),
  });
  using voices = await startVoiceRegistry({
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
    ...(config.ttsDefaultSpeaker ? { defaultSpeaker: config.ttsDefaultSpeaker } : {}),
  });
  await runService({
    name,
    endpoints,
    nats: natsOptionsFromConfig(config),
    healthPort: config.healthPort,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
    signal,
    ...consumeSettingsFromConfig(config),
  });
}
