/**
 * The service: a set of endpoints served on one connection, each with its
 * concurrency slots, pending bound and deadline, and a stop that is bounded
 * by its grace period.
 *
 * A core endpoint gets a (queue) subscription; each message takes a slot or
 * waits in the endpoint's bounded queue, and beyond that bound it is answered
 * `Overloaded` at once. Endpoints with a `stream`, in a service whose
 * `consumeMode` is `"jetstream"`, get no subscription: `consumeJetStream` of
 * `consumer.ts` feeds them from durable consumers through the same slots.
 * What happens to one message is `message_run.ts`; the handler contract is
 * stated in `endpoint.ts`.
 *
 * Stopping ({@linkcode Service.stop}) takes no new message (subscriptions
 * drain, consumers stop pulling), lets running and queued messages finish
 * within the grace period, and then refuses what is still queued (a core
 * request is answered `Overloaded`, so its caller retries elsewhere; nothing
 * queued starts after the grace), aborts the signal of what still runs, and
 * waits at most {@linkcode GRACE_OVERRUN_MS} more for handlers to return.
 *
 * Requires what `natsutil` requires (`--allow-net=<nats>`).
 *
 * @example A service with one endpoint
 * ```ts ignore
 * import { createService } from "@homelab/handler-base/service";
 * import { defineEndpoint } from "@homelab/handler-base/endpoint";
 * import { connectNats } from "@homelab/handler-base/natsutil";
 * import { createLogger } from "@homelab/handler-base/log";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * const nc = await connectNats({ servers: "nats://127.0.0.1:4222", name: "demo" });
 * const logger = createLogger({ service: "demo" });
 * await using service = createService(nc, { name: "demo", endpoints: [echo], logger });
 * await service.start();
 * ```
 *
 * @module
 */
import { settlesWithin } from "./async.ts";
import type { ConsumeMode } from "./consume_config.ts";
import { DEADLINE_TICK_MS, Deadlines } from "./deadlines.ts";
import type { Endpoint } from "./endpoint.ts";
import { EndpointState } from "./endpoint_state.ts";
import { replyBytesOf, respondFast } from "./fast_reply.ts";
import { OverloadedError, TimeoutError, toErrorResponse } from "./errors.ts";
import {
  type Delivery,
  type Outcome,
  registerInternals,
  type ServiceInternals,
} from "./internal.ts";
import type { Logger } from "./log.ts";
import { encode, ErrorResponseSchema } from "./messages.ts";
import { MessageRun, type Runtime } from "./message_run.ts";
import { messageHeaders, type Msg, type MsgHdrs, type NatsConnection } from "./natsutil.ts";
import type { Semaphore } from "./semaphore.ts";
import { createTelemetry, type Telemetry } from "./telemetry.ts";

/**
 * How long {@linkcode Service.stop} waits, after the grace period, for
 * handlers whose signal it aborted to return and for sources to settle
 * their messages, in milliseconds. Past it the service stops without them.
 *
 * @example
 * ```ts
 * import { GRACE_OVERRUN_MS } from "@homelab/handler-base/service";
 *
 * console.log(GRACE_OVERRUN_MS); // 1000
 * ```
 */
export const GRACE_OVERRUN_MS = 1000;

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
   * of `consumer.ts` (which `runService` calls) feeds them.
   *
   * @default "core"
   */
  consumeMode?: ConsumeMode;
}

/** Options of {@linkcode Service.stop}. */
export interface StopOptions {
  /**
   * How long running and queued messages may take to finish, in
   * milliseconds. Then what is still queued is refused and never starts, and
   * the signal of what still runs is aborted; the stop returns at most
   * {@linkcode GRACE_OVERRUN_MS} later.
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
  /** Stops taking messages and waits for in-flight ones, within the grace (see {@linkcode StopOptions}). */
  stop(options?: StopOptions): Promise<void>;
  /** Counters per endpoint, in the order of {@linkcode Service.endpoints}. */
  stats(): EndpointStats[];
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
 * @example Limits resolved from the defaults
 * ```ts
 * import { createService } from "@homelab/handler-base/service";
 * import { defineEndpoint } from "@homelab/handler-base/endpoint";
 * import { createLogger } from "@homelab/handler-base/log";
 * import type { NatsConnection } from "@homelab/handler-base/natsutil";
 * import { TTSRequestSchema } from "@homelab/handler-base/messages";
 *
 * const jobs = defineEndpoint({
 *   subject: "demo.jobs",
 *   request: TTSRequestSchema,
 *   handle: () => Promise.resolve(),
 * });
 * const logger = createLogger({ service: "demo", level: "error" });
 * // Nothing touches the connection before start().
 * const service = createService({} as NatsConnection, {
 *   name: "demo",
 *   endpoints: [jobs],
 *   logger,
 *   concurrency: 4,
 * });
 * console.log(service.stats()[0]?.concurrency, service.ready); // 4 false
 * ```
 */
export function createService(nc: NatsConnection, options: ServiceOptions): Service {
  return new ServiceImpl(nc, options);
}

let stoppedError: OverloadedError | undefined;

/**
 * The error a queued message is refused with once the grace is over. Made on
 * first use: an error made while a bundle's top level runs costs 20 to 110
 * ms of start-up, as V8 then works out the source positions of that whole
 * top level (docs/PERFORMANCE.md, "Sixth pass").
 */
function stopped(): OverloadedError {
  return stoppedError ??= new OverloadedError(
    "Cannot handle the message: the service stopped before it could start it",
  );
}

/** {@linkcode Service} and its {@linkcode ServiceInternals}. */
class ServiceImpl implements Service, ServiceInternals, Runtime {
  readonly name: string;
  readonly version: string;
  readonly nc: NatsConnection;
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  readonly endpoints: readonly Endpoint[];
  readonly consumeMode: ConsumeMode;
  readonly jetstreamEndpoints: readonly Endpoint[];
  /** One ticker checks the deadlines of every message in flight. */
  readonly deadlines: Deadlines;
  readonly #states = new Map<Endpoint, EndpointState>();
  readonly #coreStates: EndpointState[];
  readonly #stopHooks: Array<() => Promise<void>> = [];
  #started = false;
  #subscribed = false;
  #stopped: Promise<void> | undefined;

  constructor(nc: NatsConnection, options: ServiceOptions) {
    const { name, logger, endpoints } = options;
    this.name = name;
    this.version = options.version ?? "0.1.0";
    this.nc = nc;
    this.logger = logger;
    this.telemetry = options.telemetry ?? createTelemetry({ serviceName: name });
    this.endpoints = endpoints;
    this.consumeMode = options.consumeMode ?? "core";
    this.jetstreamEndpoints = this.consumeMode === "jetstream"
      ? endpoints.filter((e) => e.stream !== undefined)
      : [];
    checkDurables(name, this.jetstreamEndpoints);
    this.deadlines = new Deadlines({
      tickMs: Math.min(DEADLINE_TICK_MS, options.timeoutMs ?? DEADLINE_TICK_MS),
    });
    const defaultConcurrency = options.concurrency ?? 16;
    for (const endpoint of endpoints) {
      const concurrency = endpoint.concurrency ?? defaultConcurrency;
      const fromJetStream = this.jetstreamEndpoints.includes(endpoint);
      this.#states.set(
        endpoint,
        new EndpointState(endpoint, {
          concurrency,
          maxPending: endpoint.maxPending ?? concurrency * 16,
          timeoutMs: endpoint.timeoutMs ?? options.timeoutMs ?? 60_000,
          queueGroup: fromJetStream
            ? endpoint.durable ?? name
            : endpoint.queue === false
            ? ""
            : endpoint.queue ?? name,
        }),
      );
    }
    this.#coreStates = [...this.#states.values()].filter((s) =>
      !this.jetstreamEndpoints.includes(s.endpoint)
    );
    registerInternals(this, this);
  }

  get ready(): boolean {
    if (!this.#subscribed || this.#stopped) return false;
    for (const s of this.#coreStates) {
      if (!s.subscription || s.subscription.isClosed()) return false;
    }
    return true;
  }

  get stopping(): boolean {
    return this.#stopped !== undefined;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    for (const state of this.#coreStates) {
      state.subscription = this.nc.subscribe(state.endpoint.subject, {
        ...(state.queueGroup ? { queue: state.queueGroup } : {}),
        callback: (error, msg) => {
          if (error) {
            this.logger.error("Subscription failed", { subject: state.endpoint.subject, error });
            return;
          }
          this.#onCoreMessage(state, msg);
        },
      });
    }
    await this.nc.flush();
    // Ready only once the server has the subscriptions: a request sent on a 200 is answered.
    this.#subscribed = true;
    this.logger.info("Serving", {
      endpoints: this.#coreStates.map((s) => s.endpoint.subject),
      ...(this.jetstreamEndpoints.length
        ? { jetstream_endpoints: this.jetstreamEndpoints.map((e) => e.subject) }
        : {}),
      version: this.version,
    });
  }

  stop(options: StopOptions = {}): Promise<void> {
    return this.#stopped ??= this.#stop(options.graceMs ?? 10_000);
  }

  stats(): EndpointStats[] {
    return [...this.#states.values()].map((s) => s.stats());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  // ServiceInternals

  async dispatch(endpoint: Endpoint, delivery: Delivery): Promise<Outcome> {
    const state = this.#stateOf(endpoint);
    while (!state.slots.tryAcquire()) {
      if (state.slots.closed) return { ok: false, error: stopped() };
      await state.slots.whenAvailable();
    }
    return await this.#start(state, delivery, state.release);
  }

  runInSlot(endpoint: Endpoint, delivery: Delivery, release: () => void): Promise<Outcome> {
    return this.#start(this.#stateOf(endpoint), delivery, release);
  }

  slotsOf(endpoint: Endpoint): Semaphore {
    return this.#stateOf(endpoint).slots;
  }

  onStop(fn: () => Promise<void>): void {
    this.#stopHooks.push(fn);
  }

  // Runtime

  replyError(delivery: Delivery, error: unknown): void {
    if (!delivery.wantsReply) return;
    const headers = messageHeaders(ErrorResponseSchema.typeName);
    delivery.respond(encode(ErrorResponseSchema, toErrorResponse(error)), headers);
  }

  // The rest

  #stateOf(endpoint: Endpoint): EndpointState {
    const state = this.#states.get(endpoint);
    if (!state) throw new Error(`Cannot dispatch: endpoint "${endpoint.name}" is not served`);
    return state;
  }

  /** Starts one message in a slot it already holds; resolves with the outcome. */
  #start(state: EndpointState, delivery: Delivery, release: () => void): Promise<Outcome> {
    try {
      return new MessageRun(this, state, delivery, release).run();
    } catch (error) {
      release();
      return Promise.resolve({ ok: false, error });
    }
  }

  /** Starts a core message in a free slot, queues it, or refuses it at once. */
  #onCoreMessage(state: EndpointState, msg: Msg): void {
    const delivery = new CoreDelivery(this, state, msg);
    if (state.slots.enqueue(delivery)) return;
    const error = state.slots.closed ? stopped() : new OverloadedError(
      `Cannot accept the message: ${state.slots.inFlight} in flight and ` +
        `${state.slots.pending} waiting`,
    );
    state.numErrors++;
    state.lastError = `Overloaded: ${
      state.slots.closed ? "the service stopped" : "too many pending messages"
    }`;
    this.telemetry.metrics.failed.add(1, {
      "messaging.destination.name": state.endpoint.subject,
      "error.type": "Overloaded",
    });
    this.logger.warn(
      state.slots.closed
        ? "Refusing message: the service stopped"
        : "Refusing message: endpoint is at its pending limit",
      { subject: msg.subject, endpoint: state.endpoint.name, max_pending: state.slots.maxPending },
    );
    this.replyError(delivery, error);
  }

  /** Starts a core message whose slot was handed to it. */
  startCore(state: EndpointState, delivery: CoreDelivery): void {
    // No outcome is awaited for a core message (its reply is the outcome),
    // so no promise is made for one.
    try {
      new MessageRun(this, state, delivery, state.release).start();
    } catch {
      state.release();
    }
  }

  /** Answers a queued core message that will never start. */
  refuseCore(delivery: CoreDelivery): void {
    this.replyError(delivery, stopped());
  }

  async #stop(graceMs: number): Promise<void> {
    const states = [...this.#states.values()];
    // Take nothing new: subscriptions drain (what the client holds already
    // is still queued), sources stop pulling and settle their own messages.
    const drained = Promise.all(states.map((s) => s.subscription?.drain().catch(() => {})));
    const sources = Promise.all(this.#stopHooks.map((hook) => hook().catch(() => {})));
    const finished = Promise.all([drained, sources]).then(() =>
      Promise.all(states.map((s) => s.slots.whenIdle()))
    );
    if (await settlesWithin(finished, graceMs)) {
      this.#close(states);
    } else {
      const queued = states.reduce((n, s) => n + s.slots.pending, 0);
      const running = states.reduce((n, s) => n + s.slots.inFlight, 0);
      this.logger.warn("Grace period over: refusing queued messages, aborting running ones", {
        grace_ms: graceMs,
        queued,
        running,
      });
      this.#close(states);
      this.deadlines.expireAll(new TimeoutError("Cannot finish: the service is stopping"));
      if (!(await settlesWithin(finished, GRACE_OVERRUN_MS))) {
        this.logger.error("Cannot stop cleanly: leaving what is still running behind", {
          running: states.reduce((n, s) => n + s.slots.inFlight, 0),
          overrun_ms: GRACE_OVERRUN_MS,
        });
        for (const s of states) s.subscription?.unsubscribe();
      }
    }
    this.deadlines.stop();
    this.logger.info("Stopped taking messages");
  }

  /** No message starts any more: what is queued is refused. */
  #close(states: readonly EndpointState[]): void {
    for (const s of states) s.slots.close();
  }
}

/**
 * A core message: its delivery, and its place in the endpoint's queue. One
 * object per message on the hot path (no closure per message).
 */
class CoreDelivery implements Delivery {
  readonly #service: ServiceImpl;
  readonly #state: EndpointState;
  readonly #msg: Msg;
  readonly attempt = 1;

  constructor(service: ServiceImpl, state: EndpointState, msg: Msg) {
    this.#service = service;
    this.#state = state;
    this.#msg = msg;
  }

  get subject(): string {
    return this.#msg.subject;
  }

  get data(): Uint8Array {
    return this.#msg.data;
  }

  get headers(): MsgHdrs | undefined {
    return this.#msg.headers;
  }

  get wantsReply(): boolean {
    return (replyBytesOf(this.#msg) ?? this.#msg.reply ?? "").length > 0;
  }

  respond(data: Uint8Array, headers: MsgHdrs): void {
    const reply = replyBytesOf(this.#msg) ?? this.#msg.reply;
    if (!reply || !respondFast(this.#service.nc, reply, headers, data)) {
      this.#msg.respond(data, { headers });
    }
  }

  /** Called by the endpoint's slots once this message holds one. */
  start(): void {
    this.#service.startCore(this.#state, this);
  }

  /** Called by the endpoint's slots when the service stops before this message started. */
  reject(): void {
    this.#service.refuseCore(this);
  }
}

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
