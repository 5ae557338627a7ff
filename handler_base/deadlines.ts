/**
 * The deadlines of the messages in flight in one service, checked by one
 * ticker instead of a timer per message: a `setTimeout` plus `clearTimeout`
 * per message cost more than the rest of the dispatch (docs/PERFORMANCE.md).
 * What is watched is kept in an array, each item holding its index in
 * {@linkcode Expirable.deadlineSlot}, so watching and unwatching is a push
 * and a swap with the last entry: no hashing and no allocation per message.
 * The ticker runs only while something is watched and stops at the first
 * idle tick, so an idle service holds no timer. Its period is the precision
 * of a deadline ({@linkcode DEADLINE_TICK_MS}, or less for shorter
 * deadlines).
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { Deadlines } from "./deadlines.ts";
 *
 * let now = 0;
 * const deadlines = new Deadlines({ now: () => now });
 * const run = {
 *   deadlineAt: 100,
 *   expired: false,
 *   expire() { this.expired = true; },
 * };
 * deadlines.watch(run, 100);
 * now = 150;
 * deadlines.check();
 * console.log(run.expired, deadlines.size); // true 0
 * deadlines.stop();
 * ```
 *
 * @module
 */
import type { TimeoutError } from "./errors.ts";

/** How often deadlines are checked: the precision of a message's deadline. */
export const DEADLINE_TICK_MS = 25;

/** Something with a deadline. */
export interface Expirable {
  /** When the deadline passes, on the clock of {@linkcode DeadlinesOptions.now}. */
  readonly deadlineAt: number;
  /**
   * Ends the wait. Called once: without a reason when its own deadline
   * passed, or with the reason given to {@linkcode Deadlines.expireAll}.
   */
  expire(reason?: TimeoutError): void;
  /**
   * Where {@linkcode Deadlines} keeps the item while it is watched (its
   * index), -1 or absent when it is not. Written by `Deadlines` only.
   */
  deadlineSlot?: number;
}

/** Options of {@linkcode Deadlines}. */
export interface DeadlinesOptions {
  /**
   * The clock, in milliseconds.
   *
   * @default performance.now
   */
  now?: () => number;
  /**
   * The longest period of the ticker, in milliseconds.
   *
   * @default DEADLINE_TICK_MS
   */
  tickMs?: number;
}

/** The deadlines of one service. */
export class Deadlines {
  /** What is watched; each item's `deadlineSlot` is its index here. */
  #watched: Expirable[] = [];
  readonly #now: () => number;
  readonly #tickMs: number;
  #ticker: ReturnType<typeof setInterval> | undefined;
  /** The reading {@linkcode Deadlines.arrivalTime} gives until the current task's microtasks end; -1 when none. */
  #arrival = -1;
  readonly #forgetArrival = () => {
    this.#arrival = -1;
  };

  /**
   * Creates an empty set; nothing ticks until something is watched.
   *
   * @param options The clock and the tick.
   */
  constructor(options: DeadlinesOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#tickMs = Math.max(1, options.tickMs ?? DEADLINE_TICK_MS);
  }

  /** The current time on this set's clock. */
  now(): number {
    return this.#now();
  }

  /**
   * The time on this set's clock at which the current run of synchronous code
   * first asked: one reading serves until the microtasks queued so far have
   * run. The messages parsed from one socket read arrive together, so they
   * share one start instead of paying a clock read each (about 0.2 µs in
   * Deno); a deadline counted from it is earlier by at most that run.
   */
  arrivalTime(): number {
    if (this.#arrival < 0) {
      this.#arrival = this.#now();
      queueMicrotask(this.#forgetArrival);
    }
    return this.#arrival;
  }

  /** How many are watched. */
  get size(): number {
    return this.#watched.length;
  }

  /**
   * Starts checking a deadline (nothing happens if it is watched already).
   *
   * @param item What expires.
   * @param timeoutMs Its timeout: a shorter one makes the ticker tick faster.
   */
  watch(item: Expirable, timeoutMs: number): void {
    if (isWatchedIn(this.#watched, item)) return;
    item.deadlineSlot = this.#watched.length;
    this.#watched.push(item);
    this.#ticker ??= setInterval(
      () => this.check(),
      Math.max(1, Math.min(this.#tickMs, timeoutMs)),
    );
  }

  /**
   * Stops checking a deadline.
   *
   * @param item What no longer expires.
   */
  unwatch(item: Expirable): void {
    const watched = this.#watched;
    if (!isWatchedIn(watched, item)) return;
    const slot = item.deadlineSlot!;
    const last = watched.pop()!;
    if (last !== item) {
      watched[slot] = last;
      last.deadlineSlot = slot;
    }
    item.deadlineSlot = -1;
  }

  /** Expires what is past its deadline; stops the ticker when nothing is watched. */
  check(): void {
    const watched = this.#watched;
    if (watched.length === 0) {
      this.stop();
      return;
    }
    const now = this.#now();
    let due: Expirable[] | undefined;
    for (const item of watched) {
      if (now >= item.deadlineAt) (due ??= []).push(item);
    }
    if (!due) return;
    for (const item of due) {
      if (!isWatchedIn(watched, item)) continue;
      this.unwatch(item);
      item.expire();
    }
  }

  /**
   * Expires everything watched now (the service stops for good).
   *
   * @param reason What each one's signal is aborted with.
   */
  expireAll(reason: TimeoutError): void {
    const all = this.#watched;
    this.#watched = [];
    for (const item of all) item.deadlineSlot = -1;
    for (const item of all) item.expire(reason);
  }

  /** Stops the ticker. */
  stop(): void {
    clearInterval(this.#ticker);
    this.#ticker = undefined;
  }
}

/**
 * Whether `item` is at its slot in `watched`. An unwatched item's slot is -1,
 * which must not be used as an index: `array[-1]` is a property lookup along
 * the prototype chain, about 90 ns against a few for an element.
 */
function isWatchedIn(watched: readonly Expirable[], item: Expirable): boolean {
  const slot = item.deadlineSlot ?? -1;
  return slot >= 0 && watched[slot] === item;
}
