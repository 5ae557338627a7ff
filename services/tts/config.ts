/**
 * The variables of tts-module besides those every service reads (NATS,
 * runtime, consume mode: see `@homelab/handler-base/main`): the TTS
 * backend's (`TTS_URL`, `TTS_API`, `TTS_TIMEOUT_MS`, declared by its client
 * module), the voice registry and the request limits.
 *
 * Loading needs `--allow-env` for exactly `configVarNames(ttsService.spec)`
 * (the `tts-module` permission set of the root `deno.json`). Importing this
 * module reads nothing.
 *
 * @example Load with defaults
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { ttsModuleConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(ttsModuleConfigSpec, { TTS_MAX_CHARS: "2000" });
 * assert.deepEqual([config.ttsMaxChars, config.ttsMaxConcurrency], [2000, 4]);
 * ```
 *
 * @module
 */
import { ttsConfigSpec } from "@homelab/handler-base/clients/tts";
import { envVar } from "@homelab/handler-base/config";

/** The default of `TTS_URL` (SYSTEM.md section 6). */
export const DEFAULT_TTS_URL = "http://tts-predictor.ai-ml.svc.cluster.local";

/**
 * The variables of tts-module, besides the NATS, runtime and consume-mode
 * families:
 * - `TTS_URL`, `TTS_API` (`xtts` or `openai`), `TTS_TIMEOUT_MS` (one backend
 *   call; for a stream, the head and each wait for a chunk);
 * - `TTS_DEFAULT_SPEAKER`: the built-in speaker of requests that name none or
 *   `default` (unset: the backend's first studio speaker);
 * - `TTS_VOICES_DIR` (unset: no custom voices), `TTS_VOICES_REFRESH_MS`
 *   (periodic rescan, 0 disables it);
 * - `TTS_MAX_CHARS`, `TTS_MAX_REFERENCE_BYTES` (a voice's reference WAV, from
 *   the registry or `speaker_wav_b64`), `TTS_MAX_CONCURRENCY` (syntheses at
 *   once per replica), `TTS_REQUEST_TIMEOUT_MS` (deadline of one request,
 *   streaming included).
 *
 * @example List the names for `--allow-env`
 * ```ts
 * import assert from "node:assert/strict";
 * import { configVarNames } from "@homelab/handler-base/config";
 * import { ttsModuleConfigSpec } from "./config.ts";
 *
 * assert.equal(configVarNames(ttsModuleConfigSpec).includes("TTS_VOICES_DIR"), true);
 * ```
 */
export const ttsModuleConfigSpec = {
  ...ttsConfigSpec,
  ttsDefaultSpeaker: envVar.string("TTS_DEFAULT_SPEAKER"),
  ttsVoicesDir: envVar.string("TTS_VOICES_DIR"),
  ttsVoicesRefreshMs: envVar.duration("TTS_VOICES_REFRESH_MS", { default: 60_000 }),
  ttsMaxChars: envVar.int("TTS_MAX_CHARS", { default: 5000, min: 1 }),
  ttsMaxReferenceBytes: envVar.int("TTS_MAX_REFERENCE_BYTES", {
    default: 10 * 1024 * 1024,
    min: 44,
  }),
  ttsMaxConcurrency: envVar.int("TTS_MAX_CONCURRENCY", { default: 4, min: 1, max: 1024 }),
  ttsRequestTimeoutMs: envVar.duration("TTS_REQUEST_TIMEOUT_MS", { default: 300_000 }),
};
