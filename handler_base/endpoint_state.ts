/**
 * One endpoint as a service serves it: its resolved limits, its concurrency
 * slots (one {@linkcode Semaphore}, whichever source feeds it), its core
 * subscription, and the counters `$SRV.STATS` reports.
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { EndpointState } from "./endpoint_state.ts";
 * import { defineEndpoint } from "./endpoint.ts";
 * import { TTSRequestSchema } from "./messages.ts";
 *
 * const endpoint = defineEndpoint({
 *   subject: "demo.jobs",
 *   request: TTSRequestSchema,
 *   handle: () => Promise.resolve(),
 * });
 * const state = new EndpointState(endpoint, {
 *   concurrency: 4,
 *   maxPending: 64,
 *   timeoutMs: 1000,
 *   queueGroup: "demo",
 * });
 * console.log(state.stats().concurrency, state.deadlineError().message);
 * // 4 Cannot finish "demo.jobs": deadline of 1000 ms exceeded
 * ```
 *
 * @module
 */
import type { Subscription } from "@nats-io/nats-core";
import type { Endpoint } from "./endpoint.ts";
import { TimeoutError } from "./errors.ts";
import type { MsgHdrs } from "./natsutil.ts";
import { Semaphore } from "./semaphore.ts";
import type { EndpointStats } from "./service.ts";

/** The resolved limits of one endpoint. */
export interface EndpointLimits {
  /** Messages handled at once. */
  readonly concurrency: number;
  /** Messages waiting for a slot. */
  readonly maxPending: number;
  /** The deadline of one message, in milliseconds. */
  readonly timeoutMs: number;
  /** The queue group, "" for none; the durable consumer's name in JetStream mode. */
  readonly queueGroup: string;
}

/** One served endpoint. */
export class EndpointState {
  /** The endpoint. */
  readonly endpoint: Endpoint;
  /** The deadline of one message, in milliseconds. */
  readonly timeoutMs: number;
  /** The queue group (or durable name). */
  readonly queueGroup: string;
  /** The concurrency slots. */
  readonly slots: Semaphore;
  /** Frees one slot: made once, handed to every core run. */
  readonly release: () => void;
  /** Messages handled. */
  numRequests = 0;
  /** Messages that failed. */
  numErrors = 0;
  /** Total handling time, in nanoseconds. */
  processingTimeNs = 0;
  /** The last failure as "type: message". */
  lastError = "";
  /** The core subscription, once subscribed. */
  subscription: Subscription | undefined;
  /** The headers of untraced replies, built once. */
  replyHeaders: MsgHdrs | undefined;

  /**
   * Serves an endpoint with resolved limits.
   *
   * @param endpoint The endpoint.
   * @param limits Its limits.
   */
  constructor(endpoint: Endpoint, limits: EndpointLimits) {
    this.endpoint = endpoint;
    this.timeoutMs = limits.timeoutMs;
    this.queueGroup = limits.queueGroup;
    this.slots = new Semaphore(limits.concurrency, limits.maxPending);
    const slots = this.slots;
    this.release = () => slots.release();
  }

  /**
   * The error a message past its deadline is answered with.
   *
   * @returns A `TimeoutError` naming the endpoint and its deadline.
   */
  deadlineError(): TimeoutError {
    return new TimeoutError(
      `Cannot finish "${this.endpoint.name}": deadline of ${this.timeoutMs} ms exceeded`,
    );
  }

  /**
   * The counters, in the shape of the micro protocol.
   *
   * @returns A snapshot.
   */
  stats(): EndpointStats {
    return {
      name: this.endpoint.name,
      subject: this.endpoint.subject,
      queueGroup: this.queueGroup,
      numRequests: this.numRequests,
      numErrors: this.numErrors,
      processingTimeNs: this.processingTimeNs,
      averageProcessingTimeNs: this.numRequests
        ? Math.round(this.processingTimeNs / this.numRequests)
        : 0,
      lastError: this.lastError,
      inFlight: this.slots.inFlight,
      pending: this.slots.pending,
      concurrency: this.slots.limit,
    };
  }
}
