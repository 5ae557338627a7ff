/**
 * The environment of stt-module, besides the NATS, runtime and consume-mode
 * families every service reads:
 * - `WHISPER_URL`, `WHISPER_MODEL`, `WHISPER_TIMEOUT_MS` (the backend, from
 *   `clients/stt`), `STT_LANGUAGE` (unset: the backend detects it);
 * - VAD: `STT_VAD_MODE` (0-3, default 2), `STT_FRAME_MS` (10, 20 or 30),
 *   `STT_PREROLL_MS` (300), `STT_SILENCE_MS` (end of speech, 600),
 *   `STT_MIN_SPEECH_MS` (shorter segments are dropped, 200);
 * - results: `STT_PARTIAL_MS` (interim results every this much segment
 *   audio, 0 = none, 1500), `STT_MAX_SEGMENT_MS` (a final is forced, 30000);
 * - bounds: `STT_MAX_SESSIONS` (200), `STT_MAX_QUEUED_BYTES` (audio waiting
 *   per session, 4 MiB), `STT_MAX_PENDING` (segments waiting for the backend
 *   per session, 2), `STT_SESSION_IDLE_MS` (30000);
 * - replicas: `STT_AFFINITY` (`kv`: session affinity through the JetStream
 *   key-value bucket `STT_AFFINITY_BUCKET`, default `stt_sessions`, with
 *   claims living `STT_CLAIM_TTL_MS`, 10000; `none`: one replica, a plain
 *   queue group).
 *
 * Importing this module reads nothing.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { sttModuleConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(sttModuleConfigSpec, { STT_VAD_MODE: "3" });
 * console.log(config.sttVadMode, config.sttSessionIdleMs); // 3 30000
 * ```
 *
 * @module
 */
import { sttConfigSpec } from "@homelab/handler-base/clients/stt";
import { envVar } from "@homelab/handler-base/config";

/** The variables of stt-module; see the module doc. */
export const sttModuleConfigSpec = {
  ...sttConfigSpec,
  sttLanguage: envVar.string("STT_LANGUAGE"),
  sttVadMode: envVar.int("STT_VAD_MODE", { default: 2, min: 0, max: 3 }),
  sttFrameMs: envVar.oneOf("STT_FRAME_MS", ["10", "20", "30"], { default: "20" }),
  sttPrerollMs: envVar.int("STT_PREROLL_MS", { default: 300, min: 0, max: 2000 }),
  sttSilenceMs: envVar.int("STT_SILENCE_MS", { default: 600, min: 60, max: 10_000 }),
  sttMinSpeechMs: envVar.int("STT_MIN_SPEECH_MS", { default: 200, min: 0, max: 10_000 }),
  sttPartialMs: envVar.int("STT_PARTIAL_MS", { default: 1500, min: 0, max: 60_000 }),
  sttMaxSegmentMs: envVar.int("STT_MAX_SEGMENT_MS", { default: 30_000, min: 1000, max: 120_000 }),
  sttMaxSessions: envVar.int("STT_MAX_SESSIONS", { default: 200, min: 1, max: 100_000 }),
  sttMaxQueuedBytes: envVar.int("STT_MAX_QUEUED_BYTES", {
    default: 4 * 1024 * 1024,
    min: 64 * 1024,
  }),
  sttMaxPending: envVar.int("STT_MAX_PENDING", { default: 2, min: 1, max: 64 }),
  sttSessionIdleMs: envVar.duration("STT_SESSION_IDLE_MS", { default: 30_000 }),
  sttAffinity: envVar.oneOf("STT_AFFINITY", ["kv", "none"], { default: "kv" }),
  sttAffinityBucket: envVar.string("STT_AFFINITY_BUCKET", { default: "stt_sessions" }),
  sttClaimTtlMs: envVar.int("STT_CLAIM_TTL_MS", { default: 10_000, min: 300 }),
};
