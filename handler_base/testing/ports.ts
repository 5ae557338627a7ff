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
 * Where {@linkcode freePort} looks: below the ephemeral ports (Linux starts them
 * at 32768, macOS at 49152), which the kernel also hands out as the source
 * ports of outgoing connections. A port taken from that range could be reused
 * by any test's connection before the subprocess told to listen on it binds it.
 */
const PORT_RANGE = { first: 20_000, last: 32_000 } as const;

/**
 * A loopback port that was free a moment ago (taken and released again), so
 * a subprocess can be told where to listen. Picked at random below the
 * ephemeral range, so an outgoing connection cannot take it in the meantime;
 * the kernel's choice when that range is full.
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
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = PORT_RANGE.first +
      Math.floor(Math.random() * (PORT_RANGE.last - PORT_RANGE.first + 1));
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
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
