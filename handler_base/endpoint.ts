/**
 * Endpoint definitions and the contract of a handler, stated once:
 *
 * - `handle(request, ctx)` returns the reply message, or nothing when the
 *   endpoint has no reply type. The runtime sends it on the reply subject when
 *   the incoming message has one.
 * - Throwing answers the reply subject with an `ErrorResponse` whose `type`
 *   comes from the error (`HandlerError` of `errors.ts`) or is `Internal`; the
 *   message is never a stack trace. A payload that does not decode is
 *   answered `InvalidMessage` without calling the handler.
 * - `ctx.signal` fires when the endpoint's deadline passes or the service
 *   stops for good; pass it to every call that waits.
 * - In JetStream mode (an endpoint with a `stream`, in a service whose
 *   `consumeMode` is `"jetstream"`) the message comes from a durable pull
 *   consumer instead of a core subscription and has no reply subject: a
 *   returned value means "ack" (once the outputs are flushed), a retryable
 *   error means "nak with backoff", and any other error, or the last allowed
 *   delivery, means "dead-letter and terminate". `ctx.attempt` counts the
 *   deliveries. See `consumer.ts`.
 *
 * An endpoint is a plain value: `service.ts` serves it over NATS, and
 * `callEndpoint` of the testing module calls it in-process.
 *
 * Needs no permission.
 *
 * @example An endpoint, called in-process
 * ```ts
 * import { defineEndpoint } from "@homelab/handler-base/endpoint";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { callEndpoint } from "@homelab/handler-base/testing";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * const { reply } = await callEndpoint(echo, { text: "hi" });
 * console.log(reply?.message); // "hi"
 * ```
 *
 * @module
 */
import type { Span } from "@opentelemetry/api";
import type { LogFields, Logger } from "./log.ts";
import {
  create,
  decode,
  type DescMessage,
  EmptySchema,
  encode,
  type MessageInitShape,
  type MessageShape,
} from "./messages.ts";
import type { MsgHdrs, NatsConnection, PublishOptions, RequestOptions } from "./natsutil.ts";

/** What a handler receives beside the decoded request. */
export interface HandlerContext {
  /** The service name. */
  readonly service: string;
  /** The subject the message arrived on. */
  readonly subject: string;
  /** The subject's dot-separated tokens (the session id is often the last). */
  readonly tokens: readonly string[];
  /** The message headers, if any. */
  readonly headers: MsgHdrs | undefined;
  /** Fires when the deadline passes or the service stops for good. */
  readonly signal: AbortSignal;
  /** A logger with the subject, the trace id and any {@linkcode HandlerContext.addLogFields} on every line. */
  readonly log: Logger;
  /**
   * Adds fields (a request or session id) to every later line of `log`,
   * including the runtime's own line when the handler fails.
   */
  addLogFields(fields: LogFields): void;
  /** The span of this message; children started inside `handle` nest under it. */
  readonly span: Span;
  /** Which delivery of this message this is (1 in core mode). */
  readonly attempt: number;
  /** The connection, for anything the helpers below do not cover. */
  readonly nc: NatsConnection;
  /**
   * Publishes a typed message with `Msg-Type` and this message's trace context.
   * Messages published through one context leave in call order.
   */
  publish<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
    message: MessageShape<Desc> | MessageInitShape<Desc>,
    options?: Omit<PublishOptions, "context">,
  ): void;
  /**
   * Sends a typed request from inside the handler: a CLIENT span child of
   * this message's span, its trace context in the headers, and this
   * message's signal unless another is given. Throws as natsutil `request`.
   */
  request<Req extends DescMessage, Res extends DescMessage>(
    subject: string,
    requestSchema: Req,
    message: MessageShape<Req> | MessageInitShape<Req>,
    responseSchema: Res,
    options: Omit<RequestOptions, "context">,
  ): Promise<MessageShape<Res>>;
}

/** The definition of one endpoint. */
export interface EndpointOptions<Req extends DescMessage, Res extends DescMessage> {
  /** The subject, wildcards allowed (`ai.voice.tts.request.>`). */
  subject: string;
  /** A name for stats and logs. @default the subject */
  name?: string;
  /**
   * The queue group; `false` for none (every replica gets every message).
   *
   * @default the service name
   */
  queue?: string | false;
  /** The request's schema. */
  request: Req;
  /** The reply's schema; omit for endpoints that never reply. @default undefined */
  response?: Res;
  /** The business logic; see the module doc for the reply and ack rules. */
  handle(
    request: MessageShape<Req>,
    ctx: HandlerContext,
  ): Promise<MessageShape<Res> | MessageInitShape<Res> | void>;
  /**
   * How many messages this endpoint handles at once on one replica.
   *
   * @default the service's `concurrency`
   */
  concurrency?: number;
  /**
   * How many received messages may wait for a free slot; beyond it a request
   * is answered `Overloaded` at once (never buffered without bound).
   *
   * @default 16 times the concurrency
   */
  maxPending?: number;
  /**
   * The deadline of one message, in milliseconds.
   *
   * @default the service's `timeoutMs`
   */
  timeoutMs?: number;
  /**
   * The JetStream stream that stores this endpoint's subject (a name of
   * `STREAMS` in `streams.ts`). When the service runs in JetStream consume
   * mode, the endpoint reads from a durable pull consumer on this stream
   * instead of a core subscription. Leave it unset for request-reply-only
   * endpoints (`ai.voice.tts.voices.list`): they stay core in both modes.
   *
   * @default undefined (always core)
   */
  stream?: string;
  /**
   * The name of the durable consumer in JetStream mode. Two endpoints of one
   * service on the same stream need different names.
   *
   * @default the service name
   */
  durable?: string;
}

/**
 * An endpoint with its types erased, ready to serve. Build it with
 * {@linkcode defineEndpoint}.
 */
export interface Endpoint {
  /** The subject. */
  readonly subject: string;
  /** The name for stats and logs. */
  readonly name: string;
  /** The queue group option as declared. */
  readonly queue: string | false | undefined;
  /** The full protobuf name of the request type. */
  readonly requestType: string;
  /** The full protobuf name of the reply type, if it has one. */
  readonly responseType: string | undefined;
  /** The declared concurrency, if any. */
  readonly concurrency: number | undefined;
  /** The declared pending bound, if any. */
  readonly maxPending: number | undefined;
  /** The declared deadline, if any. */
  readonly timeoutMs: number | undefined;
  /** The stream that stores the subject, if any (see {@linkcode EndpointOptions.stream}). */
  readonly stream: string | undefined;
  /** The declared durable consumer name, if any. */
  readonly durable: string | undefined;
  /**
   * Decodes, handles and encodes one payload. Throws what the handler threw;
   * a payload that does not decode throws a `DecodeError`.
   */
  invoke(data: Uint8Array, msgType: string | undefined, ctx: HandlerContext): Promise<
    Uint8Array | undefined
  >;
}

/**
 * An endpoint that keeps its schemas' types, as {@linkcode defineEndpoint}
 * returns it: a test can call it in-process with typed messages
 * (`callEndpoint` of the testing module).
 */
export interface TypedEndpoint<Req extends DescMessage, Res extends DescMessage> extends Endpoint {
  /** The request's schema. */
  readonly requestSchema: Req;
  /** The reply's schema, if the endpoint replies. */
  readonly responseSchema: Res | undefined;
}

/**
 * Declares a typed endpoint. An endpoint whose `request` is `EmptySchema`
 * takes no payload: it ignores whatever a request carries.
 *
 * @typeParam Req The request schema.
 * @typeParam Res The reply schema.
 * @param options Subject, schemas, handler and limits.
 * @returns The endpoint, for `createService` (or `callEndpoint` in a test).
 *
 * @example
 * ```ts
 * import { defineEndpoint } from "@homelab/handler-base/endpoint";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * const endpoint = defineEndpoint({
 *   subject: "demo.status",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * console.log(endpoint.responseType); // "messages.v1.TTSStatus"
 * ```
 */
export function defineEndpoint<Req extends DescMessage, Res extends DescMessage>(
  options: EndpointOptions<Req, Res>,
): TypedEndpoint<Req, Res> {
  const { request, response, handle } = options;
  const takesNoPayload = request.typeName === EmptySchema.typeName;
  const encodeResult = (
    result: MessageShape<Res> | MessageInitShape<Res> | void,
  ): Uint8Array | undefined =>
    !response || result === undefined ? undefined : encode(response, result);
  return {
    requestSchema: request,
    responseSchema: response,
    subject: options.subject,
    name: options.name ?? options.subject,
    queue: options.queue,
    requestType: request.typeName,
    responseType: response?.typeName,
    concurrency: options.concurrency,
    maxPending: options.maxPending,
    timeoutMs: options.timeoutMs,
    stream: options.stream,
    durable: options.durable,
    // Not an async function: one promise per message (the handler's, and
    // the one `then` derives) instead of an async frame around it.
    invoke(data, msgType, ctx) {
      try {
        const decoded = takesNoPayload
          ? create(request) as MessageShape<Req>
          : decode(request, data, msgType === undefined ? undefined : { msgType });
        return Promise.resolve(handle(decoded, ctx)).then(encodeResult);
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}
