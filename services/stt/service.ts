/**
 * The definition of stt-module: its variables and how they become the STT
 * client, the VAD, the session table, the session affinity and the endpoint
 * (see `handler.ts` and `session.ts` for the behaviour, `config.ts` for the
 * variables, `docs/STT.md` for the design).
 *
 * @example
 * ```ts
 * import { sttService } from "./service.ts";
 *
 * console.log(sttService.name, sttService.spec.sttVadMode.name); // stt-module STT_VAD_MODE
 * ```
 *
 * @module
 */
import { sttClientFromConfig } from "@homelab/handler-base/clients/stt";
import type { ReadinessCheck } from "@homelab/handler-base/health";
import { defineService } from "@homelab/handler-base/main";
import {
  createSessionAffinity,
  type SessionAffinity,
} from "@homelab/handler-base/session-affinity";
import { sttModuleConfigSpec } from "./config.ts";
import { createSttHandler } from "./handler.ts";
import { loadFvad, type VadMode } from "./vad.ts";

/** stt-module: streamed audio in, transcriptions out. */
export const sttService = defineService({
  name: "stt-module",
  description: "Streamed audio in, transcriptions out (WebRTC VAD, partials, barge-in)",
  config: sttModuleConfigSpec,
  async setup(config, { logger, signal }) {
    const stt = sttClientFromConfig(config, { logger });
    const fvad = await loadFvad();
    const affinity = config.sttAffinity === "kv"
      ? Promise.withResolvers<SessionAffinity>()
      : undefined;
    const handler = createSttHandler({
      stt,
      fvad,
      logger,
      settings: {
        vadMode: config.sttVadMode as VadMode,
        frameMs: Number(config.sttFrameMs),
        prerollMs: config.sttPrerollMs,
        silenceMs: config.sttSilenceMs,
        minSpeechMs: config.sttMinSpeechMs,
        partialMs: config.sttPartialMs,
        maxSegmentMs: config.sttMaxSegmentMs,
        maxPending: config.sttMaxPending,
        ...(config.sttLanguage ? { language: config.sttLanguage } : {}),
      },
      maxSessions: config.sttMaxSessions,
      maxQueuedBytes: config.sttMaxQueuedBytes,
      idleMs: config.sttSessionIdleMs,
      ...(affinity ? { affinity: affinity.promise } : {}),
    });
    handler.sessions.start({ signal });
    let claims: SessionAffinity | undefined;
    const checks: Record<string, ReadinessCheck> = {};
    if (affinity) {
      checks.affinity = () => (claims ? true : "the session-affinity bucket is not open yet");
    }
    return {
      endpoints: [handler.endpoint],
      checks,
      details: {
        affinity: () =>
          claims ? { replica_id: claims.replicaId, members: claims.members().length } : null,
      },
      async onStart(service) {
        if (!affinity) return;
        try {
          claims = await createSessionAffinity(service.nc, {
            bucket: config.sttAffinityBucket,
            ttlMs: config.sttClaimTtlMs,
            // Like the streams: on a three-node cluster the claims survive a node.
            replicas: config.jetstreamReplicas,
            logger,
            onLost: (sessionId) => void handler.sessions.close(sessionId, "lost"),
          });
          logger.info("Session affinity on", {
            bucket: config.sttAffinityBucket,
            replica_id: claims.replicaId,
          });
          affinity.resolve(claims);
        } catch (error) {
          affinity.reject(error);
          throw error;
        }
      },
      async dispose() {
        // Flush open sessions (final results) before giving their claims up.
        await handler[Symbol.asyncDispose]();
        await claims?.[Symbol.asyncDispose]();
      },
    };
  },
});
