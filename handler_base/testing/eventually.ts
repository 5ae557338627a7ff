/**
 * Polls a condition until it holds, with a bounded wait: for state that has
 * no event to wait on (a consumer's info after acks, a subprocess's
 * `$SRV.STATS`). A check that throws (a broker still coming back) counts as
 * not yet. Prefer an event when there is one.
 *
 * Needs no permission.
 *
 * @example
 * ```ts
 * import { eventually } from "@homelab/handler-base/testing";
 *
 * let count = 0;
 * await eventually(() => Promise.resolve(++count >= 3), { intervalMs: 1 });
 * console.log(count); // 3
 * await eventually(() => Promise.resolve(false), { timeoutMs: 20 })
 *   .catch((error) => console.log(error.message)); // Condition not met within 20 ms
 * ```
 *
 * @module
 */
import { delay } from "../async.ts";

/** Options of {@linkcode eventually}. */
export interface EventuallyOptions {
  /**
   * How long to poll before failing, in milliseconds.
   *
   * @default 20000
   */
  timeoutMs?: number;
  /**
   * The pause between checks, in milliseconds.
   *
   * @default 50
   */
  intervalMs?: number;
}

/**
 * Resolves once `check` resolves true; rejects when the time is up.
 *
 * @param check The condition; a rejection counts as false.
 * @param options The bound and the pause between checks.
 * @returns When the condition holds.
 * @throws {Error} When it does not hold within `timeoutMs`.
 *
 * @example
 * ```ts
 * import { eventually } from "@homelab/handler-base/testing";
 *
 * const started = Date.now();
 * await eventually(() => Promise.resolve(Date.now() - started >= 0));
 * ```
 */
export async function eventually(
  check: () => Promise<boolean>,
  options: EventuallyOptions = {},
): Promise<void> {
  const { timeoutMs = 20_000, intervalMs = 50 } = options;
  const deadline = performance.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (performance.now() > deadline) {
      throw new Error(`Condition not met within ${timeoutMs} ms`);
    }
    await delay(intervalMs);
  }
}
