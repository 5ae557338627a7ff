/**
 * The concurrency slots of one endpoint: at most `limit` messages handled at
 * once, at most `maxPending` waiting for a slot, and nothing buffered beyond
 * that. Both delivery paths use it: a core subscription queues a message
 * with {@linkcode Semaphore.enqueue} (refusing it `Overloaded` when the queue
 * is full), and a durable consumer pulls only as many messages as
 * {@linkcode Semaphore.available} says and takes each slot with
 * {@linkcode Semaphore.tryAcquire}.
 *
 * A slot is released by whoever took it, once the handler itself has
 * returned: a handler that ignores its signal keeps its slot. Releasing
 * hands the slot straight to the oldest queued task, in FIFO order. When the
 * service stops for good, {@linkcode Semaphore.close} takes the queued tasks
 * out, so that none of them starts after the grace period.
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { Semaphore } from "./semaphore.ts";
 *
 * const slots = new Semaphore(1, 1);
 * console.log(slots.tryAcquire(), slots.available); // true 0
 * const order: string[] = [];
 * console.log(slots.enqueue({ start: () => order.push("queued"), reject: () => {} })); // true
 * console.log(slots.enqueue({ start: () => {}, reject: () => {} })); // false: the queue is full
 * slots.release();
 * console.log(order, slots.inFlight, slots.pending); // ["queued"] 1 0
 * ```
 *
 * @module
 */

/** A message waiting for a slot. */
export interface QueuedTask {
  /** Starts the message; it holds a slot when called and must release it. */
  start(): void;
  /** Tells the message it will never start (the service stopped for good). */
  reject(): void;
}

/** Bounded concurrency with a bounded FIFO queue. */
export class Semaphore {
  /** How many slots there are. */
  readonly limit: number;
  /** How many tasks may wait for a slot. */
  readonly maxPending: number;
  #inFlight = 0;
  /** Tasks from `#head` on; the consumed ones before it are cleared. */
  #queue: (QueuedTask | undefined)[] = [];
  #head = 0;
  #closed = false;
  #onIdle: (() => void) | undefined;
  #onAvailable: (() => void) | undefined;

  /**
   * Creates the slots.
   *
   * @param limit How many tasks hold a slot at once (at least 1).
   * @param maxPending How many tasks may wait (0 for none).
   */
  constructor(limit: number, maxPending: number) {
    this.limit = limit;
    this.maxPending = maxPending;
  }

  /** Slots taken now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Tasks waiting now. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  /** Free slots now (0 once closed). */
  get available(): number {
    return this.#closed ? 0 : this.limit - this.#inFlight;
  }

  /** Whether nothing holds a slot and nothing waits. */
  get idle(): boolean {
    return this.#inFlight === 0 && this.pending === 0;
  }

  /** Whether {@linkcode Semaphore.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Takes a slot if one is free.
   *
   * @returns Whether the caller now holds a slot.
   */
  tryAcquire(): boolean {
    if (this.#closed || this.#inFlight >= this.limit) return false;
    this.#inFlight++;
    return true;
  }

  /**
   * Starts the task in a free slot at once, or queues it.
   *
   * @param task The task.
   * @returns False when no slot is free and the queue is full (or closed):
   *   the task was neither started nor queued.
   */
  enqueue(task: QueuedTask): boolean {
    if (this.tryAcquire()) {
      task.start();
      return true;
    }
    if (this.#closed || this.pending >= this.maxPending) return false;
    this.#queue.push(task);
    return true;
  }

  /** Frees a slot, or hands it to the oldest queued task. */
  release(): void {
    const next = this.#closed ? undefined : this.#shift();
    if (next) {
      next.start();
      return;
    }
    this.#inFlight--;
    if (this.#inFlight === 0 && this.pending === 0) this.#wake("idle");
    this.#wake("available");
  }

  /**
   * Resolves once a slot is free, or the semaphore is closed.
   *
   * @returns When {@linkcode Semaphore.available} may be above 0.
   */
  whenAvailable(): Promise<void> {
    if (this.#closed || this.#inFlight < this.limit) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onAvailable;
      this.#onAvailable = () => {
        previous?.();
        resolve();
      };
    });
  }

  /**
   * Wakes a {@linkcode Semaphore.whenAvailable} waiter without a free slot
   * (a consumer must look at its connection again).
   */
  interrupt(): void {
    this.#wake("available");
  }

  /**
   * Resolves once nothing holds a slot and nothing waits.
   *
   * @returns When the semaphore is idle.
   */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onIdle;
      this.#onIdle = () => {
        previous?.();
        resolve();
      };
    });
  }

  /**
   * Stops for good: no slot is given any more, and every queued task is
   * rejected. Slots already taken stay taken until released.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const rejected = this.#queue.slice(this.#head);
    this.#queue = [];
    this.#head = 0;
    for (const task of rejected) task?.reject();
    if (this.#inFlight === 0) this.#wake("idle");
    this.#wake("available");
  }

  #shift(): QueuedTask | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const task = this.#queue[this.#head];
    // The slot lets go of the task at once: a queued task holds its message (up to the max
    // payload), and the consumed prefix is dropped only now and then (instead of shifting every
    // time), so a task left in it would keep its message alive long after it was handled.
    this.#queue[this.#head++] = undefined;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return task;
  }

  #wake(which: "idle" | "available"): void {
    const wake = which === "idle" ? this.#onIdle : this.#onAvailable;
    if (!wake) return;
    if (which === "idle") this.#onIdle = undefined;
    else this.#onAvailable = undefined;
    wake();
  }
}
