/**
 * A circuit breaker per backend, so that a backend that is down fails its
 * callers at once with `BackendUnavailable` instead of holding each request
 * through connection attempts and retry backoff (which fills an endpoint's
 * slots and turns an outage into `Overloaded`).
 *
 * The states:
 * - **closed**: calls go through. Every call that reached the backend (any
 *   HTTP answer, even an error status) resets the count of consecutive
 *   connection failures; `failureThreshold` consecutive connection failures
 *   open the circuit.
 * - **open**: calls are refused without touching the network, for `openMs`.
 * - **half-open**: after `openMs`, one call (the probe) goes through while
 *   the others are still refused. When it reaches the backend the circuit
 *   closes; when its connection fails the circuit opens for another `openMs`.
 *   A probe that ends without an answer either way (its caller gave up)
 *   lets the next call probe.
 *
 * Only connection failures count (refused, reset, DNS, TLS): a backend that
 * answers 503 is up and says so, and its retry policy is the HTTP client's.
 * The HTTP client (`clients/http.ts`) uses one breaker per client; a
 * {@linkcode CircuitBreakers} registry shares one per backend name across a
 * service's clients and is what `serviceMain` shows in `/ready` details and in
 * `$SRV.STATS`. Registries are plain objects passed in: there is no
 * module-level state.
 *
 * Needs no permissions.
 *
 * @example A breaker driven by hand, with a fake clock
 * ```ts
 * import { CircuitBreaker } from "@homelab/handler-base/clients/circuit-breaker";
 *
 * let now = 0;
 * const breaker = new CircuitBreaker("tts", { failureThreshold: 2, openMs: 1000, now: () => now });
 * breaker.tryAcquire()?.failed("connection refused");
 * breaker.tryAcquire()?.failed("connection refused");
 * console.log(breaker.state, breaker.tryAcquire()); // "open" undefined
 * now = 1000;
 * const probe = breaker.tryAcquire();
 * console.log(breaker.state, breaker.tryAcquire()); // "half-open" undefined
 * probe?.succeeded();
 * console.log(breaker.state); // "closed"
 * ```
 *
 * @module
 */
import type { Logger } from "../log.ts";

/** The state of a {@linkcode CircuitBreaker}. */
export type CircuitState = "closed" | "open" | "half-open";

/** Options of a {@linkcode CircuitBreaker} (and of every breaker a registry makes). */
export interface CircuitBreakerOptions {
  /**
   * How many consecutive connection failures open the circuit.
   *
   * @default 5
   */
  failureThreshold?: number;
  /**
   * How long the circuit stays open before a probe may go through, in milliseconds.
   *
   * @default 5000
   */
  openMs?: number;
  /**
   * The clock, in milliseconds (tests inject one; only differences are used).
   *
   * @default performance.now
   */
  now?: () => number;
  /**
   * Where opening and closing are logged (a warning and an info line).
   *
   * @default no logging
   */
  logger?: Logger;
}

/** What a breaker reports about itself (in `/ready` details and `$SRV.STATS`). */
export interface CircuitSnapshot {
  /** The state now. */
  readonly state: CircuitState;
  /** Connection failures since the backend last answered. */
  readonly consecutive_failures: number;
  /** The last connection failure ("connection refused"), or "". */
  readonly last_failure: string;
  /** How many times the circuit opened since the breaker was made. */
  readonly opened_count: number;
  /** While open: milliseconds until a probe may go through; otherwise 0. */
  readonly retry_in_ms: number;
}

/**
 * The right to make one call, given by {@linkcode CircuitBreaker.tryAcquire}.
 * Settle it once; later calls are ignored.
 */
export interface CircuitPermit {
  /** The call reached the backend (any HTTP answer). */
  succeeded(): void;
  /**
   * The call could not connect.
   *
   * @param reason A short, secret-free phrase ("connection refused").
   */
  failed(reason: string): void;
  /** The call ended without telling either way (its caller gave up). */
  released(): void;
}

const DEFAULT_FAILURE_THRESHOLD = 5;
const DEFAULT_OPEN_MS = 5000;

/**
 * The breaker of one backend; see the module documentation for its states.
 *
 * @example Refuse while open
 * ```ts
 * import { CircuitBreaker } from "@homelab/handler-base/clients/circuit-breaker";
 *
 * const breaker = new CircuitBreaker("llm", { failureThreshold: 1 });
 * breaker.tryAcquire()?.failed("connection refused");
 * console.log(breaker.snapshot().state, breaker.snapshot().last_failure); // "open" "connection refused"
 * ```
 */
export class CircuitBreaker {
  /** The backend's short name. */
  readonly backend: string;
  readonly #threshold: number;
  readonly #openMs: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  #failures = 0;
  #lastFailure = "";
  #openedAt: number | undefined;
  #openedCount = 0;
  #probing = false;

  /**
   * Creates a closed breaker.
   *
   * @param backend The backend's short name, used in logs.
   * @param options Threshold, open time, clock and logger.
   * @throws {RangeError} When the threshold is not a positive integer or the open time is negative.
   */
  constructor(backend: string, options: CircuitBreakerOptions = {}) {
    const threshold = options.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD;
    const openMs = options.openMs ?? DEFAULT_OPEN_MS;
    if (!Number.isInteger(threshold) || threshold < 1) {
      throw new RangeError(
        `Cannot create a circuit breaker: failureThreshold ${threshold} is not a positive integer`,
      );
    }
    if (!(openMs >= 0)) {
      throw new RangeError(`Cannot create a circuit breaker: openMs ${openMs} is negative`);
    }
    this.backend = backend;
    this.#threshold = threshold;
    this.#openMs = openMs;
    this.#now = options.now ?? (() => performance.now());
    this.#logger = options.logger;
  }

  /** The state now (an open circuit whose time is up reads as half-open). */
  get state(): CircuitState {
    if (this.#openedAt === undefined) return "closed";
    return this.#now() - this.#openedAt >= this.#openMs ? "half-open" : "open";
  }

  /**
   * Asks to make one call.
   *
   * @returns A permit to settle when the call ends, or undefined when the
   * circuit refuses the call (open, or half-open with a probe under way).
   */
  tryAcquire(): CircuitPermit | undefined {
    const state = this.state;
    if (state === "open") return undefined;
    if (state === "half-open") {
      if (this.#probing) return undefined;
      this.#probing = true;
      return this.#permit(true);
    }
    return this.#permit(false);
  }

  /**
   * How long until the circuit lets a probe through.
   *
   * @returns Milliseconds; 0 unless open.
   */
  retryInMs(): number {
    if (this.#openedAt === undefined) return 0;
    return Math.max(0, Math.ceil(this.#openedAt + this.#openMs - this.#now()));
  }

  /**
   * What the breaker reports about itself.
   *
   * @returns Its state and counters.
   */
  snapshot(): CircuitSnapshot {
    return {
      state: this.state,
      consecutive_failures: this.#failures,
      last_failure: this.#lastFailure,
      opened_count: this.#openedCount,
      retry_in_ms: this.retryInMs(),
    };
  }

  #permit(probe: boolean): CircuitPermit {
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      if (probe) this.#probing = false;
      return true;
    };
    return {
      succeeded: () => settle() && this.#onSuccess(),
      failed: (reason) => settle() && this.#onFailure(reason, probe),
      released: () => void settle(),
    };
  }

  #onSuccess(): void {
    const wasOpen = this.#openedAt !== undefined;
    this.#failures = 0;
    this.#openedAt = undefined;
    if (wasOpen) this.#logger?.info("Backend reachable again: circuit closed", this.#fields());
  }

  #onFailure(reason: string, probe: boolean): void {
    this.#failures++;
    this.#lastFailure = reason;
    const closed = this.#openedAt === undefined;
    // A probe that fails opens the circuit again; so do enough failures in a row.
    if (probe || (closed && this.#failures >= this.#threshold)) {
      this.#openedAt = this.#now();
      this.#openedCount++;
      if (closed) {
        this.#logger?.warn("Backend unreachable: circuit opened", {
          ...this.#fields(),
          open_ms: this.#openMs,
        });
      }
    }
  }

  #fields(): Record<string, unknown> {
    return {
      backend: this.backend,
      consecutive_failures: this.#failures,
      last_failure: this.#lastFailure,
    };
  }
}

/**
 * One breaker per backend name, shared by the clients of a service, and the
 * snapshot of them all for health and discovery. `serviceMain` makes one per
 * service and hands it to `setup` (`context.clients.breakers`); every
 * `<backend>ClientFromConfig` factory takes it.
 *
 * @example Two clients of one backend share its breaker
 * ```ts
 * import { CircuitBreakers } from "@homelab/handler-base/clients/circuit-breaker";
 *
 * const breakers = new CircuitBreakers({ failureThreshold: 3 });
 * console.log(breakers.get("tts") === breakers.get("tts")); // true
 * console.log(breakers.snapshot()); // { tts: { state: "closed", consecutive_failures: 0, last_failure: "", opened_count: 0, retry_in_ms: 0 } }
 * ```
 */
export class CircuitBreakers {
  readonly #options: CircuitBreakerOptions;
  readonly #breakers = new Map<string, CircuitBreaker>();

  /**
   * Creates an empty registry.
   *
   * @param options The options of every breaker it makes.
   */
  constructor(options: CircuitBreakerOptions = {}) {
    this.#options = { ...options };
  }

  /**
   * The breaker of a backend, made on first use.
   *
   * @param backend The backend's short name ("tts", "llm", ...).
   * @returns Its breaker.
   */
  get(backend: string): CircuitBreaker {
    let breaker = this.#breakers.get(backend);
    if (!breaker) {
      breaker = new CircuitBreaker(backend, this.#options);
      this.#breakers.set(backend, breaker);
    }
    return breaker;
  }

  /** The number of backends with a breaker. */
  get size(): number {
    return this.#breakers.size;
  }

  /**
   * Every breaker's snapshot, by backend name.
   *
   * @returns The snapshots.
   */
  snapshot(): Record<string, CircuitSnapshot> {
    const out: Record<string, CircuitSnapshot> = {};
    for (const [name, breaker] of this.#breakers) out[name] = breaker.snapshot();
    return out;
  }
}
