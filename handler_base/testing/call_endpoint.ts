/**
 * Calls an endpoint in-process, the way Hono's `app.request()` calls a route:
 * no NATS server, a context that records what the handler publishes and
 * requests, and a deadline that bounds the call even when the handler
 * ignores its signal. The request goes through the endpoint's real decode
 * and the reply through its real encode, so the bytes are those of the wire.
 *
 * Needs no permission.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { callEndpoint } from "@homelab/handler-base/testing";
 *
 * const shout = defineEndpoint({
 *   subject: "demo.shout.>",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle(req, ctx) {
 *     ctx.publish(`demo.heard.${ctx.tokens.at(-1)}`, TTSStatusSchema, { status: "heard" });
 *     return Promise.resolve({ status: "ok", message: req.text.toUpperCase() });
 *   },
 * });
 * const result = await callEndpoint(shout, { text: "hi" }, { subject: "demo.shout.s1" });
 * assert.equal(result.reply?.message, "HI");
 * assert.equal(result.published[0]?.subject, "demo.heard.s1");
 * ```
 *
 * @module
 */
import { INVALID_SPAN_CONTEXT, type Span, trace } from "@opentelemetry/api";
import { TimeoutError, toErrorResponse } from "../errors.ts";
import type { HandlerContext, TypedEndpoint } from "../handler.ts";
import { createLogger, type LogFields, type Logger } from "../log.ts";
import {
  decode,
  type DescMessage,
  encode,
  type ErrorResponse,
  type MessageInitShape,
  type MessageShape,
  MSG_TYPE_HEADER,
} from "../messages.ts";
import {
  messageHeaders,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  type PublishOptions,
  type RequestOptions,
} from "../natsutil.ts";

/** One message a handler published through its context. */
export interface PublishedMessage {
  /** The subject. */
  readonly subject: string;
  /** The full protobuf name of its type (its `Msg-Type` header). */
  readonly typeName: string;
  /** The encoded payload, as it would go on the wire. */
  readonly data: Uint8Array;
  /** The headers it would carry. */
  readonly headers: MsgHdrs;
}

/** One request a handler sent through `ctx.request`. */
export interface SentRequest extends PublishedMessage {
  /** The encoded answer it got, or undefined when none came. */
  readonly answer: Uint8Array | undefined;
}

/** Options of {@linkcode callEndpoint}. */
export interface CallEndpointOptions {
  /**
   * The subject the message arrives on.
   *
   * @default the endpoint's subject with each wildcard token replaced by `test`
   */
  subject?: string;
  /**
   * Headers of the incoming message. A `Msg-Type` header here is checked
   * against the request type, as on the wire.
   *
   * @default none
   */
  headers?: Record<string, string>;
  /**
   * Which delivery this is (`ctx.attempt`).
   *
   * @default 1
   */
  attempt?: number;
  /**
   * The deadline of the call in milliseconds: `ctx.signal` fires then, and
   * the call ends with a `TimeoutError` even if the handler ignores it.
   *
   * @default the endpoint's `timeoutMs`, else 10000
   */
  timeoutMs?: number;
  /**
   * Aborts `ctx.signal` (a service stopping).
   *
   * @default none
   */
  signal?: AbortSignal;
  /**
   * Answers what the handler sends with `ctx.request`: the encoded answer,
   * or undefined for "no responders".
   *
   * @default every request has no responders
   */
  respond?: (
    subject: string,
    data: Uint8Array,
    typeName: string,
  ) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * The service name in the context.
   *
   * @default "test"
   */
  service?: string;
  /**
   * The logger of `ctx.log`.
   *
   * @default one that keeps every line in {@linkcode CallResult.logs}
   */
  logger?: Logger;
}

/** What one in-process call did. */
export interface CallResult<Res extends DescMessage> {
  /** The decoded reply, when the handler returned one. */
  readonly reply: MessageShape<Res> | undefined;
  /** What the handler threw (a decode failure included), or undefined. */
  readonly error: unknown;
  /** The `ErrorResponse` the wire would carry for {@linkcode CallResult.error}. */
  readonly errorResponse: ErrorResponse | undefined;
  /** What the handler published, in order. */
  readonly published: readonly PublishedMessage[];
  /** What the handler requested, in order. */
  readonly requests: readonly SentRequest[];
  /** The log lines, parsed, when the default logger was used. */
  readonly logs: readonly LogFields[];
  /**
   * The published messages of one type, decoded, optionally on one subject.
   *
   * @param schema The type.
   * @param subject Only this subject.
   * @returns The decoded messages with their subjects.
   */
  messages<Desc extends DescMessage>(
    schema: Desc,
    subject?: string,
  ): Array<MessageShape<Desc> & { subject: string }>;
}

/**
 * Calls an endpoint in-process with a recording context.
 *
 * @typeParam Req The request schema.
 * @typeParam Res The reply schema.
 * @param endpoint The endpoint, as {@linkcode defineEndpoint} returned it.
 * @param request The request message.
 * @param options Subject, headers, deadline, how to answer requests.
 * @returns What the call did; it never throws what the handler threw.
 *
 * @example A handler that fails
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { InvalidArgumentError } from "@homelab/handler-base/errors";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { callEndpoint } from "@homelab/handler-base/testing";
 *
 * const strict = defineEndpoint({
 *   subject: "demo.strict",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: () => Promise.reject(new InvalidArgumentError("Cannot speak: no text")),
 * });
 * const { errorResponse } = await callEndpoint(strict, {});
 * assert.deepEqual([errorResponse?.type, errorResponse?.message], ["InvalidArgument", "Cannot speak: no text"]);
 * ```
 */
export async function callEndpoint<Req extends DescMessage, Res extends DescMessage>(
  endpoint: TypedEndpoint<Req, Res>,
  request: MessageShape<Req> | MessageInitShape<Req>,
  options: CallEndpointOptions = {},
): Promise<CallResult<Res>> {
  const logs: LogFields[] = [];
  const logger = options.logger ??
    createLogger({
      service: options.service ?? "test",
      level: "debug",
      write: (line) => logs.push(JSON.parse(line)),
    });
  const timeoutMs = options.timeoutMs ?? endpoint.timeoutMs ?? 10_000;
  const deadline = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([deadline.signal, options.signal])
    : deadline.signal;
  const ctx = new RecordingContext(
    options.subject ?? endpoint.subject.replace(/(^|\.)(\*|>)(?=\.|$)/g, "$1test"),
    options,
    logger,
    signal,
  );
  const data = encode(endpoint.requestSchema, request);
  const msgType = options.headers?.[MSG_TYPE_HEADER];
  let reply: MessageShape<Res> | undefined;
  let error: unknown;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new TimeoutError(`Cannot finish "${endpoint.name}": ${timeoutMs} ms passed`);
      deadline.abort(error);
      reject(error);
    }, timeoutMs);
  });
  try {
    const bytes = await Promise.race([endpoint.invoke(data, msgType, ctx), expired]);
    if (bytes && endpoint.responseSchema) reply = decode(endpoint.responseSchema, bytes);
  } catch (thrown) {
    error = thrown;
  } finally {
    clearTimeout(timer);
  }
  const { published, requests } = ctx;
  return {
    reply,
    error,
    errorResponse: error === undefined ? undefined : toErrorResponse(error),
    published,
    requests,
    logs,
    messages(schema, subject) {
      return published
        .filter((m) => m.typeName === schema.typeName && (!subject || m.subject === subject))
        .map((m) => Object.assign(decode(schema, m.data), { subject: m.subject }));
    },
  };
}

/** The span of an in-process call: nothing is exported. */
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** A {@linkcode HandlerContext} that records instead of sending. */
class RecordingContext implements HandlerContext {
  readonly service: string;
  readonly subject: string;
  readonly tokens: readonly string[];
  readonly headers: MsgHdrs | undefined;
  readonly signal: AbortSignal;
  readonly span: Span = NO_SPAN;
  readonly attempt: number;
  readonly published: PublishedMessage[] = [];
  readonly requests: SentRequest[] = [];
  #log: Logger;
  readonly #respond: CallEndpointOptions["respond"];

  constructor(subject: string, options: CallEndpointOptions, logger: Logger, signal: AbortSignal) {
    this.service = options.service ?? "test";
    this.subject = subject;
    this.tokens = subject.split(".");
    this.attempt = options.attempt ?? 1;
    this.signal = signal;
    this.#respond = options.respond;
    this.#log = logger.child({ subject });
    if (options.headers) {
      const headers = messageHeaders("");
      headers.delete(MSG_TYPE_HEADER);
      for (const [key, value] of Object.entries(options.headers)) headers.set(key, value);
      this.headers = headers;
    }
  }

  get log(): Logger {
    return this.#log;
  }

  get nc(): NatsConnection {
    throw new Error("Cannot use ctx.nc in an in-process call: use ctx.publish or ctx.request");
  }

  addLogFields(fields: LogFields): void {
    this.#log = this.#log.child(fields);
  }

  publish<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
    message: MessageShape<Desc> | MessageInitShape<Desc>,
    options: Omit<PublishOptions, "context"> = {},
  ): void {
    this.published.push({
      subject,
      typeName: schema.typeName,
      data: encode(schema, message),
      headers: messageHeaders(schema.typeName, options.headers ? { headers: options.headers } : {}),
    });
  }

  async request<Q extends DescMessage, R extends DescMessage>(
    subject: string,
    requestSchema: Q,
    message: MessageShape<Q> | MessageInitShape<Q>,
    responseSchema: R,
    _options: Omit<RequestOptions, "context">,
  ): Promise<MessageShape<R>> {
    const data = encode(requestSchema, message);
    const answer = await this.#respond?.(subject, data, requestSchema.typeName);
    this.requests.push({
      subject,
      typeName: requestSchema.typeName,
      data,
      headers: messageHeaders(requestSchema.typeName),
      answer,
    });
    if (!answer) throw new NoRespondersError(subject);
    return decode(responseSchema, answer);
  }
}
