/**
 * A flush that concurrent callers share: when it resolves, the server has
 * received everything each caller published before calling it. A durable
 * consumer flushes before each ack (a handler's outputs must reach the
 * server before its input is acked); sharing the flush makes that one round
 * trip for every message acked meanwhile, not one each.
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { sharedFlush } from "./shared_flush.ts";
 * import type { NatsConnection } from "./natsutil.ts";
 *
 * let flushes = 0;
 * const nc = { flush: () => Promise.resolve(void flushes++) } as unknown as NatsConnection;
 * const flush = sharedFlush(nc, 1000);
 * await Promise.all([flush(), flush(), flush()]);
 * console.log(flushes); // 2: the one under way, and one for every caller that came meanwhile
 * ```
 *
 * @module
 */
import { TimeoutError } from "./errors.ts";
import type { NatsConnection } from "./natsutil.ts";

/**
 * Makes a shared flush of a connection.
 *
 * @param nc The connection.
 * @param timeoutMs How long one flush may take before it fails with a `TimeoutError`.
 * @returns The flush: holds no state but the flush under way and the one after it.
 */
export function sharedFlush(nc: NatsConnection, timeoutMs: number): () => Promise<void> {
  let current: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  function flush(): Promise<void> {
    if (!current) {
      current = withTimeout(nc.flush(), timeoutMs, "Cannot flush: no answer from NATS")
        .finally(() => current = undefined);
      return current;
    }
    // The flush under way left before this caller's publishes: one more
    // after it serves every caller that arrives meanwhile.
    next ??= current.catch(() => {}).then(() => {
      next = undefined;
      return flush();
    });
    return next;
  }
  return flush;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
