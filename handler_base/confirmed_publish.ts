/**
 * At-least-once publishing onto a stream that sends no acknowledgements.
 *
 * `AI_VOICE_STREAM` is created with `no_ack: true` (SYSTEM.md section 4): it
 * captures request-reply subjects, and an ack would answer those requests
 * before the service does. A producer therefore cannot learn from the publish
 * itself that the message was stored. {@linkcode publishConfirmed} gets that
 * answer another way:
 *
 * 1. it notes the stream's last sequence,
 * 2. publishes the message with a `Nats-Msg-Id` header (a plain core
 *    publish: nothing replies),
 * 3. looks the message up in the stream by subject from that sequence on,
 *    comparing the `Nats-Msg-Id` of each stored message on the subject (and
 *    once over all the subject's messages, to find a copy stored before,
 *    which made the stream drop this publish as a duplicate), and
 * 4. when it is not there after a few looks, publishes it again with the same
 *    id, until the time is up.
 *
 * Publishing again is safe: within the stream's duplicate window (2 minutes
 * unless the stream says otherwise) JetStream stores one message per
 * `Nats-Msg-Id`, with or without acks. So the message is stored at least
 * once, and at most once as long as the retries stay within that window.
 * Consumers still see the message as any other (the services handle it once
 * it is stored). Use the request id (or session id and a counter) as the id,
 * so that a producer that restarts and sends again is deduplicated too.
 *
 * Costs: two JetStream API requests per message beside the publish (stream
 * info, then one message lookup per stored message on the subject since
 * then); when the first look misses, one lookup per message the stream holds
 * on the subject. Use it for messages whose loss matters (a TTS request nobody waits
 * on with a reply), not for every audio chunk.
 *
 * Requires `--allow-net=<nats>`, and the JetStream API permissions
 * `$JS.API.STREAM.INFO.<stream>`, `$JS.API.STREAM.MSG.GET.<stream>` (and
 * `$JS.API.STREAM.NAMES` when the stream is not named) for the user.
 *
 * @example Store a TTS request on AI_VOICE_STREAM, confirmed
 * ```ts ignore
 * import { publishConfirmed } from "@homelab/handler-base/confirmed-publish";
 * import { TTSRequestSchema } from "@homelab/handler-base/messages";
 *
 * const stored = await publishConfirmed(nc, "ai.voice.tts.request.s1", TTSRequestSchema, {
 *   text: "Hello.",
 * }, { msgId: "s1-0001", stream: "AI_VOICE_STREAM", timeoutMs: 5000 });
 * console.log(stored.stream, stored.seq, stored.publishes); // "AI_VOICE_STREAM" 42 1
 * ```
 *
 * @module
 */
import { type JetStreamManager, jetstreamManager, type MsgRequest } from "@nats-io/jetstream";
import type { Context } from "@opentelemetry/api";
import { abortable, delay } from "./async.ts";
import { BackendUnavailableError, TimeoutError } from "./errors.ts";
import { type DescMessage, encode, type MessageInitShape, type MessageShape } from "./messages.ts";
import { messageHeaders, type MsgHdrs, type NatsConnection } from "./natsutil.ts";

/** The header JetStream deduplicates on. */
const MSG_ID_HEADER = "Nats-Msg-Id";

/** Options of {@linkcode publishConfirmed}. */
export interface PublishConfirmedOptions {
  /**
   * The message id (`Nats-Msg-Id`): the request id, so that the message is
   * stored once however many times it is published within the duplicate window.
   *
   * @default a random UUID (retries of this call still never duplicate)
   */
  msgId?: string;
  /**
   * The stream that captures the subject.
   *
   * @default the stream found by the subject (one more API request)
   */
  stream?: string;
  /**
   * How long to keep trying, in milliseconds.
   *
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * How many times the message is looked up after each publish before it is
   * published again; the waits between looks double from 25 ms.
   *
   * @default 4
   */
  looksPerPublish?: number;
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

/** Where a confirmed message is stored. */
export interface PublishConfirmation {
  /** The stream. */
  readonly stream: string;
  /** The message's sequence in the stream. */
  readonly seq: number;
  /** How many times it was published (1 unless a look did not find it in time). */
  readonly publishes: number;
}

const FIRST_LOOK_MS = 25;

/**
 * Publishes a typed message onto a stream that sends no acks (such as
 * `AI_VOICE_STREAM`) and returns once the stream holds it; see the module
 * documentation for how.
 *
 * @typeParam Desc The message schema.
 * @param nc The connection.
 * @param subject The subject (captured by the stream).
 * @param schema The message's schema.
 * @param message The message or its fields.
 * @param options Message id, stream, time limit, signal, headers and trace context.
 * @returns The stream and the sequence that hold the message.
 * @throws {BackendUnavailableError} When no stream captures the subject, or JetStream is not enabled.
 * @throws {TimeoutError} When the message was not found stored before the time was up.
 *
 * @example Publish twice with one id: stored once
 * ```ts ignore
 * import { publishConfirmed } from "@homelab/handler-base/confirmed-publish";
 * import { TTSRequestSchema } from "@homelab/handler-base/messages";
 *
 * const first = await publishConfirmed(nc, "ai.voice.tts.request.s1", TTSRequestSchema, { text: "Hi." }, { msgId: "r-1" });
 * const again = await publishConfirmed(nc, "ai.voice.tts.request.s1", TTSRequestSchema, { text: "Hi." }, { msgId: "r-1" });
 * console.log(again.seq === first.seq); // true
 * ```
 */
export async function publishConfirmed<Desc extends DescMessage>(
  nc: NatsConnection,
  subject: string,
  schema: Desc,
  message: MessageShape<Desc> | MessageInitShape<Desc>,
  options: PublishConfirmedOptions = {},
): Promise<PublishConfirmation> {
  const { timeoutMs = 10_000, signal, looksPerPublish = 4 } = options;
  signal?.throwIfAborted();
  const deadline = performance.now() + timeoutMs;
  const msgId = options.msgId ?? crypto.randomUUID();
  const data = encode(schema, message);
  const headers = messageHeaders(schema.typeName, {
    ...(options.headers ? { headers: options.headers } : {}),
    ...(options.context ? { context: options.context } : {}),
  });
  headers.set(MSG_ID_HEADER, msgId);

  let jsm: JetStreamManager;
  let stream: string;
  let since: number;
  let first: number;
  try {
    jsm = await abortable(jetstreamManager(nc, { timeout: timeoutMs }), signal);
    stream = options.stream ?? await abortable(jsm.streams.find(subject), signal);
    const { state } = await abortable(jsm.streams.info(stream), signal);
    since = state.last_seq;
    first = state.first_seq;
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw new BackendUnavailableError("jetstream", {
      detail: `cannot find the stream of "${subject}": ${messageOf(error)}`,
      cause: error,
    });
  }

  let lastError: unknown;
  // A copy stored before `since` (this id published earlier, by a producer
  // that restarted) makes the stream drop the new publish as a duplicate: one
  // look over the whole subject finds it.
  let scannedAll = false;
  for (let publishes = 1;; publishes++) {
    nc.publish(subject, data, { headers });
    try {
      await abortable(nc.flush(), signal);
      for (let look = 0; look < looksPerPublish; look++) {
        let seq = await abortable(findStored(jsm, stream, subject, msgId, since), signal);
        if (seq === undefined && !scannedAll && first <= since) {
          scannedAll = true;
          seq = await abortable(findStored(jsm, stream, subject, msgId, first - 1), signal);
        }
        if (seq !== undefined) return { stream, seq, publishes };
        const waitMs = Math.min(FIRST_LOOK_MS * 2 ** look, deadline - performance.now());
        if (waitMs <= 0) break;
        await delay(waitMs, { signal });
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      // A lookup that failed (a reconnect, a leader change): publish again and look again.
      lastError = error;
    }
    if (performance.now() >= deadline) break;
  }
  throw new TimeoutError(
    `Cannot confirm a message on "${subject}": not found in stream ${stream} within ${timeoutMs} ms`,
    { cause: lastError },
  );
}

/**
 * The sequence of the message with this id on the subject, stored after
 * `since`, or undefined when the stream does not hold it (yet).
 */
async function findStored(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
  msgId: string,
  since: number,
): Promise<number | undefined> {
  let seq = since + 1;
  while (true) {
    // STREAM.MSG.GET takes `next_by_subj` with `seq` (the first stored message
    // on the subject at or after seq); nats.js types only its other forms.
    const query = { seq, next_by_subj: subject } as unknown as MsgRequest;
    const stored = await jsm.streams.getMessage(stream, query);
    if (!stored) return undefined;
    if (stored.header.get(MSG_ID_HEADER) === msgId) return stored.seq;
    seq = stored.seq + 1;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
