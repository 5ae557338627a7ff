/**
 * Durable consumers: the endpoints of a service that declare a `stream` read
 * from a durable pull consumer named after the service (or the endpoint's
 * `durable`) when the service runs with `consumeMode: "jetstream"`. A
 * message is acked once the handler succeeded and its outputs are flushed; a
 * retryable failure is nak'd with exponential backoff; a non-retryable
 * failure, or a failure on the last allowed delivery (`max_deliver`, 5 by
 * default), is published to the dead-letter subject `dlq.<service>.<subject>`
 * (`dead_letters.ts`) and terminated (so is a message whose deliveries all
 * died with their process, from the server's max-deliveries advisory).
 *
 * Each endpoint's consumer is a {@linkcode DurableConsumer}: it pulls at
 * most as many messages as the endpoint has free slots (the same
 * `Semaphore` a core subscription would use), holds a slot until the
 * handler has returned and the message is settled, sends in-progress acks
 * for long handlers, and detects a deleted consumer, missed heartbeats or a
 * restarted server and recreates the consumer, while readiness reports the
 * outage. When the service stops it stops pulling first and hands back what
 * it pulled but did not start; a message whose handler the grace period
 * aborts is nak'd for another replica, never acked.
 *
 * Requires `--allow-net=<nats>`, and permission to subscribe to
 * `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>`.
 *
 * @example Consume from JetStream
 * ```ts ignore
 * import { createService } from "@homelab/handler-base/service";
 * import { defineEndpoint } from "@homelab/handler-base/endpoint";
 * import { consumeJetStream } from "@homelab/handler-base/consumer";
 * import { ensureStreams } from "@homelab/handler-base/streams";
 * import { PipelineTriggerSchema } from "@homelab/handler-base/messages";
 *
 * await ensureStreams(nc, { only: ["AI_PIPELINE"] });
 * const trigger = defineEndpoint({
 *   subject: "ai.pipeline.trigger",
 *   stream: "AI_PIPELINE",
 *   request: PipelineTriggerSchema,
 *   handle: (req, ctx) => submit(req, ctx),
 * });
 * const service = createService(nc, {
 *   name: "pipeline-bridge",
 *   endpoints: [trigger],
 *   logger,
 *   consumeMode: "jetstream",
 * });
 * await service.start();
 * const consumers = consumeJetStream(service);
 * ```
 *
 * @module
 */
import { nanos } from "@nats-io/nats-core";
import * as js from "@nats-io/jetstream";
import { delay } from "./async.ts";
import { type DeadLetter, publishDeadLetter } from "./dead_letters.ts";
import type { Endpoint } from "./endpoint.ts";
import { errorType, HandlerError, isRetryable } from "./errors.ts";
import type { CheckResult } from "./health.ts";
import { type Delivery, internalsOf, type ServiceInternals } from "./internal.ts";
import { isApiError, messageOf } from "./jetstream_api.ts";
import type { Logger } from "./log.ts";
import type { Msg, MsgHdrs } from "./natsutil.ts";
import type { Semaphore } from "./semaphore.ts";
import type { Service } from "./service.ts";
import { sharedFlush } from "./shared_flush.ts";

/** Options of {@linkcode consumeJetStream}. */
export interface JetStreamConsumerOptions {
  /**
   * How many times one message is delivered at most; a failure on the last
   * delivery dead-letters it.
   *
   * @default 5
   */
  maxDeliver?: number;
  /**
   * How long a delivery may go without an ack or an in-progress ack before
   * the server redelivers it, in milliseconds (at least 1000). Handlers that
   * run longer send in-progress acks every third of it.
   *
   * @default 30000
   */
  ackWaitMs?: number;
  /**
   * The redelivery delay after the first retryable failure, in milliseconds;
   * it doubles with each further delivery.
   *
   * @default 1000
   */
  retryDelayMs?: number;
  /**
   * The longest redelivery delay, in milliseconds.
   *
   * @default 60000
   */
  maxRetryDelayMs?: number;
  /**
   * Where a consumer created for the first time starts: `"all"` handles
   * everything the stream still holds, `"new"` only what arrives after. A
   * consumer recreated after it was deleted resumes after its last known
   * ack floor instead.
   *
   * @default "all"
   */
  deliverPolicy?: "all" | "new";
  /**
   * How long one pull request waits for messages, in milliseconds (at least
   * 1000); the server sends heartbeats every half of it (at most every 30 s)
   * and two missed ones restart the consumer.
   *
   * @default 30000
   */
  fetchExpiresMs?: number;
  /**
   * The first token of dead-letter subjects (`<prefix>.<service>.<subject>`).
   *
   * @default "dlq"
   */
  deadLetterPrefix?: string;
  /**
   * Called when a consumer's status changes (tests and metrics).
   *
   * @default undefined
   */
  onStateChange?: (state: ConsumerState) => void;
}

/** The status of one endpoint's consumer. */
export interface ConsumerState {
  /** The endpoint's name. */
  readonly endpoint: string;
  /** The stream. */
  readonly stream: string;
  /** The durable consumer's name. */
  readonly durable: string;
  /**
   * `starting` until the consumer exists, `consuming` while it pulls,
   * `recovering` after a failure until it pulls again, `stopped` at the end.
   */
  readonly status: "starting" | "consuming" | "recovering" | "stopped";
  /** What went wrong, while recovering. */
  readonly reason: string;
}

/** The running consumers of a service. */
export interface JetStreamConsumers extends AsyncDisposable {
  /** Whether every consumer is consuming. */
  readonly ready: boolean;
  /** The status of each consumer, in endpoint order. */
  states(): ConsumerState[];
  /**
   * A readiness check: true while every consumer is consuming, else which
   * one is not and why.
   */
  check(): CheckResult;
  /**
   * Stops pulling, hands back what was pulled but not started, and resolves
   * once every started message is settled (acked, nak'd or terminated). The
   * service calls it when it stops.
   */
  stop(): Promise<void>;
}

/** The fields of `io.nats.jetstream.advisory.v1.max_deliver` that are used. */
interface MaxDeliveriesAdvisory {
  readonly stream_seq: number;
  readonly deliveries: number;
}

/** What the consumers of one service share. */
interface Shared {
  readonly service: Service;
  readonly internals: ServiceInternals;
  readonly client: js.JetStreamClient;
  readonly manager: Promise<js.JetStreamManager>;
  readonly flush: () => Promise<void>;
  readonly maxDeliver: number;
  readonly ackWaitMs: number;
  readonly retryDelayMs: number;
  readonly maxRetryDelayMs: number;
  readonly deliverPolicy: "all" | "new";
  readonly fetchExpiresMs: number;
  readonly deadLetterPrefix: string;
  readonly onStateChange: ((state: ConsumerState) => void) | undefined;
}

/** How often a consumer's ack floor is refreshed, to resume there if it is deleted. */
const FLOOR_REFRESH_MS = 10_000;

/**
 * Starts a durable pull consumer for each endpoint that the service feeds
 * from JetStream ({@linkcode Service.jetstreamEndpoints}), named after the
 * service (or the endpoint's `durable`), filtered on the endpoint's subject.
 * The consumer is created when missing and its `ack_wait` and `max_deliver`
 * updated when they differ. The service stops the consumers when it stops.
 *
 * Per message: the handler runs with `ctx.attempt` = the delivery count; on
 * success the connection is flushed and the message acked; a retryable
 * failure is nak'd with a delay of `retryDelayMs * 2^(attempt-1)` (at most
 * `maxRetryDelayMs`); a non-retryable failure, or any failure on delivery
 * `maxDeliver`, is published with its headers and `Dlq-*` headers to
 * `deadLetterSubject` of `dead_letters.ts` (stored by `DEAD_LETTERS` when that stream
 * exists) and then terminated. A message whose deliveries all ended without
 * an outcome (the process died) is dead-lettered from the server's
 * `MAX_DELIVERIES` advisory by one replica. Needs permission to subscribe to
 * `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>`.
 *
 * @param service The service, created with `consumeMode: "jetstream"`.
 * @param options Redelivery, ack wait, start position and pull settings.
 * @returns The running consumers, with a readiness check.
 * @throws {RangeError} When an option is out of range.
 *
 * @example Options are checked before anything is pulled
 * ```ts
 * import { consumeJetStream } from "@homelab/handler-base/consumer";
 * import { createService } from "@homelab/handler-base/service";
 * import { createLogger } from "@homelab/handler-base/log";
 * import type { NatsConnection } from "@homelab/handler-base/natsutil";
 *
 * const logger = createLogger({ service: "demo", level: "error" });
 * const service = createService({} as NatsConnection, { name: "demo", endpoints: [], logger });
 * try {
 *   consumeJetStream(service, { ackWaitMs: 10 });
 * } catch (error) {
 *   console.log((error as RangeError).message);
 *   // Cannot consume: ackWaitMs must be at least 1000: current value is 10
 * }
 * ```
 */
export function consumeJetStream(
  service: Service,
  options: JetStreamConsumerOptions = {},
): JetStreamConsumers {
  const {
    maxDeliver = 5,
    ackWaitMs = 30_000,
    retryDelayMs = 1000,
    maxRetryDelayMs = 60_000,
    deliverPolicy = "all",
    fetchExpiresMs = 30_000,
    deadLetterPrefix = "dlq",
    onStateChange,
  } = options;
  if (!Number.isInteger(maxDeliver) || maxDeliver < 1) {
    throw new RangeError(
      `Cannot consume: maxDeliver must be a positive integer: current value is ${maxDeliver}`,
    );
  }
  for (const [key, value] of [["ackWaitMs", ackWaitMs], ["fetchExpiresMs", fetchExpiresMs]]) {
    if (!(Number(value) >= 1000)) {
      throw new RangeError(
        `Cannot consume: ${key} must be at least 1000: current value is ${value}`,
      );
    }
  }
  const { nc } = service;
  const internals = internalsOf(service);
  const client = js.jetstream(nc);
  const shared: Shared = {
    service,
    internals,
    client,
    manager: client.jetstreamManager(false),
    flush: sharedFlush(nc, Math.min(ackWaitMs, 10_000)),
    maxDeliver,
    ackWaitMs,
    retryDelayMs,
    maxRetryDelayMs,
    deliverPolicy,
    fetchExpiresMs,
    deadLetterPrefix,
    onStateChange,
  };
  const runners = service.jetstreamEndpoints.map((endpoint) =>
    new DurableConsumer(shared, endpoint)
  );

  // Disconnects and reconnects are seen here, not by each pull: a pull made
  // before a server restart is gone, and the consumer must be checked again.
  const status = nc.status();
  (async () => {
    for await (const s of status) {
      if (s.type === "disconnect") { for (const r of runners) r.disconnected(); }
      else if (s.type === "reconnect") { for (const r of runners) r.reconnected(); }
    }
  })();

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= (async () => {
      (status as Partial<{ stop(): void }>).stop?.();
      await Promise.all(runners.map((r) => r.stop()));
    })();
    return stopping;
  }
  internals.onStop(stop);

  const consumers: JetStreamConsumers = {
    get ready() {
      return runners.every((r) => r.state.status === "consuming");
    },
    states: () => runners.map((r) => r.state),
    check() {
      const failing = runners.filter((r) => r.state.status !== "consuming");
      if (failing.length === 0) return true;
      return failing.map(({ state }) =>
        `${state.stream}/${state.durable} ${state.status}${state.reason ? `: ${state.reason}` : ""}`
      ).join("; ");
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return consumers;
}

/** A stored message as a delivery: no reply subject (JetStream answered the request). */
class JetStreamDelivery implements Delivery {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly attempt: number;
  readonly wantsReply = false;
  readonly #slots: Semaphore;
  /** The slot is freed once the handler has returned and the message is settled. */
  #holds = 2;

  constructor(m: js.JsMsg, slots: Semaphore) {
    this.subject = m.subject;
    this.data = m.data;
    this.headers = m.headers;
    this.attempt = m.info.deliveryCount;
    this.#slots = slots;
  }

  respond(): void {}

  /** One of the two holds on the slot ends. */
  release = (): void => {
    if (--this.#holds === 0) this.#slots.release();
  };
}

/**
 * The durable consumer of one endpoint: creates or updates it, pulls as many
 * messages as the endpoint has free slots, runs each in its slot, settles it
 * (ack, nak, dead letter), and recovers from a deleted consumer or a
 * restarted server.
 */
class DurableConsumer {
  readonly #shared: Shared;
  readonly #endpoint: Endpoint;
  readonly #stream: string;
  readonly #durable: string;
  readonly #log: Logger;
  readonly #slots: Semaphore;
  readonly #stopped = new AbortController();
  readonly #progressEveryMs: number;
  readonly #advisories;
  readonly #pulling: Promise<void>;
  #state: ConsumerState;
  #consumer: js.Consumer | undefined;
  #current: js.ConsumerMessages | undefined;
  #maxDeliver: number;
  #ackFloor: number | undefined;
  #floorCheckedAt = 0;
  /** Messages started and not yet settled. */
  #unsettled = 0;
  #settled: (() => void) | undefined;

  constructor(shared: Shared, endpoint: Endpoint) {
    const { service } = shared;
    this.#shared = shared;
    this.#endpoint = endpoint;
    this.#stream = endpoint.stream!;
    this.#durable = endpoint.durable ?? service.name;
    this.#log = service.logger.child({
      stream: this.#stream,
      consumer: this.#durable,
      endpoint: endpoint.name,
    });
    this.#slots = shared.internals.slotsOf(endpoint);
    this.#progressEveryMs = Math.max(100, Math.floor(shared.ackWaitMs / 3));
    this.#maxDeliver = shared.maxDeliver;
    this.#state = {
      endpoint: endpoint.name,
      stream: this.#stream,
      durable: this.#durable,
      status: "starting",
      reason: "",
    };
    this.#advisories = service.nc.subscribe(
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.#stream}.${this.#durable}`,
      {
        queue: this.#durable,
        callback: (error, msg) => {
          if (error) return;
          this.#deadLetterExhausted(msg).catch((cause) =>
            this.#log.error("Cannot dead-letter an exhausted message", { error: cause })
          );
        },
      },
    );
    this.#pulling = this.#pull();
  }

  get state(): ConsumerState {
    return this.#state;
  }

  /** The connection is gone: report it. */
  disconnected(): void {
    this.#setStatus("recovering", "disconnected from NATS");
  }

  /**
   * The connection is back: a pull made before a server restart is gone, so
   * check the consumer again (the loop wakes up even when every slot is
   * busy) and pull anew.
   */
  reconnected(): void {
    const stale = this.#current;
    this.#current = undefined;
    this.#consumer = undefined;
    stale?.stop();
    this.#slots.interrupt();
  }

  /** Stops pulling, then resolves once every started message is settled. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    this.#advisories.unsubscribe();
    this.#slots.interrupt();
    this.#current?.stop();
    await this.#pulling;
    if (this.#unsettled > 0) await new Promise<void>((resolve) => this.#settled = resolve);
    this.#setStatus("stopped");
  }

  #setStatus(status: ConsumerState["status"], reason = ""): void {
    const state = this.#state;
    if (state.status === status && state.reason === reason) return;
    this.#state = { ...state, status, reason };
    if (status === "recovering") this.#log.warn("Consumer is not consuming", { reason });
    else if (status === "consuming" && state.status === "recovering") {
      this.#log.info("Consumer recovered");
    }
    this.#shared.onStateChange?.(this.#state);
  }

  async #pull(): Promise<void> {
    const stopped = this.#stopped.signal;
    let failures = 0;
    while (!stopped.aborted) {
      try {
        if (!this.#consumer) {
          this.#consumer = await this.#ensureConsumer();
          failures = 0;
          this.#setStatus("consuming");
        }
        await this.#slots.whenAvailable();
        const free = this.#slots.available;
        if (stopped.aborted || !this.#consumer || free <= 0) continue;
        const messages = await this.#consumer.fetch({
          max_messages: free,
          expires: this.#shared.fetchExpiresMs,
        });
        this.#current = messages;
        for await (const m of messages) {
          // Pulled but not started: hand it back for another replica.
          if (stopped.aborted || !this.#slots.tryAcquire()) m.nak();
          else this.#handle(m);
        }
        if (this.#current !== messages) continue; // Interrupted by a reconnect.
        this.#current = undefined;
        if (performance.now() - this.#floorCheckedAt > FLOOR_REFRESH_MS) {
          this.#noteInfo(await this.#consumer.info());
        }
      } catch (error) {
        this.#current = undefined;
        this.#consumer = undefined;
        if (stopped.aborted) break;
        failures++;
        this.#setStatus("recovering", describeFailure(error));
        await delay(Math.min(5000, 250 * 2 ** Math.min(failures - 1, 5)), { signal: stopped })
          .catch(() => {});
      }
    }
  }

  /** Runs one message in the slot the pull took for it, then settles it. */
  async #handle(m: js.JsMsg): Promise<void> {
    this.#unsettled++;
    const delivery = new JetStreamDelivery(m, this.#slots);
    const progress = setInterval(() => m.working(), this.#progressEveryMs);
    try {
      const outcome = await this.#shared.internals.runInSlot(
        this.#endpoint,
        delivery,
        delivery.release,
      );
      if (outcome.ok) {
        await this.#shared.flush();
        m.ack();
      } else {
        await this.#settleFailure(m, outcome.error);
      }
    } catch (error) {
      this.#log.warn("Cannot settle message: it comes back after the ack wait", {
        error,
        stream_sequence: m.info.streamSequence,
      });
    } finally {
      clearInterval(progress);
      delivery.release();
      if (--this.#unsettled === 0) this.#settled?.();
    }
  }

  async #settleFailure(m: js.JsMsg, error: unknown): Promise<void> {
    const attempt = m.info.deliveryCount;
    const stopping = this.#shared.service.stopping;
    // A message the stop aborted is handed back, never dead-lettered for it.
    if ((isRetryable(error) && attempt < this.#maxDeliver) || (stopping && isRetryable(error))) {
      // A stopping replica hands the message back at once, for another one.
      const retryInMs = stopping ? 0 : this.#retryDelay(attempt);
      this.#log.info("Retrying message later", {
        stream_sequence: m.info.streamSequence,
        attempt,
        max_deliver: this.#maxDeliver,
        retry_in_ms: retryInMs,
        error_type: errorType(error),
      });
      m.nak(retryInMs);
      return;
    }
    await this.#deadLetter({
      subject: m.subject,
      data: m.data,
      headers: m.headers,
      sequence: m.info.streamSequence,
      deliveries: m.info.deliveryCount,
    }, error);
    m.term();
  }

  #retryDelay(attempt: number): number {
    const { retryDelayMs, maxRetryDelayMs } = this.#shared;
    return Math.min(maxRetryDelayMs, retryDelayMs * 2 ** (attempt - 1));
  }

  async #deadLetter(letter: DeadLetter, error: unknown): Promise<void> {
    const shared = this.#shared;
    const subject = await publishDeadLetter(
      {
        client: shared.client,
        nc: shared.service.nc,
        flush: shared.flush,
        service: shared.service.name,
        stream: this.#stream,
        durable: this.#durable,
        prefix: shared.deadLetterPrefix,
        timeoutMs: Math.min(shared.ackWaitMs, 5000),
      },
      letter,
      error,
    );
    this.#log.warn("Message dead-lettered", {
      dead_letter_subject: subject,
      stream_sequence: letter.sequence,
      deliveries: letter.deliveries,
      error_type: errorType(error),
    });
  }

  /**
   * A message whose deliveries all ended without an outcome (the process
   * died or hung) never reaches `#settleFailure`: the server reports it in an
   * advisory, and one replica (a queue group) dead-letters it from the stream.
   */
  async #deadLetterExhausted(advisory: Msg): Promise<void> {
    const { stream_seq: sequence, deliveries } = advisory.json<MaxDeliveriesAdvisory>();
    const jsm = await this.#shared.manager;
    const stored = await jsm.streams.getMessage(this.#stream, { seq: sequence });
    if (!stored) return; // Gone from the stream already.
    const error = new HandlerError(
      "Internal",
      `Cannot handle the message: ${deliveries} deliveries ended without an outcome`,
    );
    await this.#deadLetter(
      { subject: stored.subject, data: stored.data, headers: stored.header, sequence, deliveries },
      error,
    );
  }

  async #ensureConsumer(): Promise<js.Consumer> {
    const shared = this.#shared;
    const stream = this.#stream;
    const durable = this.#durable;
    const jsm = await shared.manager;
    let info: js.ConsumerInfo | undefined;
    try {
      info = await jsm.consumers.info(stream, durable);
    } catch (error) {
      if (!isApiError(error, js.JetStreamApiCodes.ConsumerNotFound)) throw error;
    }
    if (info) {
      const drift: Partial<js.ConsumerUpdateConfig> = {};
      if (info.config.ack_wait !== nanos(shared.ackWaitMs)) {
        drift.ack_wait = nanos(shared.ackWaitMs);
      }
      if (info.config.max_deliver !== shared.maxDeliver) drift.max_deliver = shared.maxDeliver;
      if (Object.keys(drift).length > 0) {
        info = await jsm.consumers.update(stream, durable, drift);
        this.#log.info("Consumer updated", {
          ack_wait_ms: shared.ackWaitMs,
          max_deliver: shared.maxDeliver,
        });
      }
    } else {
      const start = await this.#startPosition(jsm);
      info = await jsm.consumers.add(stream, {
        durable_name: durable,
        description: `${shared.service.name}: ${this.#endpoint.name}`,
        ack_policy: js.AckPolicy.Explicit,
        ack_wait: nanos(shared.ackWaitMs),
        max_deliver: shared.maxDeliver,
        filter_subject: this.#endpoint.subject,
        ...start,
      });
      this.#log.info(this.#ackFloor === undefined ? "Consumer created" : "Consumer recreated", {
        deliver_policy: start.deliver_policy,
        ...(start.opt_start_seq ? { start_sequence: start.opt_start_seq } : {}),
      });
    }
    this.#noteInfo(info);
    return shared.client.consumers.getConsumerFromInfo(info);
  }

  #noteInfo(info: js.ConsumerInfo): void {
    this.#ackFloor = info.ack_floor.stream_seq;
    this.#floorCheckedAt = performance.now();
    const configured = info.config.max_deliver ?? -1;
    this.#maxDeliver = configured > 0 ? configured : this.#shared.maxDeliver;
  }

  /** Where a (re)created consumer starts: after the last known ack floor, if any. */
  async #startPosition(
    jsm: js.JetStreamManager,
  ): Promise<Pick<js.ConsumerConfig, "deliver_policy" | "opt_start_seq">> {
    if (this.#ackFloor === undefined) {
      return {
        deliver_policy: this.#shared.deliverPolicy === "new"
          ? js.DeliverPolicy.New
          : js.DeliverPolicy.All,
      };
    }
    const { state: streamState } = await jsm.streams.info(this.#stream);
    // A floor beyond the stream's end means the stream itself was recreated.
    if (this.#ackFloor > streamState.last_seq) return { deliver_policy: js.DeliverPolicy.All };
    return { deliver_policy: js.DeliverPolicy.StartSequence, opt_start_seq: this.#ackFloor + 1 };
  }
}

function describeFailure(error: unknown): string {
  if (isApiError(error, js.JetStreamApiCodes.ConsumerNotFound)) return "consumer not found";
  if (isApiError(error, js.JetStreamApiCodes.StreamNotFound)) return "stream not found";
  return messageOf(error);
}
