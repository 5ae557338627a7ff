/**
 * Following runs until they finish: each followed run is read again every
 * `pollMs`; while nothing changes the interval grows by half up to
 * `maxPollMs`, a failed read doubles it up to `maxPollMs`, and a phase
 * change resets it. Every new phase is handed to `publish` once, the
 * terminal one last. A run is followed once however often it is asked for.
 *
 * {@linkcode RunFollower.resume} finds the unfinished runs of each engine (by
 * label or display name, not by memory) and follows them: how following
 * survives a restart of the service. It tries again with backoff while an
 * engine cannot be reached.
 *
 * @example
 * ```ts ignore
 * const follower = new RunFollower({ pollMs: 5000, maxPollMs: 60_000, publish, logger, signal });
 * follower.follow(engine, run);
 * ```
 *
 * @module
 */
import { delay } from "@homelab/handler-base/async";
import type { Logger } from "@homelab/handler-base/log";
import { type Engine, type Phase, type RunInfo, TERMINAL_PHASES } from "./engines.ts";

/** Options of {@linkcode RunFollower}. */
export interface RunFollowerOptions {
  /** The first interval between two reads of a run, in milliseconds. */
  pollMs: number;
  /** The longest interval, in milliseconds. */
  maxPollMs: number;
  /** Called with the run at each new phase (a failure is logged, not retried). */
  publish: (run: RunInfo) => void | Promise<void>;
  /** Where read failures are logged. */
  logger: Logger;
  /** Stops every follow. */
  signal: AbortSignal;
}

/** Follows runs until they finish. */
export class RunFollower {
  readonly #options: RunFollowerOptions;
  readonly #active = new Map<string, Promise<void>>();

  /**
   * Creates the follower.
   *
   * @param options Intervals, publisher, logger and signal.
   */
  constructor(options: RunFollowerOptions) {
    this.#options = options;
  }

  /** How many runs are followed now. */
  get size(): number {
    return this.#active.size;
  }

  /**
   * Follows a run unless it is followed already. Its current phase is
   * published first unless it is `alreadyPublished`.
   *
   * @param engine The run's engine.
   * @param run The run as last read.
   * @param alreadyPublished The phase the caller has published already.
   */
  follow(engine: Engine, run: RunInfo, alreadyPublished?: Phase): void {
    const key = `${engine.name}/${run.runId}`;
    if (this.#active.has(key) || this.#options.signal.aborted) return;
    const loop = this.#loop(engine, run, alreadyPublished)
      .catch((error) => {
        if (!this.#options.signal.aborted) {
          this.#options.logger.error("Following a run failed", { run_id: run.runId, error });
        }
      })
      .finally(() => this.#active.delete(key));
    this.#active.set(key, loop);
  }

  /**
   * Finds the unfinished runs of each engine and follows them; retries an
   * engine with backoff until it answers or the signal fires.
   *
   * @param engines The engines.
   * @returns Resolves once every engine was listed (or the signal fired).
   */
  async resume(engines: readonly Engine[]): Promise<void> {
    const { signal, logger, pollMs, maxPollMs } = this.#options;
    await Promise.all(engines.map(async (engine) => {
      let wait = pollMs;
      while (!signal.aborted) {
        try {
          const runs = await engine.unfinished(signal);
          if (runs.length > 0) {
            logger.info("Resuming runs", { engine: engine.name, count: runs.length });
          }
          for (const run of runs) this.follow(engine, run);
          return;
        } catch (error) {
          if (signal.aborted) return;
          logger.warn("Cannot list unfinished runs yet", { engine: engine.name, error });
          await delay(wait, { signal }).catch(() => {});
          wait = Math.min(wait * 2, maxPollMs);
        }
      }
    }));
  }

  /** Waits until every follow ended (after the signal fired, that is soon). */
  async settled(): Promise<void> {
    while (this.#active.size > 0) await Promise.all([...this.#active.values()]);
  }

  async #loop(engine: Engine, first: RunInfo, alreadyPublished?: Phase): Promise<void> {
    const { signal, logger, publish, pollMs, maxPollMs } = this.#options;
    let run = first;
    let published = alreadyPublished;
    let wait = pollMs;
    while (!signal.aborted) {
      if (run.phase !== published) {
        try {
          await publish(run);
        } catch (error) {
          logger.warn("Cannot publish a run's status", { run_id: run.runId, error });
        }
        published = run.phase;
      }
      if (TERMINAL_PHASES.has(run.phase)) return;
      await delay(wait, { signal });
      try {
        const next = await engine.get(run, signal);
        if (!next) {
          run = { ...run, phase: "error", message: "The run was deleted before it finished" };
          continue;
        }
        wait = next.phase === run.phase ? Math.min(Math.round(wait * 1.5), maxPollMs) : pollMs;
        run = next;
      } catch (error) {
        if (signal.aborted) return;
        logger.warn("Cannot read a run", { engine: engine.name, run_id: run.runId, error });
        wait = Math.min(wait * 2, maxPollMs);
      }
    }
  }
}
