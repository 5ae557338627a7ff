/**
 * The endpoint of stt-module (SYSTEM.md section 5): `ai.voice.stream.>`
 * (STTStreamMessage), session id = the last subject token; results on
 * `ai.voice.transcription.{sid}`.
 *
 * - `start` (re)opens the session with the message's format (defaults 16 kHz
 *   mono s16le); `chunk` appends audio (a chunk for an unknown session
 *   opens one with the default format, or the chunk's own format fields);
 *   `state_change` sets `listening` or `responding`; `end` flushes (final
 *   result) and closes. See `session.ts` for VAD, partials, finals and
 *   barge-in.
 * - Errors the client should see go to the transcription subject as an
 *   ErrorResponse (`Msg-Type: messages.v1.ErrorResponse`; the subject
 *   carries three types, receivers dispatch on the header): an unsupported
 *   format, an unknown message type or state, a full session table
 *   (`Overloaded`), too much queued audio, a backend failure.
 * - Bounds: `maxSessions` open sessions, `maxQueuedBytes` of audio waiting
 *   per session (beyond it chunks are refused, `Overloaded`), idle sessions
 *   closed after `idleMs` (with a final result if speech was open).
 * - Each session's messages are processed one at a time in arrival order;
 *   the handler returns as soon as the message is queued, so a slow session
 *   never takes a concurrency slot from the others.
 * - With `affinity`, every replica receives every message (no queue group)
 *   and only the session's owner handles it (see
 *   `@homelab/handler-base/session-affinity` and `docs/STT.md`); without it
 *   the endpoint uses the service's queue group (one replica).
 *
 * Needs what the handler runtime needs (`--allow-net=<nats>`) and what the
 * STT client needs.
 *
 * @example
 * ```ts ignore
 * const stt = createSttHandler({ stt: client, fvad: await loadFvad(), settings, logger });
 * const service = createService(nc, { name: "stt-module", endpoints: [stt.endpoint], logger });
 * ```
 *
 * @module
 */
import type { SttClient } from "@homelab/handler-base/clients/stt";
import {
  InvalidArgumentError,
  OverloadedError,
  toErrorResponse,
} from "@homelab/handler-base/errors";
import { defineEndpoint, type Endpoint } from "@homelab/handler-base/handler";
import type { Logger } from "@homelab/handler-base/log";
import {
  ErrorResponseSchema,
  STTInterruptSchema,
  type STTStreamMessage,
  STTStreamMessageSchema,
  STTTranscriptionSchema,
  unixSeconds,
} from "@homelab/handler-base/messages";
import { type NatsConnection, publish } from "@homelab/handler-base/natsutil";
import type { SessionAffinity } from "@homelab/handler-base/session-affinity";
import { SessionTable } from "@homelab/handler-base/sessions";
import { SttSession, type SttSettings, type SttSink } from "./session.ts";
import type { FvadModule } from "./vad.ts";

/** The subject of audio streams; the last token is the session id. */
export const STT_STREAM_SUBJECT = "ai.voice.stream.>";

/**
 * The subject of a session's results.
 *
 * @param sessionId The session id.
 * @returns `ai.voice.transcription.{sessionId}`.
 */
export function transcriptionSubject(sessionId: string): string {
  return `ai.voice.transcription.${sessionId}`;
}

/** Options of {@linkcode createSttHandler}. */
export interface SttHandlerOptions {
  /** The backend. */
  stt: SttClient;
  /** The compiled VAD module. */
  fvad: FvadModule;
  /** VAD timing and per-session limits. */
  settings: SttSettings;
  /** The logger. */
  logger: Logger;
  /**
   * Routes sessions across replicas; omit for a single replica. A promise
   * (the affinity is made once NATS is connected) holds messages, in order,
   * until it resolves.
   *
   * @default none
   */
  affinity?: SessionAffinity | Promise<SessionAffinity>;
  /** The most sessions open at once. @default 200 */
  maxSessions?: number;
  /** The most audio bytes queued (not yet processed) per session. @default 4 MiB */
  maxQueuedBytes?: number;
  /** Idle time that closes a session, in ms. @default 30000 */
  idleMs?: number;
  /** The clock of idle timeouts. @default Date.now */
  now?: () => number;
}

/** The endpoint and the session table behind it. */
export interface SttHandler extends AsyncDisposable {
  /** The `ai.voice.stream.>` endpoint. */
  readonly endpoint: Endpoint;
  /** The open sessions (for tests and health). */
  readonly sessions: SessionTable<SttSession>;
  /** Settles when every message queued so far is processed (tests). */
  idle(): Promise<void>;
}

interface Queued {
  bytes: number;
}

/**
 * Creates the endpoint and its session table. Start the idle sweep with
 * `handler.sessions.start({ signal })`; dispose the handler to flush and
 * close every session.
 *
 * @param options Backend, VAD, settings, limits and affinity.
 * @returns The handler.
 */
export function createSttHandler(options: SttHandlerOptions): SttHandler {
  const { stt, fvad, settings, logger } = options;
  let affinity: SessionAffinity | undefined;
  const affinityReady = options.affinity ? Promise.resolve(options.affinity) : undefined;
  affinityReady?.then((ready) => (affinity = ready), () => {});
  const maxQueuedBytes = options.maxQueuedBytes ?? 4 * 1024 * 1024;
  let nc: NatsConnection | undefined;
  const queued = new Map<string, Queued>();
  const inFlight = new Set<Promise<unknown>>();

  function sinkFor(sessionId: string): SttSink {
    const subject = transcriptionSubject(sessionId);
    return {
      transcription(result) {
        if (!nc) return;
        publish(nc, subject, STTTranscriptionSchema, {
          sessionId,
          transcript: result.transcript,
          sequence: result.sequence,
          isPartial: result.isPartial,
          isFinal: result.isFinal,
          timestamp: unixSeconds(),
          speakerId: result.speakerId,
          hasVoiceActivity: true,
          state: result.state,
        });
      },
      interrupt(speakerId) {
        if (!nc) return;
        publish(nc, subject, STTInterruptSchema, {
          sessionId,
          type: "interrupt",
          timestamp: unixSeconds(),
          speakerId,
        });
      },
      error(error) {
        if (!nc) return;
        publish(nc, subject, ErrorResponseSchema, toErrorResponse(error));
      },
    };
  }

  const sessions: SessionTable<SttSession> = new SessionTable<SttSession>({
    maxSessions: options.maxSessions ?? 200,
    // Queued audio is bounded in bytes below; the task count only bounds the
    // bookkeeping of tiny chunks (a client sending single bytes).
    maxQueued: 16_384,
    idleMs: options.idleMs ?? 30_000,
    ...(options.now ? { now: options.now } : {}),
    open: (sessionId) =>
      new SttSession({
        sessionId,
        fvad,
        stt,
        settings,
        sink: sinkFor(sessionId),
        log: logger.child({ session_id: sessionId }),
      }),
    close: async (session, sessionId, reason) => {
      logger.info("Session closed", { session_id: sessionId, reason });
      await session.finish(reason);
      if (reason !== "lost") await affinity?.release(sessionId, { ended: reason !== "shutdown" });
    },
    onError: (error, sessionId) => logger.error("Session failed", { session_id: sessionId, error }),
  });

  function process(sessionId: string, message: STTStreamMessage): Promise<unknown> {
    switch (message.type) {
      case "end":
        return sessions.close(sessionId, "end");
      case "start":
      case "chunk":
      case "state_change":
        break;
      default:
        throw new InvalidArgumentError(
          `Cannot handle the stream message: type "${message.type}" is not start, chunk, state_change or end`,
        );
    }
    const bytes = message.audio.length;
    const entry = queued.get(sessionId) ?? { bytes: 0 };
    if (entry.bytes + bytes > maxQueuedBytes) {
      throw new OverloadedError(
        `Cannot queue audio for session ${sessionId}: ${entry.bytes} bytes are waiting`,
      );
    }
    entry.bytes += bytes;
    queued.set(sessionId, entry);
    const task = sessions.run(sessionId, async (session) => {
      session.noteSpeaker(message.speakerId);
      if (message.type === "start") {
        await session.start(message);
        if (message.state) session.setState(message.state);
      } else if (message.type === "state_change") {
        session.setState(message.state);
      } else {
        await session.chunk(message.audio, message);
      }
    });
    return task.finally(() => {
      entry.bytes -= bytes;
      if (entry.bytes === 0 && queued.get(sessionId) === entry) queued.delete(sessionId);
    });
  }

  function report(sessionId: string, error: unknown): void {
    logger.warn("Stream message refused", { session_id: sessionId, error });
    sinkFor(sessionId).error(error);
  }

  function track(promise: Promise<unknown>): void {
    inFlight.add(promise);
    promise.finally(() => inFlight.delete(promise));
  }

  const endpoint = defineEndpoint({
    subject: STT_STREAM_SUBJECT,
    name: "stream",
    request: STTStreamMessageSchema,
    ...(affinityReady ? { queue: false as const } : {}),
    // handle() only queues the message on its session (the session table
    // bounds the work), so slots free at once; a burst that NATS delivers in
    // one read must not hit the runtime's pending limit.
    concurrency: 1024,
    maxPending: 16_384,
    handle(message, ctx) {
      nc ??= ctx.nc;
      const sessionId = ctx.tokens.length >= 4 ? ctx.tokens[ctx.tokens.length - 1]! : "";
      if (!sessionId) {
        return Promise.reject(
          new InvalidArgumentError(`Cannot handle ${ctx.subject}: the subject names no session`),
        );
      }
      ctx.addLogFields({ session_id: sessionId });
      const work = () => {
        try {
          return process(sessionId, message).catch((error) => report(sessionId, error));
        } catch (error) {
          report(sessionId, error);
          return Promise.resolve();
        }
      };
      const admitOptions = { reopen: message.type === "start" };
      // Queued, not awaited: the session's own queue keeps the order.
      track(
        affinity
          ? affinity.admit(sessionId, work, admitOptions)
          : affinityReady
          ? affinityReady.then((ready) => ready.admit(sessionId, work, admitOptions))
          : work(),
      );
      return Promise.resolve();
    },
  });

  return {
    endpoint,
    sessions,
    async idle() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
    async [Symbol.asyncDispose]() {
      sessions.stop();
      await this.idle();
      await sessions.closeAll("shutdown");
    },
  };
}
