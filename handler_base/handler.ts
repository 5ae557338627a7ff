/**
 * Typed NATS endpoints and the runtime that serves them: decode, handle,
 * encode and reply, with a span and metrics per message, one error boundary,
 * a bounded concurrency per endpoint, deadlines, and a graceful stop.
 *
 * The contract of a handler, stated once:
 * - `handle(request, ctx)` returns the reply message, or nothing when the
 *   endpoint has no reply type. The runtime sends it on the reply subject when
 *   the incoming message has one.
 * - Throwing answers the reply subject with an `ErrorResponse` whose `type`
 *   comes from the error ({@linkcode HandlerError}) or is `Internal`; the
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
 *   deliveries. See `jetstream.ts`.
 *
 * Requires what `natsutil` requires (`--allow-net=<nats>`).
 *
 * @example A service with one endpoint
 * ```ts ignore
 * import { defineEndpoint, createService } from "@homelab/handler-base/handler";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * const service = createService(nc, { name: "demo", endpoints: [echo], logger });
 * await service.start();
 * ```
 *
 * @module
 */
import type { Subscription } from "@nats-io/nats-core";
import {
  type Context,
  context as otelContext,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  type Span,
  trace,
} from "@opentelemetry/api";
import {
  errorType,
  HandlerError,
  INTERNAL_ERROR_MESSAGE,
  TimeoutError,
  toErrorResponse,
} from "./errors.ts";
import type { LogFields, Logger } from "./log.ts";
import {
  create,
  decode,
  type DescMessage,
  EmptySchema,
  encode,
  ErrorResponseSchema,
  type MessageInitShape,
  type MessageShape,
  MSG_TYPE_HEADER,
} from "./messages.ts";
import {
  messageHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  publish,
  type PublishOptions,
  request,
  type RequestOptions,
} from "./natsutil.ts";
import {
  createTelemetry,
  extractTraceContext,
  recordError,
  startClientSpan,
  startConsumerSpan,
  type Telemetry,
} from "./telemetry.ts";

/**
 * How a service takes the messages of endpoints that declare a `stream`: a
 * core queue subscription, or a durable JetStream pull consumer.
 *
 * @example
 * ```ts
 * import { CONSUME_MODES } from "@homelab/handler-base/handler";
 *
 * console.log(CONSUME_MODES.join(", ")); // core, jetstream
 * ```
 */
export const CONSUME_MODES = ["core", "jetstream"] as const;

/** One of {@linkcode CONSUME_MODES}. */
export type ConsumeMode = typeof CONSUME_MODES[number];

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
   * `STREAMS` in `jetstream.ts`). When the service runs in JetStream consume
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
 * @returns The endpoint, for {@linkcode createService}.
 *
 * @example
 * ```ts
 * import { defineEndpoint } from "@homelab/handler-base/handler";
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
    async invoke(data, msgType, ctx) {
      const decoded = takesNoPayload
        ? create(request) as MessageShape<Req>
        : decode(request, data, { msgType });
      const result = await handle(decoded, ctx);
      if (!response || result === undefined) return undefined;
      return encode(response, result);
    },
  };
}

/** One received message, whatever brought it (core subscription or JetStream). */
export interface Delivery {
  /** The subject it arrived on. */
  readonly subject: string;
  /** The payload. */
  readonly data: Uint8Array;
  /** The headers, if any. */
  readonly headers: MsgHdrs | undefined;
  /** Which delivery of this message this is. */
  readonly attempt: number;
  /** Sends the reply, when the message wants one. */
  respond(data: Uint8Array, headers: MsgHdrs): void;
  /** Whether the message wants a reply. */
  readonly wantsReply: boolean;
}

/** How handling one delivery ended. */
export type Outcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: unknown };

/** Counters of one endpoint, in the shape of the NATS micro protocol. */
export interface EndpointStats {
  /** The endpoint's name. */
  readonly name: string;
  /** The subject. */
  readonly subject: string;
  /** The queue group, or "" for none; the durable consumer's name in JetStream mode. */
  readonly queueGroup: string;
  /** Messages handled, failed or not. */
  readonly numRequests: number;
  /** Messages that failed. */
  readonly numErrors: number;
  /** Total handling time in nanoseconds. */
  readonly processingTimeNs: number;
  /** Average handling time in nanoseconds. */
  readonly averageProcessingTimeNs: number;
  /** The last failure as "type: message", or "". */
  readonly lastError: string;
  /** Messages being handled now. */
  readonly inFlight: number;
  /** Messages waiting for a slot now. */
  readonly pending: number;
  /** How many messages the endpoint handles at once. */
  readonly concurrency: number;
}

/** Options of {@linkcode createService}. */
export interface ServiceOptions {
  /** The service name: queue group, connection name, span and log field. */
  name: string;
  /** The service version. @default "0.1.0" */
  version?: string;
  /** The endpoints to serve. */
  endpoints: readonly Endpoint[];
  /** The logger. */
  logger: Logger;
  /** Telemetry. @default createTelemetry({ serviceName: name }) */
  telemetry?: Telemetry;
  /** Default concurrency of each endpoint. @default 16 */
  concurrency?: number;
  /** Default deadline of each message, in milliseconds. @default 60000 */
  timeoutMs?: number;
  /**
   * How endpoints that declare a `stream` take their messages. In
   * `"jetstream"` mode they get no core subscription: `consumeJetStream()`
   * of `jetstream.ts` (which `runService` calls) feeds them through
   * {@linkcode Service.dispatch}.
   *
   * @default "core"
   */
  consumeMode?: ConsumeMode;
}

/** Options of {@linkcode Service.stop}. */
export interface StopOptions {
  /**
   * How long in-flight handlers may take to finish before their signal is
   * aborted, in milliseconds.
   *
   * @default 10000
   */
  graceMs?: number;
}

/** A running set of endpoints on one connection. */
export interface Service extends AsyncDisposable {
  /** The service name. */
  readonly name: string;
  /** The service version. */
  readonly version: string;
  /** The connection. */
  readonly nc: NatsConnection;
  /** The logger. */
  readonly logger: Logger;
  /** The endpoints as declared. */
  readonly endpoints: readonly Endpoint[];
  /** How endpoints with a `stream` take their messages. */
  readonly consumeMode: ConsumeMode;
  /**
   * The endpoints fed by JetStream (those with a `stream`, in JetStream
   * mode); {@linkcode Service.start} does not subscribe them.
   */
  readonly jetstreamEndpoints: readonly Endpoint[];
  /** Subscribes every other endpoint with a core (queue) subscription. */
  start(): Promise<void>;
  /** Whether every core endpoint is subscribed and the service is not stopping. */
  readonly ready: boolean;
  /** Whether {@linkcode Service.stop} was called. */
  readonly stopping: boolean;
  /**
   * Hands one delivery to an endpoint, waiting while the endpoint is at its
   * concurrency limit, and resolves with how handling ended. Sources other
   * than core subscriptions (JetStream) use it.
   */
  dispatch(endpoint: Endpoint, delivery: Delivery): Promise<Outcome>;
  /** Stops taking messages and waits for in-flight ones (see {@linkcode StopOptions}). */
  stop(options?: StopOptions): Promise<void>;
  /** Counters per endpoint, in the order of {@linkcode Service.endpoints}. */
  stats(): EndpointStats[];
  /**
   * Registers a message source to stop with the service (a JetStream
   * consumer). `fn` is called when stopping begins: it should stop taking
   * messages and resolve once its own in-flight work (acks) is done. The
   * service waits for it as for in-flight handlers, within the grace period.
   */
  onStop(fn: () => Promise<void>): void;
}

interface EndpointState {
  readonly endpoint: Endpoint;
  readonly concurrency: number;
  readonly maxPending: number;
  readonly timeoutMs: number;
  readonly queueGroup: string;
  readonly waiting: Array<() => void>;
  inFlight: number;
  numRequests: number;
  numErrors: number;
  processingTimeNs: number;
  lastError: string;
  subscription?: Subscription;
  replyHeaders?: MsgHdrs;
}

/**
 * Creates a service over a connection. Nothing is subscribed until
 * {@linkcode Service.start}.
 *
 * @param nc The connection.
 * @param options Name, endpoints, logger and defaults.
 * @returns The service.
 * @throws {TypeError} When two JetStream endpoints would share one durable consumer.
 *
 * @example
 * ```ts ignore
 * import { createService } from "@homelab/handler-base/handler";
 *
 * await using service = createService(nc, { name: "demo", endpoints: [echo], logger });
 * await service.start();
 * ```
 */
export function createService(nc: NatsConnection, options: ServiceOptions): Service {
  const { name, logger, endpoints } = options;
  const telemetry = options.telemetry ?? createTelemetry({ serviceName: name });
  const defaultConcurrency = options.concurrency ?? 16;
  const defaultTimeoutMs = options.timeoutMs ?? 60_000;
  const consumeMode = options.consumeMode ?? "core";
  const version = options.version ?? "0.1.0";
  const jetstreamEndpoints = consumeMode === "jetstream"
    ? endpoints.filter((e) => e.stream !== undefined)
    : [];
  checkDurables(name, jetstreamEndpoints);
  // One ticker per service checks the deadlines of in-flight messages: a timer
  // per message would cost more than the rest of the dispatch. It runs only
  // while messages are in flight, and stops at the first idle tick.
  const deadlines = new Set<MessageRun>();
  let ticker: ReturnType<typeof setInterval> | undefined;
  const tickMs = Math.max(1, Math.min(DEADLINE_TICK_MS, options.timeoutMs ?? DEADLINE_TICK_MS));
  function checkDeadlines(): void {
    if (deadlines.size === 0) {
      clearInterval(ticker);
      ticker = undefined;
      return;
    }
    const now = performance.now();
    for (const run of deadlines) {
      if (now >= run.deadlineAt) run.expire(run.deadlineError());
    }
  }
  const stopHooks: Array<() => Promise<void>> = [];
  const idle = new Set<() => void>();
  let started = false;
  let stopping = false;

  const states = new Map<Endpoint, EndpointState>();
  for (const endpoint of endpoints) {
    const concurrency = endpoint.concurrency ?? defaultConcurrency;
    states.set(endpoint, {
      endpoint,
      concurrency,
      maxPending: endpoint.maxPending ?? concurrency * 16,
      timeoutMs: endpoint.timeoutMs ?? defaultTimeoutMs,
      queueGroup: jetstreamEndpoints.includes(endpoint)
        ? endpoint.durable ?? name
        : endpoint.queue === false
        ? ""
        : endpoint.queue ?? name,
      waiting: [],
      inFlight: 0,
      numRequests: 0,
      numErrors: 0,
      processingTimeNs: 0,
      lastError: "",
    });
  }

  function stateOf(endpoint: Endpoint): EndpointState {
    const state = states.get(endpoint);
    if (!state) throw new Error(`Cannot dispatch: endpoint "${endpoint.name}" is not served`);
    return state;
  }

  function busy(): boolean {
    for (const s of states.values()) if (s.inFlight > 0 || s.waiting.length > 0) return true;
    return false;
  }

  function release(state: EndpointState): void {
    state.inFlight--;
    const next = state.waiting.shift();
    if (next) {
      state.inFlight++;
      next();
    } else if (idle.size > 0 && !busy()) {
      for (const notify of idle) notify();
    }
  }

  function acquire(state: EndpointState): Promise<void> | undefined {
    if (state.inFlight < state.concurrency) {
      state.inFlight++;
      return undefined;
    }
    return new Promise((resolve) => state.waiting.push(resolve));
  }

  function replyError(delivery: Delivery, error: unknown): void {
    if (!delivery.wantsReply) return;
    const headers = messageHeaders(ErrorResponseSchema.typeName);
    delivery.respond(encode(ErrorResponseSchema, toErrorResponse(error)), headers);
  }

  const runtime: Runtime = {
    name,
    nc,
    logger,
    telemetry,
    watch(run, timeoutMs) {
      deadlines.add(run);
      ticker ??= setInterval(checkDeadlines, Math.min(tickMs, timeoutMs));
    },
    unwatch(run) {
      deadlines.delete(run);
    },
    release,
    replyError,
  };

  /** Starts one message in a slot it already holds; resolves with the outcome. */
  function start(state: EndpointState, delivery: Delivery): Promise<Outcome> {
    try {
      return new MessageRun(runtime, state, delivery).run();
    } catch (error) {
      release(state);
      return Promise.resolve({ ok: false, error });
    }
  }

  async function dispatch(endpoint: Endpoint, delivery: Delivery): Promise<Outcome> {
    const state = stateOf(endpoint);
    const wait = acquire(state);
    if (wait) await wait;
    return await start(state, delivery);
  }

  function onCoreMessage(state: EndpointState, msg: Msg): void {
    if (state.waiting.length >= state.maxPending) {
      state.numErrors++;
      state.lastError = "Overloaded: too many pending messages";
      telemetry.metrics.failed.add(1, {
        "messaging.destination.name": state.endpoint.subject,
        "error.type": "Overloaded",
      });
      logger.warn("Refusing message: endpoint is at its pending limit", {
        subject: msg.subject,
        endpoint: state.endpoint.name,
        max_pending: state.maxPending,
      });
      replyError(coreDelivery(msg), overloaded(state));
      return;
    }
    if (state.inFlight < state.concurrency) {
      state.inFlight++;
      start(state, coreDelivery(msg));
    } else {
      state.waiting.push(() => start(state, coreDelivery(msg)));
    }
  }

  const coreStates = [...states.values()].filter((s) => !jetstreamEndpoints.includes(s.endpoint));

  const service: Service = {
    name,
    version,
    nc,
    logger,
    endpoints,
    consumeMode,
    jetstreamEndpoints,
    get ready() {
      if (!started || stopping) return false;
      for (const s of coreStates) {
        if (!s.subscription || s.subscription.isClosed()) return false;
      }
      return true;
    },
    get stopping() {
      return stopping;
    },
    async start() {
      if (started) return;
      started = true;
      for (const state of coreStates) {
        state.subscription = nc.subscribe(state.endpoint.subject, {
          ...(state.queueGroup ? { queue: state.queueGroup } : {}),
          callback: (error, msg) => {
            if (error) {
              logger.error("Subscription failed", { subject: state.endpoint.subject, error });
              return;
            }
            onCoreMessage(state, msg);
          },
        });
      }
      await nc.flush();
      logger.info("Serving", {
        endpoints: coreStates.map((s) => s.endpoint.subject),
        ...(jetstreamEndpoints.length
          ? { jetstream_endpoints: jetstreamEndpoints.map((e) => e.subject) }
          : {}),
        version,
      });
    },
    dispatch,
    async stop(stopOptions = {}) {
      if (stopping) return;
      stopping = true;
      const { graceMs = 10_000 } = stopOptions;
      await Promise.all(
        [...states.values()].map((s) => s.subscription?.drain().catch(() => {})),
      );
      // Other sources stop taking messages now and settle their own in-flight
      // work (acks) while the handlers finish, within the same grace period.
      const sources = Promise.all(stopHooks.map((hook) => hook().catch(() => {})));
      let notify = () => {};
      const handlersDone = busy()
        ? new Promise<void>((resolve) => {
          notify = resolve;
          idle.add(notify);
        })
        : Promise.resolve();
      const finished = Promise.all([handlersDone, sources]);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = new Promise<"expired">((resolve) => {
        timer = setTimeout(() => resolve("expired"), graceMs);
      });
      const result = await Promise.race([finished, expired]);
      clearTimeout(timer);
      if (result === "expired") {
        logger.warn("Grace period over: aborting in-flight handlers", { grace_ms: graceMs });
        const reason = new TimeoutError("Cannot finish: the service is stopping");
        for (const run of deadlines) run.expire(reason);
        await finished;
      }
      idle.delete(notify);
      clearInterval(ticker);
      ticker = undefined;
      logger.info("Stopped taking messages");
    },
    stats() {
      return [...states.values()].map((s) => ({
        name: s.endpoint.name,
        subject: s.endpoint.subject,
        queueGroup: s.queueGroup,
        numRequests: s.numRequests,
        numErrors: s.numErrors,
        processingTimeNs: s.processingTimeNs,
        averageProcessingTimeNs: s.numRequests ? Math.round(s.processingTimeNs / s.numRequests) : 0,
        lastError: s.lastError,
        inFlight: s.inFlight,
        pending: s.waiting.length,
        concurrency: s.concurrency,
      }));
    },
    onStop(fn) {
      stopHooks.push(fn);
    },
    async [Symbol.asyncDispose]() {
      await service.stop();
    },
  };
  return service;
}

/** What one message's run needs from its service. */
interface Runtime {
  readonly name: string;
  readonly nc: NatsConnection;
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  /** Starts checking the run's deadline. */
  watch(run: MessageRun, timeoutMs: number): void;
  /** Stops checking the run's deadline. */
  unwatch(run: MessageRun): void;
  /** Frees the run's concurrency slot. */
  release(state: EndpointState): void;
  /** Answers the reply subject with an `ErrorResponse`, if the message wants a reply. */
  replyError(delivery: Delivery, error: unknown): void;
}

/**
 * One message being handled, and the context its handler receives. A class,
 * so that the hot path allocates one object instead of a closure per helper;
 * the signal, the logger and the tokens are built only when asked for.
 */
class MessageRun implements HandlerContext {
  readonly service: string;
  readonly subject: string;
  readonly headers: MsgHdrs | undefined;
  readonly span: Span;
  readonly attempt: number;
  readonly nc: NatsConnection;
  /** When the deadline passes, on the `performance.now()` clock. */
  readonly deadlineAt: number;
  readonly #runtime: Runtime;
  readonly #state: EndpointState;
  readonly #delivery: Delivery;
  readonly #spanContext: Context;
  readonly #started: number;
  readonly #attributes: Record<string, string> | undefined;
  #controller: AbortController | undefined;
  #expired: unknown;
  #done = false;
  #log: Logger | undefined;
  #logFields: LogFields | undefined;
  #tokens: readonly string[] | undefined;
  #resolve: (outcome: Outcome) => void = () => {};

  constructor(runtime: Runtime, state: EndpointState, delivery: Delivery) {
    const { endpoint } = state;
    this.#runtime = runtime;
    this.#state = state;
    this.#delivery = delivery;
    this.#started = performance.now();
    this.deadlineAt = this.#started + state.timeoutMs;
    this.service = runtime.name;
    this.subject = delivery.subject;
    this.headers = delivery.headers;
    this.attempt = delivery.attempt;
    this.nc = runtime.nc;
    const parent = extractTraceContext(delivery.headers);
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
      this.span = trace.getSpan(parent) ?? NO_SPAN;
      this.#spanContext = parent;
    }
    this.#attributes = runtime.telemetry.enabled
      ? { "messaging.destination.name": endpoint.subject }
      : undefined;
    if (this.#attributes) runtime.telemetry.metrics.inFlight.add(1, this.#attributes);
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
    const { endpoint } = this.#state;
    const delivery = this.#delivery;
    return new Promise<Outcome>((resolve) => {
      this.#resolve = resolve;
      this.#runtime.watch(this, this.#state.timeoutMs);
      const msgType = delivery.headers?.get(MSG_TYPE_HEADER) || undefined;
      let work: Promise<Uint8Array | undefined>;
      try {
        work = otelContext.with(
          this.#spanContext,
          () => endpoint.invoke(delivery.data, msgType, this),
        );
      } catch (error) {
        work = Promise.reject(error);
      }
      work.then(
        (reply) => {
          this.#succeed(reply);
          this.#runtime.release(this.#state);
        },
        (error) => {
          this.#fail(error);
          this.#runtime.release(this.#state);
        },
      );
    });
  }

  /** Ends the wait: the deadline passed, or the service stops for good. */
  expire(reason: unknown): void {
    if (this.#expired !== undefined) return;
    this.#expired = reason;
    this.#controller?.abort(reason);
    this.#fail(reason);
  }

  /** The error a message past its deadline is answered with. */
  deadlineError(): TimeoutError {
    return deadlineError(this.#state);
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
    this.#runtime.unwatch(this);
    const state = this.#state;
    const elapsed = performance.now() - this.#started;
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
    this.#resolve(outcome);
  }
}

/**
 * The headers of a reply: `Msg-Type` and the trace context. Without a valid
 * span context they are the same for every reply of an endpoint, so they are
 * built once (nats.js encodes headers when it publishes, never later).
 */
function replyHeaders(state: EndpointState, spanContext: Context): MsgHdrs {
  const current = trace.getSpanContext(spanContext);
  if (current && trace.isSpanContextValid(current)) {
    return messageHeaders(state.endpoint.responseType ?? "", { context: spanContext });
  }
  return state.replyHeaders ??= messageHeaders(state.endpoint.responseType ?? "", {
    context: ROOT_CONTEXT,
  });
}

/** The span of a message when telemetry is off and no trace context came in. */
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The outcome of every message handled successfully. */
const OK: Outcome = Object.freeze({ ok: true });

/** How often deadlines are checked: the precision of a message's deadline. */
const DEADLINE_TICK_MS = 25;

/** Throws when two JetStream endpoints would share one durable consumer on one stream. */
function checkDurables(service: string, endpoints: readonly Endpoint[]): void {
  const seen = new Map<string, Endpoint>();
  for (const endpoint of endpoints) {
    const durable = endpoint.durable ?? service;
    const key = `${endpoint.stream} ${durable}`;
    const other = seen.get(key);
    if (other) {
      throw new TypeError(
        `Cannot create service "${service}": endpoints "${other.name}" and "${endpoint.name}" ` +
          `would share the durable consumer "${durable}" on stream "${endpoint.stream}"; ` +
          `give one of them its own durable name`,
      );
    }
    seen.set(key, endpoint);
  }
}

function coreDelivery(msg: Msg): Delivery {
  return {
    subject: msg.subject,
    data: msg.data,
    headers: msg.headers,
    attempt: 1,
    wantsReply: Boolean(msg.reply),
    respond(data, headers) {
      msg.respond(data, { headers });
    },
  };
}

function overloaded(state: EndpointState): HandlerError {
  return new HandlerError(
    "Overloaded",
    `Cannot accept the message: ${state.inFlight} in flight and ${state.waiting.length} waiting`,
  );
}

function deadlineError(state: EndpointState): TimeoutError {
  return new TimeoutError(
    `Cannot finish "${state.endpoint.name}": deadline of ${state.timeoutMs} ms exceeded`,
  );
}
