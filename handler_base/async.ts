/**
 * Small helpers for waiting under an `AbortSignal`, after the designs of
 * `@std/async` (which is on JSR, out of reach of the build machines): stop
 * waiting for a promise when a signal fires, stop waiting for it after a time
 * (a test's bounded wait), and sleep until a time passes or a signal fires.
 * Every module of the package that waits uses these.
 *
 * Needs no permission.
 *
 * @example Give up on a slow promise
 * ```ts
 * import assert from "node:assert/strict";
 * import { abortable, delay } from "@homelab/handler-base/async";
 *
 * const slow = delay(10_000);
 * const caller = new AbortController();
 * const waiting = abortable(slow, caller.signal);
 * caller.abort(new Error("gave up"));
 * await assert.rejects(waiting, { message: "gave up" });
 * ```
 *
 * @module
 */

/**
 * Settles like the promise, or rejects with the signal's reason as soon as the
 * signal fires, whichever is first. The promise itself is not cancelled.
 *
 * @typeParam T The promise's value.
 * @param promise What to wait for.
 * @param signal Stops the wait; without one the promise is returned as is.
 * @returns The promise's value.
 * @throws {unknown} The signal's reason when it fires first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { abortable } from "@homelab/handler-base/async";
 *
 * const value = await abortable(Promise.resolve(42), AbortSignal.timeout(1000));
 * assert.equal(value, 42);
 * ```
 */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Options of {@linkcode delay}. */
export interface DelayOptions {
  /**
   * Ends the wait early: the returned promise rejects with the signal's reason.
   *
   * @default undefined (wait the whole time)
   */
  signal?: AbortSignal;
}

/**
 * Resolves after `ms` milliseconds, leaving no timer behind when the signal
 * ends the wait first.
 *
 * @param ms How long to wait, in milliseconds.
 * @param options The signal that ends the wait early.
 * @returns A promise that resolves after the delay.
 * @throws {unknown} The signal's reason when it fires first.
 *
 * @example Back off, unless the service stops
 * ```ts
 * import { delay } from "@homelab/handler-base/async";
 *
 * const stop = new AbortController();
 * await delay(10).then(() => console.log("waited"));
 * stop.abort();
 * await delay(10_000, { signal: stop.signal }).catch(() => console.log("stopped"));
 * ```
 */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Waits for a promise at most `ms` milliseconds, and says whether it settled
 * (fulfilled or rejected) in time. The promise itself is not cancelled, and
 * no timer is left behind either way: the bound of every stop step that
 * must not hang (a drain while the server is gone). For a wait that should
 * fail with the promise's value or a `TimeoutError`, see {@linkcode deadline}.
 *
 * @param promise What to wait for.
 * @param ms The longest wait, in milliseconds.
 * @returns True when the promise settled in time.
 *
 * @example
 * ```ts
 * import { delay, settlesWithin } from "@homelab/handler-base/async";
 *
 * console.log(await settlesWithin(Promise.resolve(), 1000)); // true
 * const never = new Promise<void>(() => {});
 * console.log(await settlesWithin(never, 10)); // false
 * ```
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Options of {@linkcode deadline}. */
export interface DeadlineOptions {
  /**
   * What is awaited, for the message of the timeout error.
   *
   * @default "a promise"
   */
  what?: string;
  /**
   * Ends the wait early: the returned promise rejects with the signal's reason.
   *
   * @default undefined
   */
  signal?: AbortSignal;
}

/**
 * Settles like the promise, or rejects with a `TimeoutError` after `ms`
 * milliseconds, whichever is first, leaving no timer behind. The promise
 * itself is not cancelled. Tests use it so that a wait for an event that never
 * comes fails in seconds instead of hanging.
 *
 * @typeParam T The promise's value.
 * @param promise What to wait for.
 * @param ms How long to wait, in milliseconds.
 * @param options What is awaited (for the message) and a signal.
 * @returns The promise's value.
 * @throws {DOMException} A `TimeoutError` naming what was awaited, when the time passes first.
 *
 * @example Bound a wait in a test
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline } from "@homelab/handler-base/async";
 *
 * assert.equal(await deadline(Promise.resolve("ok"), 1000), "ok");
 * const never = new Promise<never>(() => {});
 * await assert.rejects(deadline(never, 10, { what: "the request to close" }), {
 *   name: "TimeoutError",
 *   message: "Timed out after 10 ms waiting for the request to close",
 * });
 * ```
 */
export function deadline<T>(
  promise: Promise<T>,
  ms: number,
  options: DeadlineOptions = {},
): Promise<T> {
  const { what = "a promise", signal } = options;
  const expired = new AbortController();
  const timer = setTimeout(
    () =>
      expired.abort(
        new DOMException(`Timed out after ${ms} ms waiting for ${what}`, "TimeoutError"),
      ),
    ms,
  );
  const either = signal ? AbortSignal.any([expired.signal, signal]) : expired.signal;
  return abortable(promise, either).finally(() => clearTimeout(timer));
}
