/**
 * The HTTP server for Kubernetes probes: `GET /health` (liveness) answers 200
 * while the process runs; `GET /ready` (readiness) answers 200 only when every
 * registered check passes and the service is not shutting down, else 503 with
 * a JSON body naming what is not ready. Checks run on each probe, each bounded
 * by a timeout, so a stuck dependency can never hang the probe.
 *
 * Requires `--allow-net=<hostname>:<port>` for the listen address only.
 *
 * @example Readiness follows the NATS connection
 * ```ts
 * import assert from "node:assert/strict";
 * import { startHealthServer } from "@homelab/handler-base/health";
 *
 * await using health = startHealthServer({ port: 0, hostname: "127.0.0.1" });
 * let connected = false;
 * health.setCheck("nats", () => connected || "disconnected");
 *
 * const before = await fetch(`http://127.0.0.1:${health.port}/ready`);
 * assert.deepEqual([before.status, await before.json()], [503, { status: "not ready", failing: { nats: "disconnected" } }]);
 * connected = true;
 * const after = await fetch(`http://127.0.0.1:${health.port}/ready`);
 * assert.deepEqual([after.status, await after.json()], [200, { status: "ready" }]);
 * ```
 *
 * @module
 */
import type { Logger } from "./log.ts";

/** What a readiness check answers: true when ready; false or a reason when not. */
export type CheckResult = boolean | string;

/**
 * A readiness check, run on every `GET /ready`. It should answer from state it
 * already has (a connection's status), not do I/O of its own; when it does,
 * it should stop when `signal` aborts.
 *
 * @param signal Aborted when the check's time is up.
 * @returns True when ready, false or a reason ("disconnected") when not. A
 * check that throws fails with the error's message.
 */
export type ReadinessCheck = (signal: AbortSignal) => CheckResult | Promise<CheckResult>;

/**
 * A detail shown on `/ready` that never decides readiness (the state of a
 * backend's circuit breaker): a function called on each probe, returning any
 * JSON value.
 *
 * @returns The detail's value now.
 */
export type ReadinessDetail = () => unknown;

/**
 * The JSON body of `GET /ready`. `details` holds the registered
 * {@linkcode ReadinessDetail}s, when there are any.
 */
export type ReadinessBody =
  | { status: "ready"; details?: Record<string, unknown> }
  | { status: "not ready"; failing: Record<string, string>; details?: Record<string, unknown> }
  | { status: "shutting down" };

/** Options of {@linkcode startHealthServer}. */
export interface HealthServerOptions {
  /** The port to listen on; 0 picks a free one (see {@linkcode HealthServer.port}). */
  port: number;
  /**
   * The address to listen on.
   *
   * @default "0.0.0.0"
   */
  hostname?: string;
  /**
   * Closes the server when aborted.
   *
   * @default undefined (close with {@linkcode HealthServer.close})
   */
  signal?: AbortSignal;
  /**
   * Where the server logs that it listens and each change of readiness.
   *
   * @default undefined (no logs)
   */
  logger?: Logger;
  /**
   * How long one check may take before it counts as failing, in milliseconds.
   *
   * @default 1000
   */
  checkTimeoutMs?: number;
}

/** A running health server. */
export interface HealthServer extends AsyncDisposable {
  /** The port it listens on (the chosen one when started with port 0). */
  readonly port: number;
  /** The address it listens on. */
  readonly hostname: string;
  /** Whether {@linkcode HealthServer.setShuttingDown} was called. */
  readonly shuttingDown: boolean;
  /** Resolves when the server has stopped, by {@linkcode HealthServer.close} or the signal. */
  readonly closed: Promise<void>;
  /**
   * Registers a readiness check, replacing any of the same name.
   *
   * @param name The name reported in the `failing` map ("nats", "endpoint:ai.chat.request").
   * @param check The check.
   * @throws {TypeError} When the name is empty.
   */
  setCheck(name: string, check: ReadinessCheck): void;
  /**
   * Removes a readiness check.
   *
   * @param name The check's name.
   * @returns Whether a check of that name was registered.
   */
  removeCheck(name: string): boolean;
  /**
   * Registers a detail shown on `/ready` (in `details`) that never makes it
   * fail: a backend that is down shows here while readiness stays tied to
   * what the replica itself needs. Replaces any detail of the same name.
   *
   * @param name The key in `details` ("backends").
   * @param detail Returns the value; one that throws shows `{ "error": message }`.
   * @throws {TypeError} When the name is empty.
   */
  setDetail(name: string, detail: ReadinessDetail): void;
  /** Makes `/ready` answer 503 `{"status":"shutting down"}` from now on; `/health` stays 200. */
  setShuttingDown(): void;
  /**
   * Evaluates readiness as `GET /ready` would.
   *
   * @returns The body `/ready` would answer with.
   */
  readiness(): Promise<ReadinessBody>;
  /**
   * Stops listening and waits for the requests in progress. Calling it again
   * returns the same promise.
   *
   * @returns A promise that resolves when the server has stopped.
   */
  close(): Promise<void>;
}

const JSON_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/json",
  "cache-control": "no-store",
};

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs one check; resolves to undefined when it passes, else to the reason. Never rejects. */
async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<string | undefined> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      const reason = `check timed out after ${timeoutMs} ms`;
      controller.abort(new DOMException(reason, "TimeoutError"));
      resolve(reason);
    }, timeoutMs);
  });
  const outcome = (async () => await check(controller.signal))().then(
    (result) => result === true ? undefined : (typeof result === "string" && result) || "not ready",
    (error) => `check failed: ${errorMessage(error)}`,
  );
  try {
    return await Promise.race([outcome, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function respond(method: string, status: number, body: unknown, headers = {}): Response {
  return new Response(method === "HEAD" ? null : JSON.stringify(body), {
    status,
    headers: { ...JSON_HEADERS, ...headers },
  });
}

/**
 * Starts the health server. It listens as soon as this returns.
 *
 * @param options The port, address, shutdown signal, logger and check timeout.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address.
 * @throws {DOMException} When `signal` is already aborted (its reason is thrown).
 *
 * @example Flip readiness at shutdown
 * ```ts
 * import assert from "node:assert/strict";
 * import { startHealthServer } from "@homelab/handler-base/health";
 *
 * const shutdown = new AbortController();
 * const health = startHealthServer({ port: 0, hostname: "127.0.0.1", signal: shutdown.signal });
 * health.setShuttingDown();
 * const res = await fetch(`http://127.0.0.1:${health.port}/ready`);
 * assert.deepEqual([res.status, await res.json()], [503, { status: "shutting down" }]);
 * shutdown.abort();
 * await health.closed;
 * ```
 */
export function startHealthServer(options: HealthServerOptions): HealthServer {
  const { port, hostname = "0.0.0.0", signal, logger, checkTimeoutMs = 1000 } = options;
  signal?.throwIfAborted();
  const checks = new Map<string, ReadinessCheck>();
  const details = new Map<string, ReadinessDetail>();
  let shuttingDown = false;
  let lastReady: boolean | undefined;
  let closing: Promise<void> | undefined;

  async function readiness(): Promise<ReadinessBody> {
    if (shuttingDown) return { status: "shutting down" };
    const entries = [...checks];
    const reasons = await Promise.all(entries.map(([, check]) => runCheck(check, checkTimeoutMs)));
    const failing: Record<string, string> = {};
    entries.forEach(([name], i) => {
      const reason = reasons[i];
      if (reason !== undefined) failing[name] = reason;
    });
    const ready = Object.keys(failing).length === 0;
    // Readiness is evaluated on every probe; log only its changes.
    if (ready !== lastReady && !shuttingDown) {
      lastReady = ready;
      if (ready) logger?.info("Ready");
      else logger?.warn("Not ready", { failing });
    }
    const shown = detailsNow();
    const extra = shown ? { details: shown } : {};
    return ready ? { status: "ready", ...extra } : { status: "not ready", failing, ...extra };
  }

  function detailsNow(): Record<string, unknown> | undefined {
    if (details.size === 0) return undefined;
    const out: Record<string, unknown> = {};
    for (const [name, detail] of details) {
      try {
        out[name] = detail();
      } catch (error) {
        out[name] = { error: errorMessage(error) };
      }
    }
    return out;
  }

  async function handle(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    const { method } = request;
    if (pathname !== "/health" && pathname !== "/ready") {
      return respond(method, 404, { status: "not found" });
    }
    if (method !== "GET" && method !== "HEAD") {
      return respond(method, 405, { status: "method not allowed" }, { allow: "GET, HEAD" });
    }
    if (pathname === "/health") return respond(method, 200, { status: "ok" });
    const body = await readiness();
    return respond(method, body.status === "ready" ? 200 : 503, body);
  }

  const server = Deno.serve({
    port,
    hostname,
    onListen: (addr) => logger?.info("Health server listening", { ...addr }),
  }, handle);
  const closed = server.finished.catch((error) => {
    logger?.error("Health server failed", { error });
  });

  const onAbort = () => void close();
  function close(): Promise<void> {
    closing ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      await server.shutdown();
      await closed;
    })();
    return closing;
  }
  signal?.addEventListener("abort", onAbort, { once: true });

  return {
    port: server.addr.port,
    hostname: server.addr.hostname,
    get shuttingDown() {
      return shuttingDown;
    },
    closed,
    setCheck(name, check) {
      if (name === "") throw new TypeError("Cannot set a readiness check: the name is empty");
      checks.set(name, check);
    },
    removeCheck: (name) => checks.delete(name),
    setDetail(name, detail) {
      if (name === "") throw new TypeError("Cannot set a readiness detail: the name is empty");
      details.set(name, detail);
    },
    setShuttingDown() {
      if (shuttingDown) return;
      shuttingDown = true;
      logger?.info("Shutting down: readiness now fails");
    },
    readiness,
    close,
    [Symbol.asyncDispose]: close,
  };
}
