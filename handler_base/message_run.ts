/**
 * One message being handled: {@linkcode MessageRun} decodes, calls the
 * handler, encodes and replies, with a span, metrics, a deadline and the one
 * error boundary, and is itself the handler's `HandlerContext`.
 *
 * Allocation-free by design: this is the hot path of every message (see
 * docs/PERFORMANCE.md, "one object per message"). The run is a class, so the
 * context's helpers (`publish`, `request`, `addLogFields`) are methods on its
 * prototype instead of closures made per message; the signal, the child
 * logger, the subject (nats.js decodes it on first read) and its tokens are
 * built only when a handler asks for them; with telemetry off no span and no
 * attribute object is made, and without an incoming trace context the
 * handler is called directly instead of inside `context.with`; the reply
 * headers of an untraced reply are built once per endpoint; the deadline is
 * an entry in the service's one ticker ({@linkcode Deadlines}, an array
 * index, not a timer); the outcome of a success is one frozen object. A core
 * message is started with {@linkcode MessageRun.start}, which makes no
 * outcome promise (its reply is the outcome); the handler's promise is
 * awaited in one async method of the run instead of `then` with a closure
 * per callback.
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { OK } from "./message_run.ts";
 *
 * console.log(OK); // { ok: true }
 * ```
 *
 * @module
 */
import {
  type Context,
  context as otelContext,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  type Span,
  trace,
} from "@opentelemetry/api";
import type { Deadlines } from "./deadlines.ts";
import type { HandlerContext } from "./endpoint.ts";
import type { EndpointState } from "./endpoint_state.ts";
import { errorType, HandlerError, INTERNAL_ERROR_MESSAGE, type TimeoutError } from "./errors.ts";
import type { Delivery, Outcome } from "./internal.ts";
import type { LogFields, Logger } from "./log.ts";
import {
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
  MSG_TYPE_HEADER,
} from "./messages.ts";
import {
  messageHeaders,
  type MsgHdrs,
  type NatsConnection,
  publish,
  type PublishOptions,
  request,
  type RequestOptions,
} from "./natsutil.ts";
import {
  extractTraceContext,
  recordError,
  startClientSpan,
  startConsumerSpan,
  type Telemetry,
} from "./telemetry.ts";

/** What one message's run needs from its service. */
export interface Runtime {
  /** The service name. */
  readonly name: string;
  /** The connection. */
  readonly nc: NatsConnection;
  /** The service's logger. */
  readonly logger: Logger;
  /** Telemetry. */
  readonly telemetry: Telemetry;
  /** The service's deadlines. */
  readonly deadlines: Deadlines;
  /** Answers the reply subject with an `ErrorResponse`, if the message wants a reply. */
  replyError(delivery: Delivery, error: unknown): void;
}

/**
 * One message being handled, and the context its handler receives. A class,
 * so that the hot path allocates one object instead of a closure per helper;
 * the signal, the logger and the tokens are built only when asked for.
 */
export class MessageRun implements HandlerContext {
  readonly service: string;
  readonly headers: MsgHdrs | undefined;
  readonly span: Span;
  readonly attempt: number;
  readonly nc: NatsConnection;
  /** When the deadline passes, on the clock of the service's deadlines. */
  readonly deadlineAt: number;
  /** Where the service's deadlines keep this run while it is watched. */
  deadlineSlot = -1;
  readonly #runtime: Runtime;
  readonly #state: EndpointState;
  readonly #delivery: Delivery;
  readonly #release: () => void;
  readonly #spanContext: Context;
  readonly #started: number;
  readonly #attributes: Record<string, string> | undefined;
  #controller: AbortController | undefined;
  #expired: unknown;
  #done = false;
  #log: Logger | undefined;
  #logFields: LogFields | undefined;
  #tokens: readonly string[] | undefined;
  #resolve: ((outcome: Outcome) => void) | undefined;

  /**
   * Prepares the run of one delivery in a slot the caller holds.
   *
   * @param runtime The service's side.
   * @param state The endpoint as served.
   * @param delivery The message.
   * @param release Frees the slot, once the handler itself has returned.
   */
  constructor(runtime: Runtime, state: EndpointState, delivery: Delivery, release: () => void) {
    const { endpoint } = state;
    this.#runtime = runtime;
    this.#state = state;
    this.#delivery = delivery;
    this.#release = release;
    this.#started = runtime.deadlines.arrivalTime();
    this.deadlineAt = this.#started + state.timeoutMs;
    this.service = runtime.name;
    this.headers = delivery.headers;
    this.attempt = delivery.attempt;
    this.nc = runtime.nc;
    const parent = extractTraceContext(this.headers);
    if (runtime.telemetry.enabled) {
      this.span = startConsumerSpan(runtime.telemetry.tracer, {
        subject: delivery.subject,
        template: endpoint.subject,
        parent,
        messageBytes: delivery.data.length,
        consumerGroup: state.queueGroup,
      });
      this.#spanContext = trace.setSpan(parent, this.span);
    } else {
      // Nothing is exported: pass the caller's trace context on unchanged (its
      // spans stay connected downstream) and allocate no span of our own.
      this.span = parent === ROOT_CONTEXT ? NO_SPAN : trace.getSpan(parent) ?? NO_SPAN;
      this.#spanContext = parent;
    }
    this.#attributes = runtime.telemetry.enabled
      ? { "messaging.destination.name": endpoint.subject }
      : undefined;
    if (this.#attributes) runtime.telemetry.metrics.inFlight.add(1, this.#attributes);
  }

  /** Read from the delivery when asked for: nats.js decodes a subject on first read. */
  get subject(): string {
    return this.#delivery.subject;
  }

  get tokens(): readonly string[] {
    return this.#tokens ??= this.subject.split(".");
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#expired !== undefined) this.#controller.abort(this.#expired);
    }
    return this.#controller.signal;
  }

  get log(): Logger {
    return this.#log ??= this.#runtime.logger.child({
      subject: this.subject,
      endpoint: this.#state.endpoint.name,
      ...(this.#runtime.telemetry.enabled ? { trace_id: this.span.spanContext().traceId } : {}),
      ...this.#logFields,
    });
  }

  addLogFields(fields: LogFields): void {
    this.#logFields = { ...this.#logFields, ...fields };
    this.#log = undefined;
  }

  publish<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
    message: MessageShape<Desc> | MessageInitShape<Desc>,
    options: Omit<PublishOptions, "context"> = {},
  ): void {
    publish(this.nc, subject, schema, message, { ...options, context: this.#spanContext });
  }

  async request<Req extends DescMessage, Res extends DescMessage>(
    subject: string,
    requestSchema: Req,
    message: MessageShape<Req> | MessageInitShape<Req>,
    responseSchema: Res,
    options: Omit<RequestOptions, "context">,
  ): Promise<MessageShape<Res>> {
    const child = startClientSpan(this.#runtime.telemetry.tracer, `request ${subject}`, {
      parent: this.#spanContext,
      attributes: { "messaging.system": "nats", "messaging.destination.name": subject },
    });
    try {
      return await request(this.nc, subject, requestSchema, message, responseSchema, {
        signal: this.signal,
        ...options,
        context: trace.setSpan(this.#spanContext, child),
      });
    } catch (error) {
      recordError(child, error);
      throw error;
    } finally {
      child.end();
    }
  }

  /**
   * Runs the handler. Resolves with the outcome when the handler settles or
   * the deadline passes, whichever is first; the concurrency slot is freed
   * only when the handler itself has returned, so a handler that ignores its
   * signal cannot make the service take more work than its limit.
   */
  run(): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      this.#resolve = resolve;
      this.start();
    });
  }

  /**
   * Runs the handler as {@linkcode MessageRun.run} does, for a caller that
   * needs no outcome (a core message: the reply is the outcome), so no
   * promise is made for it.
   */
  start(): void {
    const { endpoint } = this.#state;
    const delivery = this.#delivery;
    const headers = this.headers;
    this.#runtime.deadlines.watch(this, this.#state.timeoutMs);
    let work: Promise<Uint8Array | undefined>;
    try {
      const msgType = headers === undefined ? undefined : headers.get(MSG_TYPE_HEADER) || undefined;
      // With telemetry off and no trace context in, the handler already runs
      // in the root context: entering it again would only cost.
      work = this.#spanContext === ROOT_CONTEXT && otelContext.active() === ROOT_CONTEXT
        ? endpoint.invoke(delivery.data, msgType, this)
        : otelContext.with(this.#spanContext, () => endpoint.invoke(delivery.data, msgType, this));
    } catch (error) {
      work = Promise.reject(error);
    }
    this.#settle(work);
  }

  /** Waits for the handler, then ends the run and frees the slot (no closure per message). */
  async #settle(work: Promise<Uint8Array | undefined>): Promise<void> {
    let reply: Uint8Array | undefined;
    try {
      reply = await work;
    } catch (error) {
      this.#fail(error);
      this.#release();
      return;
    }
    this.#succeed(reply);
    this.#release();
  }

  /**
   * Ends the wait: the deadline passed (no reason), or the service stops for
   * good (the reason).
   *
   * @param reason What the handler's signal is aborted with.
   */
  expire(reason?: TimeoutError): void {
    if (this.#expired !== undefined) return;
    const error = reason ?? this.#state.deadlineError();
    this.#expired = error;
    this.#controller?.abort(error);
    this.#fail(error);
  }

  #succeed(reply: Uint8Array | undefined): void {
    if (this.#done) return;
    if (reply && this.#delivery.wantsReply) {
      this.#delivery.respond(reply, replyHeaders(this.#state, this.#spanContext));
    }
    this.#finish(OK);
  }

  #fail(error: unknown): void {
    if (this.#done) return;
    const state = this.#state;
    const type = errorType(error);
    state.numErrors++;
    state.lastError = `${type}: ${
      error instanceof HandlerError ? error.message : INTERNAL_ERROR_MESSAGE
    }`;
    if (this.#attributes) {
      this.#runtime.telemetry.metrics.failed.add(1, { ...this.#attributes, "error.type": type });
    }
    recordError(this.span, error);
    this.log[type === "Internal" ? "error" : "warn"]("Cannot handle message", {
      error,
      error_type: type,
      attempt: this.attempt,
    });
    otelContext.with(this.#spanContext, () => this.#runtime.replyError(this.#delivery, error));
    this.#finish({ ok: false, error });
  }

  #finish(outcome: Outcome): void {
    this.#done = true;
    this.#runtime.deadlines.unwatch(this);
    const state = this.#state;
    const elapsed = this.#runtime.deadlines.now() - this.#started;
    state.numRequests++;
    state.processingTimeNs += Math.round(elapsed * 1e6);
    const attributes = this.#attributes;
    if (attributes) {
      const { metrics } = this.#runtime.telemetry;
      metrics.handled.add(1, attributes);
      metrics.inFlight.add(-1, attributes);
      metrics.duration.record(elapsed / 1000, attributes);
    }
    this.span.end();
    this.#resolve?.(outcome);
  }
}

/**
 * The headers of a reply: `Msg-Type` and the trace context. Without a valid
 * span context they are the same for every reply of an endpoint, so they are
 * built once (nats.js encodes headers when it publishes, never later).
 */
function replyHeaders(state: EndpointState, spanContext: Context): MsgHdrs {
  const current = spanContext === ROOT_CONTEXT ? undefined : trace.getSpanContext(spanContext);
  if (current && trace.isSpanContextValid(current)) {
    return messageHeaders(state.endpoint.responseType ?? "", { context: spanContext });
  }
  return state.replyHeaders ??= encodedOnce(
    messageHeaders(state.endpoint.responseType ?? "", { context: ROOT_CONTEXT }),
  );
}

/**
 * The same headers, encoded once: nats.js encodes a message's headers on every
 * publish (about 2 µs, as much as decoding a small request), and these never change.
 */
function encodedOnce(headers: MsgHdrs): MsgHdrs {
  const bytes = (headers as MsgHdrs & { encode(): Uint8Array }).encode();
  return Object.assign(headers, { encode: () => bytes });
}

/** The span of a message when telemetry is off and no trace context came in. */
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The outcome of every message handled successfully. */
export const OK: Outcome = Object.freeze({ ok: true });
