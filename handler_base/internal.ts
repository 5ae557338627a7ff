/**
 * The glue between a service and the sources that feed it other than core
 * subscriptions (the durable JetStream consumers of `consumer.ts`): a
 * {@linkcode Delivery}, how its handling ended ({@linkcode Outcome}), and
 * the service's {@linkcode ServiceInternals}, reached with
 * {@linkcode internalsOf}. None of this is public API: a user serves
 * endpoints with `createService`/`runService` and never hands deliveries in
 * by hand. It is not an entry point of the package; modules of handler-base
 * (and the benchmarks) import it by path.
 *
 * @example
 * ```ts
 * import { internalsOf } from "./internal.ts";
 * import { createService } from "./service.ts";
 * import { createLogger } from "./log.ts";
 * import type { NatsConnection } from "./natsutil.ts";
 *
 * const logger = createLogger({ service: "demo", level: "error" });
 * const service = createService({} as NatsConnection, { name: "demo", endpoints: [], logger });
 * console.log(typeof internalsOf(service).dispatch); // "function"
 * ```
 *
 * @module
 */
import type { Endpoint } from "./endpoint.ts";
import type { MsgHdrs } from "./natsutil.ts";
import type { Semaphore } from "./semaphore.ts";
import type { Service } from "./service.ts";

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

/** What a message source needs from a service beyond its public interface. */
export interface ServiceInternals {
  /**
   * Hands one delivery to an endpoint, waiting (without bound) while the
   * endpoint is at its concurrency limit, and resolves with how handling
   * ended. The slot is freed when the handler returns.
   */
  dispatch(endpoint: Endpoint, delivery: Delivery): Promise<Outcome>;
  /**
   * Runs one delivery in a slot the caller already took from
   * {@linkcode ServiceInternals.slotsOf}; `release` is called once the
   * handler itself has returned (which may be after the outcome, when the
   * deadline passed first).
   */
  runInSlot(endpoint: Endpoint, delivery: Delivery, release: () => void): Promise<Outcome>;
  /** The concurrency slots of an endpoint, shared by every source. */
  slotsOf(endpoint: Endpoint): Semaphore;
  /**
   * Registers a message source to stop with the service. `fn` is called when
   * stopping begins: it should stop taking messages and resolve once its own
   * in-flight work (acks) is done. The service waits for it as for in-flight
   * handlers, within the grace period.
   */
  onStop(fn: () => Promise<void>): void;
}

const registry = new WeakMap<Service, ServiceInternals>();

/**
 * Records the internals of a service (its implementation calls it once).
 *
 * @param service The public face.
 * @param internals What sources use.
 */
export function registerInternals(service: Service, internals: ServiceInternals): void {
  registry.set(service, internals);
}

/**
 * The internals of a service made by `createService`.
 *
 * @param service The service.
 * @returns Its internals.
 * @throws {TypeError} When the service was not made by `createService`.
 */
export function internalsOf(service: Service): ServiceInternals {
  const internals = registry.get(service);
  if (!internals) {
    throw new TypeError(
      `Cannot feed service "${service.name}": it was not made by createService()`,
    );
  }
  return internals;
}
