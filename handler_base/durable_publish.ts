/**
 * Durable publishing: {@linkcode publishDurable} stores a message in the
 * stream that captures its subject, retrying until the publish
 * acknowledgement or a deadline, with a `Nats-Msg-Id` so that a retry never
 * stores a duplicate.
 *
 * Requires `--allow-net=<nats>`.
 *
 * @example Give up at once without a signal to wait on
 * ```ts
 * import { publishDurable } from "@homelab/handler-base/durable-publish";
 * import { PipelineTriggerSchema } from "@homelab/handler-base/messages";
 *
 * const aborted = AbortSignal.abort(new Error("stopping"));
 * // deno-lint-ignore no-explicit-any
 * const nc = {} as any; // never used: the signal is checked first
 * await publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, {}, { signal: aborted })
 *   .catch((error) => console.log(error.message)); // "stopping"
 * ```
 *
 * @module
 */
import { errors as natsErrors } from "@nats-io/nats-core";
import * as js from "@nats-io/jetstream";
import type { Context } from "@opentelemetry/api";
import { abortable, delay } from "./async.ts";
import { BackendError, BackendUnavailableError, TimeoutError } from "./errors.ts";
import { messageOf } from "./jetstream_api.ts";
import { type DescMessage, encode, type MessageInitShape, type MessageShape } from "./messages.ts";
import { messageHeaders, type MsgHdrs, type NatsConnection } from "./natsutil.ts";

/** A JetStream client (nats.js). */
export type JetStreamClient = js.JetStreamClient;

/** Options of {@linkcode publishDurable}. */
export interface PublishDurableOptions {
  /**
   * The message id (`Nats-Msg-Id`): the request id, so that a trigger sent
   * twice within the stream's duplicate window is stored once.
   *
   * @default a random id (retries of this call still never duplicate)
   */
  msgId?: string;
  /**
   * How long to keep trying, in milliseconds.
   *
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Stops trying when aborted; the call rejects with the signal's reason.
   *
   * @default undefined
   */
  signal?: AbortSignal;
  /**
   * Extra headers; `Msg-Type`, the trace context and `Nats-Msg-Id` are added.
   *
   * @default new headers
   */
  headers?: MsgHdrs;
  /**
   * The trace context to propagate.
   *
   * @default the active context
   */
  context?: Context;
}

/** The stream's acknowledgement of a stored message. */
export interface DurableAck {
  /** The stream that stored it. */
  readonly stream: string;
  /** Its sequence in the stream. */
  readonly seq: number;
  /** True when the stream already had this message id (nothing new was stored). */
  readonly duplicate: boolean;
}

/** One try's time limit: short, so that a lost request is retried well before the deadline. */
const PUBLISH_ATTEMPT_MS = 2000;

function isTransientPublishError(error: unknown): boolean {
  if (error instanceof js.JetStreamApiError) return error.status === 503;
  if (error instanceof Error && error.name === "JetStreamNotEnabled") return true;
  return error instanceof natsErrors.TimeoutError || error instanceof natsErrors.RequestError;
}

/**
 * Stores one typed message in the stream that captures its subject, with
 * `Msg-Type`, the trace headers and `Nats-Msg-Id`, retrying (timeouts, no
 * stream yet, a reconnecting connection) until the stream acknowledges it or
 * the time is up. Retries reuse the message id, so the stream keeps one copy.
 *
 * @typeParam Desc The message schema.
 * @param target A JetStream client, or a connection to make one from.
 * @param subject The subject.
 * @param schema The message's schema.
 * @param message The message or its fields.
 * @param options Message id, time limit, signal, headers and trace context.
 * @returns The acknowledgement.
 * @throws {BackendUnavailableError} When no stream took the message before the deadline.
 * @throws {TimeoutError} When the stream did not acknowledge before the deadline.
 * @throws {BackendError} When the stream refused the message (a permanent API error).
 *
 * @example Store a pipeline trigger once
 * ```ts ignore
 * import { publishDurable } from "@homelab/handler-base/durable-publish";
 * import { PipelineTriggerSchema } from "@homelab/handler-base/messages";
 *
 * const ack = await publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, {
 *   requestId: "r-42",
 *   pipeline: "document-ingestion",
 * }, { msgId: "r-42", timeoutMs: 5000 });
 * console.log(ack.stream, ack.seq, ack.duplicate); // "AI_PIPELINE" 1 false
 * ```
 */
export async function publishDurable<Desc extends DescMessage>(
  target: JetStreamClient | NatsConnection,
  subject: string,
  schema: Desc,
  message: MessageShape<Desc> | MessageInitShape<Desc>,
  options: PublishDurableOptions = {},
): Promise<DurableAck> {
  const { timeoutMs = 10_000, signal } = options;
  signal?.throwIfAborted();
  const client = "jetstreamManager" in target ? target : js.jetstream(target);
  const data = encode(schema, message);
  const msgID = options.msgId ?? crypto.randomUUID();
  const headers = messageHeaders(schema.typeName, {
    ...(options.headers ? { headers: options.headers } : {}),
    ...(options.context ? { context: options.context } : {}),
  });
  const deadline = performance.now() + timeoutMs;
  const wait = new AbortController();
  const onAbort = () => wait.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let lastError: unknown;
  try {
    for (let attempt = 0;; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      try {
        const ack = await abortable(
          client.publish(subject, data, {
            msgID,
            headers,
            timeout: Math.max(1, Math.min(remaining, PUBLISH_ATTEMPT_MS)),
          }),
          signal,
        );
        return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (!isTransientPublishError(error)) {
          throw new BackendError("jetstream", {
            status: error instanceof js.JetStreamApiError ? error.status : 0,
            excerpt: messageOf(error),
            cause: error,
          });
        }
        lastError = error;
      }
      const backoffMs = Math.min(100 * 2 ** attempt, 2000, deadline - performance.now());
      if (backoffMs > 0) await delay(backoffMs, { signal: wait.signal }).catch(() => {});
      if (signal?.aborted) throw signal.reason;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (lastError instanceof Error && lastError.name === "JetStreamNotEnabled") {
    throw new BackendUnavailableError("jetstream", {
      detail: `no stream stored a message on "${subject}" within ${timeoutMs} ms`,
      cause: lastError,
    });
  }
  throw new TimeoutError(
    `Cannot store a message on "${subject}": no acknowledgement within ${timeoutMs} ms`,
    { cause: lastError },
  );
}
