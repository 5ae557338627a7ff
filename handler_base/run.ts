/**
 * Runs a service as a process: health server, NATS connection, endpoints,
 * micro-protocol discovery (`$SRV.PING|INFO|STATS`), JetStream consumers in
 * JetStream consume mode (with a readiness check), and a clean stop on
 * SIGTERM or SIGINT (readiness turns 503, no new messages are taken,
 * running and queued messages get the grace period and nothing queued
 * starts after it, the connection drains and the function returns so the
 * process exits 0).
 *
 * The stop is bounded whatever state NATS is in: after the grace
 * (`shutdownGraceMs`) and `GRACE_OVERRUN_MS` of `service.ts`, each closing
 * step waits at most {@linkcode CLOSE_STEP_MS}, and a connection that cannot
 * drain (the server is gone) is closed, which ends its reconnect loop, so
 * nothing keeps the process alive after "Stopped".
 *
 * Requires `--allow-net` for NATS and the health port. Listening for signals
 * needs no permission.
 *
 * The JetStream client (`streams.ts`, `consumer.ts` and `@nats-io/jetstream`)
 * is imported only when the service ensures streams or consumes in JetStream
 * mode: a core-mode service never loads it (start-up and resident memory,
 * `docs/PERFORMANCE.md`; `module_graph_test.ts` keeps it so).
 *
 * @example The main of a service
 * ```ts ignore
 * import { runService, terminationSignal } from "@homelab/handler-base/run";
 *
 * await runService({
 *   name: "demo",
 *   endpoints: [echo],
 *   nats: { servers: "nats://127.0.0.1:4222" },
 *   healthPort: 8080,
 *   logger,
 *   signal: terminationSignal(),
 * });
 * ```
 *
 * @module
 */
import { delay, settlesWithin } from "./async.ts";
import { startDiscovery } from "./discovery.ts";
import { createService, type Endpoint, type Service } from "./handler.ts";
import { type ReadinessCheck, startHealthServer } from "./health.ts";
import type { ConsumeSettings } from "./consume_config.ts";
import type { Logger } from "./log.ts";
import {
  connectNats,
  type NatsConnection,
  type NatsConnectOptions,
  watchConnection,
} from "./natsutil.ts";
import type { Telemetry } from "./telemetry.ts";

/**
 * An AbortSignal that fires on the first SIGTERM or SIGINT. The listeners are
 * removed when it fires, so a second signal gets Deno's default behaviour.
 *
 * @returns The signal.
 *
 * @example
 * ```ts ignore
 * import { terminationSignal } from "@homelab/handler-base/run";
 *
 * const signal = terminationSignal();
 * signal.addEventListener("abort", () => console.log("stopping"));
 * ```
 */
export function terminationSignal(): AbortSignal {
  const controller = new AbortController();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const onSignal = () => {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    controller.abort(new Error("Terminated by signal"));
  };
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  return controller.signal;
}

/**
 * Options of {@linkcode runService}. The fields of `ConsumeSettings`
 * (`consumeMode`, `ensureStreams`, `streamReplicas`, `jetstream`) come from `jetstream.ts`;
 * `consumeSettingsFromConfig(config)` fills them from `CONSUME_MODE` and its
 * family.
 */
export interface RunServiceOptions extends ConsumeSettings {
  /** The service name (queue group, connection name, logs, spans). */
  name: string;
  /** The service version. @default "0.1.0" */
  version?: string;
  /** What the service does, for `nats micro info`. @default "" */
  description?: string;
  /** The endpoints to serve. */
  endpoints: readonly Endpoint[];
  /** How to reach NATS (the connection is named after the service). */
  nats: Omit<NatsConnectOptions, "name">;
  /** The port of `/health` and `/ready`; 0 picks a free one. */
  healthPort: number;
  /** The address the health server listens on. @default "0.0.0.0" */
  healthHostname?: string;
  /** The logger. */
  logger: Logger;
  /** Stops the service when it fires. @default terminationSignal() */
  signal?: AbortSignal;
  /** How long in-flight handlers may take once stopping, in ms. @default 10000 */
  shutdownGraceMs?: number;
  /** Default concurrency per endpoint. @default 16 */
  concurrency?: number;
  /** Default deadline per message, in ms. @default 60000 */
  timeoutMs?: number;
  /** Telemetry. @default one named after the service */
  telemetry?: Telemetry;
  /** More readiness checks (a backend, a consumer). @default {} */
  checks?: Record<string, ReadinessCheck>;
  /** Called once the service is serving (its endpoints and JetStream consumers). */
  onStart?: (service: Service) => Promise<void>;
  /**
   * Details shown, never gating, on `/ready` and in every endpoint's `data`
   * of `$SRV.STATS` (the circuit breakers of the backends). @default {}
   */
  details?: Record<string, () => unknown>;
  /**
   * Phases of the start before `runService` was called, in ms, one after the
   * other from the runtime's time origin (`serviceMain` gives `load` and
   * `setup`): the "Started" log line's `phases_ms` begins with them, and its
   * next phase counts from where they end. @default {}
   */
  startupPhasesMs?: Readonly<Record<string, number>>;
}

/**
 * Runs the service until the signal fires, then stops it cleanly.
 *
 * Once it serves (its endpoints subscribed and `onStart` done) it logs
 * "Started" with `startup_ms`, the time since the runtime started, and
 * `phases_ms`, where it went: the phases given in `startupPhasesMs`, then
 * `health` (the health server), `connect` (NATS, with any retries),
 * `streams` (when it ensures them), `subscribe` (endpoints, discovery, the
 * flush that makes them known) and `on_start`. In JetStream mode `/ready`
 * also waits for the consumers to bind.
 *
 * @param options What to serve and how.
 * @returns When the service has stopped and the connection is drained.
 *
 * @example
 * ```ts ignore
 * import { runService } from "@homelab/handler-base/run";
 *
 * await runService({ name: "demo", endpoints, nats: { servers: url }, healthPort: 0, logger });
 * ```
 */
export async function runService(options: RunServiceOptions): Promise<void> {
  const { name, logger } = options;
  const signal = options.signal ?? terminationSignal();
  const startup = startupClock(options.startupPhasesMs);
  const health = startHealthServer({
    port: options.healthPort,
    hostname: options.healthHostname ?? "0.0.0.0",
    logger,
  });
  startup.phase("health");
  health.setCheck("nats", () => "not connected yet");
  const details = Object.entries(options.details ?? {});
  for (const [detailName, detail] of details) health.setDetail(detailName, detail);
  try {
    const nc = await connectUntilSignal({ ...options.nats, name }, signal, logger);
    if (!nc) return;
    startup.phase("connect");
    const connection = watchConnection(nc, (state) => {
      const log = state === "connected" ? logger.info : logger.warn;
      log("NATS connection changed", { state });
    });
    health.setCheck("nats", () => connection.state === "connected" || connection.state);
    const service = createService(nc, {
      name,
      endpoints: options.endpoints,
      logger,
      ...(options.version ? { version: options.version } : {}),
      ...(options.telemetry ? { telemetry: options.telemetry } : {}),
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.consumeMode ? { consumeMode: options.consumeMode } : {}),
    });
    health.setCheck("endpoints", () => "not subscribed");
    for (const [checkName, check] of Object.entries(options.checks ?? {})) {
      health.setCheck(checkName, check);
    }
    if (options.ensureStreams) {
      // Failed streams are logged one by one, and the consumers then report
      // them on /ready: a service runs on without them.
      const { ensureStreams, StreamSetupError } = await import("./streams.ts");
      const replicas = options.streamReplicas;
      await ensureStreams(nc, { logger, signal, ...(replicas ? { replicas } : {}) }).catch(
        (error) => {
          if (!(error instanceof StreamSetupError)) {
            logger.error("Cannot ensure streams", { error });
          }
        },
      );
      startup.phase("streams");
    }
    await service.start();
    const discovery = startDiscovery(service, {
      description: options.description ?? "",
      data: () => Object.fromEntries(details.map(([key, detail]) => [key, detail()])),
    });
    // Ready means discoverable too: the server has the $SRV subscriptions before /ready says 200.
    await nc.flush().catch(() => {});
    health.setCheck("endpoints", () => service.ready || "not subscribed");
    if (service.jetstreamEndpoints.length > 0) {
      const { consumeJetStream } = await import("./consumer.ts");
      const consumers = consumeJetStream(service, options.jetstream);
      health.setCheck("jetstream", () => consumers.check());
    }
    startup.phase("subscribe");
    if (options.onStart) {
      await options.onStart(service);
      startup.phase("on_start");
    }
    if (!signal.aborted) {
      logger.info("Started", startup.summary());
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    }
    logger.info("Stopping", { grace_ms: options.shutdownGraceMs ?? 10_000 });
    health.setShuttingDown();
    await service.stop({ graceMs: options.shutdownGraceMs ?? 10_000 });
    // Without a server a drain can only wait for it: close at once instead.
    const connected = connection.state === "connected";
    if (connected && !(await settlesWithin(discovery.stop(), CLOSE_STEP_MS))) {
      logger.warn("Cannot drain the discovery subscriptions: NATS does not answer");
    }
    await closeConnection(nc, logger, connected);
    logger.info("Stopped");
  } finally {
    await health.close();
  }
}

/**
 * Times the phases of a start. `startup_ms` is `performance.now()`: the time
 * since the runtime's time origin, so it includes loading the modules but not
 * what the operating system and Deno do before that origin (a few ms).
 */
function startupClock(before: Readonly<Record<string, number>> = {}) {
  const phases: Record<string, number> = { ...before };
  const tenths = (ms: number) => Math.round(ms * 10) / 10;
  const given = Object.values(before);
  let last = given.length > 0 ? given.reduce((a, b) => a + b, 0) : performance.now();
  return {
    phase(name: string) {
      const now = performance.now();
      phases[name] = now - last;
      last = now;
    },
    summary: () => ({
      startup_ms: tenths(last),
      phases_ms: Object.fromEntries(Object.entries(phases).map(([k, ms]) => [k, tenths(ms)])),
    }),
  };
}

/**
 * The longest wait of each closing step after the service stopped (draining
 * discovery, draining the connection, closing it), in milliseconds.
 *
 * @example
 * ```ts
 * import { CLOSE_STEP_MS } from "@homelab/handler-base/run";
 *
 * console.log(CLOSE_STEP_MS); // 2000
 * ```
 */
export const CLOSE_STEP_MS = 2000;

/**
 * Drains the connection, or closes it when it cannot drain in time (the
 * server is gone: a drain would wait for it, and the client's reconnect loop
 * would keep the process alive).
 */
async function closeConnection(
  nc: NatsConnection,
  logger: Logger,
  connected: boolean,
): Promise<void> {
  if (!connected) {
    logger.warn("NATS is not connected: closing the connection without a drain");
    if (!(await settlesWithin(nc.close(), CLOSE_STEP_MS))) {
      logger.error("Cannot close the NATS connection", { timeout_ms: CLOSE_STEP_MS });
    }
    return;
  }
  let failure: unknown;
  const drained = nc.drain().catch((error) => {
    failure = error;
  });
  if ((await settlesWithin(drained, CLOSE_STEP_MS)) && failure === undefined) return;
  logger.warn("Cannot drain NATS: closing the connection", {
    ...(failure === undefined ? { timeout_ms: CLOSE_STEP_MS } : { error: failure }),
  });
  if (!(await settlesWithin(nc.close(), CLOSE_STEP_MS))) {
    logger.error("Cannot close the NATS connection", { timeout_ms: CLOSE_STEP_MS });
  }
}

/**
 * Connects to NATS, trying again with backoff until it works or the signal
 * fires. nats.js can wait for a first connection itself, but that wait cannot
 * be cancelled: a pod stopped before its broker was reachable would hang until
 * it is killed.
 */
async function connectUntilSignal(
  options: NatsConnectOptions,
  signal: AbortSignal,
  logger: Logger,
): Promise<NatsConnection | undefined> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const nc = await connectNats({ ...options, waitOnFirstConnect: false });
      if (!signal.aborted) return nc;
      await nc.close();
      return undefined;
    } catch (error) {
      logger.warn("Cannot connect to NATS yet", { error, attempt: attempt + 1 });
    }
    const backoffMs = Math.min(5000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
    await delay(backoffMs, { signal }).catch(() => {});
  }
  return undefined;
}
