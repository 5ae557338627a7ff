/**
 * A bounded table of live sessions for services whose input is a stream of
 * many messages per session (audio chunks, say) rather than independent
 * requests.
 *
 * - Per-session serial processing: {@linkcode SessionTable.run} queues a task
 *   behind the session's earlier tasks, so the work (and the results) of one
 *   session stay in arrival order, while different sessions run
 *   concurrently. A task that throws rejects its own call and nothing else:
 *   the session goes on, and other sessions never notice.
 * - Bounded: at most `maxSessions` sessions (opening one more throws
 *   {@linkcode OverloadedError}) and at most `maxQueued` waiting tasks per
 *   session (one more throws too), so memory stays bounded whatever clients
 *   send.
 * - Idle close: {@linkcode SessionTable.sweep} closes every session with no
 *   task for `idleMs`, on an injectable clock; {@linkcode SessionTable.start}
 *   runs the sweep on a timer until its signal fires.
 * - Close runs after the session's queued tasks, through the `close` hook,
 *   which may flush (publish a last result) before the session is gone.
 *
 * Needs no permission.
 *
 * @example Two sessions, each in order
 * ```ts
 * import { SessionTable } from "@homelab/handler-base/sessions";
 *
 * const seen: string[] = [];
 * await using table = new SessionTable<string[]>({ open: () => [] });
 * await Promise.all([
 *   table.run("a", (chunks) => chunks.push("a1")),
 *   table.run("b", (chunks) => chunks.push("b1")),
 *   table.run("a", (chunks) => chunks.push("a2")),
 * ]);
 * await table.close("a", "end");
 * console.log(table.size, table.has("b")); // 1 true
 * ```
 *
 * @module
 */
import { OverloadedError } from "./errors.ts";

/** Why a session closed. */
export type SessionCloseReason = "end" | "idle" | "lost" | "shutdown";

/** Options of {@linkcode SessionTable}. */
export interface SessionTableOptions<S> {
  /**
   * Makes the state of a new session. A throw refuses the session: the
   * {@linkcode SessionTable.run} call that opened it rejects with the error.
   */
  open(id: string): S;
  /**
   * Called once when a session closes, after its queued tasks; may flush.
   * What it throws is passed to `onError` and the session is gone anyway.
   *
   * @default nothing
   */
  close?(state: S, id: string, reason: SessionCloseReason): void | Promise<void>;
  /**
   * Told about failures nobody awaits (a `close` hook that threw during a sweep).
   *
   * @default nothing
   */
  onError?(error: unknown, id: string): void;
  /**
   * The most sessions at once.
   *
   * @default 1000
   */
  maxSessions?: number;
  /**
   * The most tasks queued (running or waiting) in one session.
   *
   * @default 1024
   */
  maxQueued?: number;
  /**
   * A session with no task for this long is closed by {@linkcode SessionTable.sweep}
   * (0 or less: never).
   *
   * @default 30000
   */
  idleMs?: number;
  /**
   * The clock, in milliseconds.
   *
   * @default Date.now
   */
  now?: () => number;
}

/** Options of {@linkcode SessionTable.run}. */
export interface RunOptions {
  /**
   * Open the session when it does not exist; when false, `run` resolves
   * `undefined` without calling the task.
   *
   * @default true
   */
  open?: boolean;
}

interface Entry<S> {
  readonly state: S;
  tail: Promise<void>;
  queued: number;
  lastActive: number;
  closing: boolean;
}

/** Live sessions, each processed in order; see the module doc. */
export class SessionTable<S> implements AsyncDisposable {
  readonly #sessions = new Map<string, Entry<S>>();
  readonly #options: SessionTableOptions<S>;
  readonly #maxSessions: number;
  readonly #maxQueued: number;
  readonly #idleMs: number;
  readonly #now: () => number;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * Creates an empty table.
   *
   * @param options The session hooks, limits and clock.
   * @throws {RangeError} When a limit is not a positive integer.
   */
  constructor(options: SessionTableOptions<S>) {
    this.#options = options;
    this.#maxSessions = options.maxSessions ?? 1000;
    this.#maxQueued = options.maxQueued ?? 1024;
    this.#idleMs = options.idleMs ?? 30_000;
    this.#now = options.now ?? Date.now;
    for (
      const [name, value] of [["maxSessions", this.#maxSessions], ["maxQueued", this.#maxQueued]]
    ) {
      if (!Number.isInteger(value) || (value as number) < 1) {
        throw new RangeError(
          `Cannot create a session table: ${name} ${value} is not a positive integer`,
        );
      }
    }
  }

  /** How many sessions are open. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * Whether a session is open (and not closing).
   *
   * @param id The session id.
   * @returns True when open.
   */
  has(id: string): boolean {
    const entry = this.#sessions.get(id);
    return entry !== undefined && !entry.closing;
  }

  /**
   * The ids of the open sessions.
   *
   * @returns The ids, in opening order.
   */
  ids(): string[] {
    return [...this.#sessions.keys()];
  }

  /**
   * Queues a task on a session, opening the session if needed. The task is
   * called with the session's state once the session's earlier tasks have
   * settled (in a microtask when there are none).
   *
   * @typeParam T The task's result.
   * @param id The session id.
   * @param task The work, sync or async.
   * @param options Whether to open a missing session.
   * @returns The task's result; `undefined` when the session is missing and `open` is false.
   * @throws {OverloadedError} When opening would exceed `maxSessions`, or the session's queue is full.
   * @throws What `open` or the task throws (the session stays usable).
   */
  run<T>(
    id: string,
    task: (state: S, id: string) => T | Promise<T>,
    options: RunOptions = {},
  ): Promise<T | undefined> {
    let entry = this.#sessions.get(id);
    if (entry?.closing) entry = undefined;
    if (!entry) {
      if (options.open === false) return Promise.resolve(undefined);
      try {
        entry = this.#open(id);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (entry.queued >= this.#maxQueued) {
      return Promise.reject(
        new OverloadedError(
          `Cannot queue work on session ${id}: ${entry.queued} tasks are waiting`,
        ),
      );
    }
    return this.#enqueue(entry, () => task(entry.state, id));
  }

  /**
   * Closes a session after its queued tasks: calls the `close` hook, then
   * forgets the session. Later {@linkcode SessionTable.run} calls open a new one.
   *
   * @param id The session id.
   * @param reason Why.
   * @returns Resolves when closed (at once when there is no such session).
   */
  close(id: string, reason: SessionCloseReason): Promise<void> {
    const entry = this.#sessions.get(id);
    if (!entry || entry.closing) return entry ? entry.tail : Promise.resolve();
    entry.closing = true;
    return this.#enqueue(entry, async () => {
      try {
        await this.#options.close?.(entry.state, id, reason);
      } finally {
        if (this.#sessions.get(id) === entry) this.#sessions.delete(id);
      }
    });
  }

  /**
   * Closes every session idle for `idleMs` or longer (no task queued or
   * running) with reason `"idle"`.
   *
   * @returns The ids closed.
   */
  async sweep(): Promise<string[]> {
    if (this.#idleMs <= 0) return [];
    const now = this.#now();
    const idle: string[] = [];
    for (const [id, entry] of this.#sessions) {
      if (!entry.closing && entry.queued === 0 && now - entry.lastActive >= this.#idleMs) {
        idle.push(id);
      }
    }
    await Promise.all(idle.map((id) => this.#closeQuietly(id, "idle")));
    return idle;
  }

  /**
   * Runs {@linkcode SessionTable.sweep} every `intervalMs` until `signal` fires.
   *
   * @param options The interval (default a quarter of `idleMs`, at least 50 ms) and the signal.
   */
  start(options: { intervalMs?: number; signal?: AbortSignal } = {}): void {
    if (this.#timer !== undefined || this.#idleMs <= 0) return;
    const intervalMs = options.intervalMs ?? Math.max(50, Math.floor(this.#idleMs / 4));
    this.#timer = setInterval(() => void this.sweep(), intervalMs);
    options.signal?.addEventListener("abort", () => this.stop(), { once: true });
  }

  /** Stops the timer of {@linkcode SessionTable.start}. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Closes every session.
   *
   * @param reason Why (default `"shutdown"`).
   */
  async closeAll(reason: SessionCloseReason = "shutdown"): Promise<void> {
    await Promise.all(this.ids().map((id) => this.#closeQuietly(id, reason)));
  }

  /** Stops the sweep and closes every session with reason `"shutdown"`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
    await this.closeAll("shutdown");
  }

  #open(id: string): Entry<S> {
    if (this.#sessions.size >= this.#maxSessions) {
      throw new OverloadedError(
        `Cannot open session ${id}: ${this.#sessions.size} sessions are open, the limit`,
      );
    }
    const entry: Entry<S> = {
      state: this.#options.open(id),
      tail: Promise.resolve(),
      queued: 0,
      lastActive: this.#now(),
      closing: false,
    };
    this.#sessions.set(id, entry);
    return entry;
  }

  #closeQuietly(id: string, reason: SessionCloseReason): Promise<void> {
    return this.close(id, reason).catch((error) => this.#options.onError?.(error, id));
  }

  #enqueue<T>(entry: Entry<S>, work: () => T | Promise<T>): Promise<T> {
    entry.lastActive = this.#now();
    entry.queued++;
    const result = entry.tail.then(() => {
      entry.lastActive = this.#now();
      return work();
    });
    const done = () => {
      entry.queued--;
      entry.lastActive = this.#now();
    };
    // Settle the bookkeeping before the caller sees the result.
    const tracked = result.then(
      (value) => {
        done();
        return value;
      },
      (error) => {
        done();
        throw error;
      },
    );
    entry.tail = tracked.then(() => {}, () => {});
    return tracked;
  }
}
