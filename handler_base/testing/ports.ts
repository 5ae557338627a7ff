/**
 * Loopback ports for tests: one that is free to listen on, and a URL where
 * nothing listens (for "connection refused" cases).
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closedPortUrl, freePort } from "@homelab/handler-base/testing";
 *
 * assert.deepEqual([freePort() > 0, closedPortUrl("nats").startsWith("nats://127.0.0.1:")], [true, true]);
 * ```
 *
 * @module
 */

/**
 * A loopback port that was free a moment ago (taken and released again), so
 * a subprocess can be told where to listen.
 *
 * @returns The port number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { freePort } from "@homelab/handler-base/testing";
 *
 * const port = freePort();
 * assert.equal(port > 0, true);
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/**
 * A loopback URL where nothing listens: connecting to it is refused.
 *
 * @param scheme The URL scheme.
 * @returns The URL, such as `http://127.0.0.1:41234`.
 *
 * @example
 * ```ts
 * import { closedPortUrl } from "@homelab/handler-base/testing";
 *
 * await fetch(closedPortUrl()).catch(() => console.log("refused"));
 * ```
 */
export function closedPortUrl(scheme = "http"): string {
  return `${scheme}://127.0.0.1:${freePort()}`;
}
