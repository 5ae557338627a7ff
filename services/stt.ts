/**
 * stt-module: streamed audio in (`ai.voice.stream.{sid}`), transcriptions
 * out (`ai.voice.transcription.{sid}`), with the WebRTC VAD, interim
 * results, barge-in and session affinity across replicas. The definition is
 * `stt/service.ts`, the behaviour `stt/handler.ts` and `stt/session.ts`, the
 * variables `stt/config.ts`, the design `docs/STT.md`.
 *
 * Run: `deno run -P=stt-module services/stt.ts` (the server needs JetStream
 * for the session-affinity bucket; `STT_AFFINITY=none` for one replica
 * without it).
 *
 * @example Run against a local stack
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 WHISPER_URL=http://127.0.0.1:8030 \
 *   deno run -P=stt-module services/stt.ts
 * ```
 *
 * @module
 */
import { serviceMain } from "@homelab/handler-base/main";
import { sttService } from "./stt/service.ts";

if (import.meta.main) await serviceMain(sttService);
