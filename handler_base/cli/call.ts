/**
 * One request to a service, answered either on the reply subject or on the
 * contract's per-id result subject, whichever comes first. That covers both
 * ways a service may consume (SYSTEM.md section 4): in core mode it answers
 * the reply subject; when a JetStream stream captures the request subject,
 * the reply is the stream's publish acknowledgement (or nothing, for a stream
 * created with `no_ack`) and the result arrives only on the per-id subject.
 *
 * @example
 * ```ts ignore
 * import { callService } from "./call.ts";
 * import { GreetingRequestSchema, GreetingResponseSchema } from "../messages.ts";
 *
 * const greeting = await callService(nc, {
 *   subject: "ai.chat.user.ada.greeting.request",
 *   requestSchema: GreetingRequestSchema,
 *   message: { userId: "ada", username: "ada" },
 *   responseSchema: GreetingResponseSchema,
 *   resultSubject: "ai.chat.user.ada.greeting.response",
 *   timeoutMs: 30_000,
 * });
 * ```
 *
 * @module
 */
import { abortable } from "../async.ts";
import { DecodeError } from "../errors.ts";
import type { DescMessage, MessageInitShape, MessageShape } from "../messages.ts";
import {
  decodeMsg,
  type MsgHdrs,
  type NatsConnection,
  request,
  RequestTimeoutError,
} from "../natsutil.ts";

/** Options of {@linkcode callService}. */
export interface CallOptions<Req extends DescMessage, Res extends DescMessage> {
  /** Where the request goes. */
  subject: string;
  /** The request's schema. */
  requestSchema: Req;
  /** The request. */
  message: MessageShape<Req> | MessageInitShape<Req>;
  /** The answer's schema (on both the reply and the result subject). */
  responseSchema: Res;
  /** The per-id subject the service also publishes the answer on. @default none */
  resultSubject?: string;
  /** How long to wait for the answer, in milliseconds. */
  timeoutMs: number;
  /** Aborts the wait. @default undefined */
  signal?: AbortSignal;
  /** Extra headers (such as `Nats-Msg-Id`). @default none */
  headers?: MsgHdrs;
}

/**
 * Sends a request and resolves with the first answer, on the reply subject or
 * on `resultSubject`. A reply that does not decode as the answer is taken for
 * a JetStream publish acknowledgement (JSON, which never decodes as protobuf:
 * its first byte `{` opens a group that no `|` byte ever closes), and the
 * answer is then awaited on `resultSubject`.
 *
 * @typeParam Req The request schema.
 * @typeParam Res The answer schema.
 * @param nc The connection.
 * @param options The request, the answer's schema and where it may come.
 * @returns The answer.
 * @throws {NoRespondersError} When nothing subscribes to the subject.
 * @throws {RequestTimeoutError} When no answer comes in time.
 * @throws {RemoteError} When the reply is an `ErrorResponse`.
 *
 * @example
 * ```ts ignore
 * const voices = await callService(nc, {
 *   subject: "ai.voice.tts.voices.list",
 *   requestSchema: EmptySchema,
 *   message: {},
 *   responseSchema: TTSVoiceListResponseSchema,
 *   timeoutMs: 5000,
 * });
 * ```
 */
export async function callService<Req extends DescMessage, Res extends DescMessage>(
  nc: NatsConnection,
  options: CallOptions<Req, Res>,
): Promise<MessageShape<Res>> {
  const { subject, resultSubject, timeoutMs, responseSchema } = options;
  const done = new AbortController();
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([done.signal, ...(options.signal ? [options.signal] : [])]);
  let resolveResult: (value: MessageShape<Res>) => void = () => {};
  let rejectResult: (error: unknown) => void = () => {};
  const viaResult = new Promise<MessageShape<Res>>((resolve, reject) => {
    resolveResult = resolve;
    rejectResult = reject;
  });
  const sub = resultSubject
    ? nc.subscribe(resultSubject, {
      max: 1,
      callback: (error, msg) => {
        if (error) rejectResult(error);
        else {
          try {
            resolveResult(decodeMsg(responseSchema, msg));
          } catch (decodeError) {
            rejectResult(decodeError);
          }
        }
      },
    })
    : undefined;
  const viaReply = request(nc, subject, options.requestSchema, options.message, responseSchema, {
    timeout: timeoutMs,
    signal,
    ...(options.headers ? { headers: options.headers } : {}),
  }).catch((error) => {
    // Acknowledged by a stream that stored the request: the answer comes on the result subject.
    if (!sub || !(error instanceof DecodeError)) throw error;
    return abortable(viaResult, AbortSignal.any([deadline, signal])).catch((waitError) => {
      throw deadline.aborted ? new RequestTimeoutError(resultSubject!, timeoutMs) : waitError;
    });
  });
  try {
    return await (sub ? Promise.race([viaReply, viaResult]) : viaReply);
  } finally {
    done.abort();
    sub?.unsubscribe();
  }
}
