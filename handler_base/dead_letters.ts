/**
 * Dead letters: what a durable consumer gives up on is published to
 * {@linkcode deadLetterSubject} (`dlq.<service>.<subject>`) with its
 * original headers and the {@linkcode DEAD_LETTER_HEADERS} that say why, and
 * the `DEAD_LETTERS` stream of `streams.ts` keeps it.
 * {@linkcode publishDeadLetter} does it once per message, whichever path or
 * replica sends it (the `Nats-Msg-Id` is the stream, sequence and consumer).
 *
 * Requires `--allow-net=<nats>` for {@linkcode publishDeadLetter}.
 *
 * @example
 * ```ts
 * import { DEAD_LETTER_HEADERS, deadLetterSubject } from "@homelab/handler-base/dead-letters";
 *
 * console.log(deadLetterSubject("tts-module", "ai.voice.tts.request.s1"));
 * // dlq.tts-module.ai.voice.tts.request.s1
 * console.log(DEAD_LETTER_HEADERS.errorType); // "Dlq-Error-Type"
 * ```
 *
 * @module
 */
import { headers as createHeaders } from "@nats-io/nats-core";
import type { JetStreamClient } from "./durable_publish.ts";
import { errorType, HandlerError, INTERNAL_ERROR_MESSAGE } from "./errors.ts";
import type { MsgHdrs, NatsConnection } from "./natsutil.ts";

/**
 * The headers a dead-lettered message carries besides its original ones.
 *
 * @example
 * ```ts
 * import { DEAD_LETTER_HEADERS } from "@homelab/handler-base/dead-letters";
 *
 * console.log(DEAD_LETTER_HEADERS.reason); // "Dlq-Reason"
 * ```
 */
export const DEAD_LETTER_HEADERS = {
  /** The failure's wire-safe message. */
  reason: "Dlq-Reason",
  /** The failure's `ErrorResponse.type` code. */
  errorType: "Dlq-Error-Type",
  /** The stream the message was stored in. */
  stream: "Dlq-Stream",
  /** Its sequence in that stream. */
  sequence: "Dlq-Sequence",
  /** How many times it was delivered. */
  deliveries: "Dlq-Deliveries",
  /** The subject it was published on. */
  subject: "Dlq-Subject",
  /** The durable consumer that gave up. */
  consumer: "Dlq-Consumer",
} as const;

/** Options of {@linkcode deadLetterSubject}. */
export interface DeadLetterSubjectOptions {
  /**
   * The first token.
   *
   * @default "dlq"
   */
  prefix?: string;
}

/**
 * The dead-letter subject of a message: `<prefix>.<service>.<subject>`.
 *
 * @param service The service name.
 * @param subject The message's original subject.
 * @param options The prefix.
 * @returns The subject.
 *
 * @example
 * ```ts
 * import { deadLetterSubject } from "@homelab/handler-base/dead-letters";
 *
 * console.log(deadLetterSubject("chat-handler", "ai.chat.user.u1.message"));
 * // dlq.chat-handler.ai.chat.user.u1.message
 * ```
 */
export function deadLetterSubject(
  service: string,
  subject: string,
  options: DeadLetterSubjectOptions = {},
): string {
  return `${options.prefix ?? "dlq"}.${service}.${subject}`;
}

/**
 * The wire-safe message of a failure, on one line, for headers and logs
 * that leave the process: a `HandlerError`'s message, else "Internal error".
 *
 * @param error Anything thrown.
 * @returns The message.
 *
 * @example
 * ```ts
 * import { safeMessage } from "@homelab/handler-base/dead-letters";
 *
 * console.log(safeMessage(new Error("password=hunter2"))); // "Internal error"
 * ```
 */
export function safeMessage(error: unknown): string {
  const message = error instanceof HandlerError ? error.message : INTERNAL_ERROR_MESSAGE;
  return message.replace(/[\r\n]+/g, " ");
}

/** What a dead letter is made of: the stored message and how often it was delivered. */
export interface DeadLetter {
  /** The subject it was published on. */
  readonly subject: string;
  /** Its payload. */
  readonly data: Uint8Array;
  /** Its headers. */
  readonly headers: MsgHdrs | undefined;
  /** Its sequence in the stream. */
  readonly sequence: number;
  /** How many times it was delivered. */
  readonly deliveries: number;
}

/** Where {@linkcode publishDeadLetter} sends, and for whom. */
export interface DeadLetterTarget {
  /** A JetStream client on the connection. */
  readonly client: JetStreamClient;
  /** The connection, for when no stream keeps dead letters. */
  readonly nc: NatsConnection;
  /** Resolves once the server has what was published before (a plain publish). */
  readonly flush: () => Promise<void>;
  /** The service that gives up. */
  readonly service: string;
  /** The stream the message was stored in. */
  readonly stream: string;
  /** The durable consumer that gives up. */
  readonly durable: string;
  /** The first token of the subject. @default "dlq" */
  readonly prefix?: string;
  /** How long the stream may take to acknowledge, in milliseconds. */
  readonly timeoutMs: number;
}

/**
 * Publishes a message a consumer gave up on, with its original headers
 * (except the `Nats-*` ones, which steer a stream) and the
 * {@linkcode DEAD_LETTER_HEADERS}. Stored once by `DEAD_LETTERS` when that
 * stream exists; else published for whoever listens.
 *
 * @param target Where to send, for which service, stream and consumer.
 * @param letter The message.
 * @param error Why it is given up on.
 * @returns The dead-letter subject.
 * @throws {Error} When the stream refused it or did not answer in time.
 *
 * @example
 * ```ts ignore
 * import { publishDeadLetter } from "@homelab/handler-base/dead-letters";
 * import { jetstream } from "@nats-io/jetstream";
 *
 * await publishDeadLetter(
 *   { client: jetstream(nc), nc, flush: () => nc.flush(), service: "jobs", stream: "TEST_JOBS",
 *     durable: "jobs", timeoutMs: 5000 },
 *   { subject: "test.jobs.1", data, headers: undefined, sequence: 1, deliveries: 5 },
 *   new Error("boom"),
 * );
 * ```
 */
export async function publishDeadLetter(
  target: DeadLetterTarget,
  letter: DeadLetter,
  error: unknown,
): Promise<string> {
  const h = createHeaders();
  for (const key of letter.headers?.keys() ?? []) {
    // Nats-* headers steer the stream (dedup, expectations): not the dead letter's.
    if (/^nats-/i.test(key)) continue;
    for (const value of letter.headers!.values(key)) h.append(key, value);
  }
  h.set(DEAD_LETTER_HEADERS.reason, safeMessage(error));
  h.set(DEAD_LETTER_HEADERS.errorType, errorType(error));
  h.set(DEAD_LETTER_HEADERS.stream, target.stream);
  h.set(DEAD_LETTER_HEADERS.sequence, String(letter.sequence));
  h.set(DEAD_LETTER_HEADERS.deliveries, String(letter.deliveries));
  h.set(DEAD_LETTER_HEADERS.subject, letter.subject);
  h.set(DEAD_LETTER_HEADERS.consumer, target.durable);
  const subject = deadLetterSubject(target.service, letter.subject, {
    ...(target.prefix ? { prefix: target.prefix } : {}),
  });
  try {
    await target.client.publish(subject, letter.data, {
      headers: h,
      // One dead letter per message, whichever path or replica sends it.
      msgID: `${target.stream}.${letter.sequence}.${target.durable}`,
      timeout: target.timeoutMs,
    });
  } catch (publishError) {
    if (!(publishError instanceof Error && publishError.name === "JetStreamNotEnabled")) {
      throw publishError;
    }
    // No stream keeps dead letters: publish them for whoever listens.
    target.nc.publish(subject, letter.data, { headers: h });
    await target.flush();
  }
  return subject;
}
