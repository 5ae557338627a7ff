/**
 * Runs endpoints, or a whole service definition, in-process over a real
 * nats-server, with a client connection, typed `request` and `collect`, and
 * a bounded stop: the harness every service test needs, written once.
 *
 * Needs `--allow-run=nats-server` (when it starts its own server),
 * `--allow-net=127.0.0.1`, and read/write of a temporary directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { startTestService } from "@homelab/handler-base/testing";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * await using t = await startTestService({ endpoints: [echo] });
 * const status = await t.request("demo.echo", TTSRequestSchema, { text: "hi" }, TTSStatusSchema);
 * assert.equal(status.message, "hi");
 * ```
 *
 * @module
 */
import { CircuitBreakers } from "../clients/circuit_breaker.ts";
import { loadConfig } from "../config.ts";
import type { ConsumeMode, Endpoint, Service } from "../handler.ts";
import type { JetStreamConsumerOptions } from "../jetstream.ts";
import { createLogger, type LogFields, type Logger } from "../log.ts";
import type { ServiceDefinition, ServiceParts } from "../main.ts";
import type { DescMessage, MessageInitShape, MessageShape } from "../messages.ts";
import { connectNats, type NatsConnection, request } from "../natsutil.ts";
import { runService } from "../run.ts";
import type { Telemetry } from "../telemetry.ts";
import { collect, type Collector } from "./collect.ts";
import { type NatsServer, startNatsServer } from "./nats_server.ts";

/** Options of {@linkcode startTestService}: `endpoints`, or a `definition` with its `env`. */
export interface TestServiceOptions {
  /** The endpoints to serve (or give `definition`). */
  endpoints?: readonly Endpoint[];
  /**
   * A service definition, set up from `env` (its NATS, health and consume
   * variables are overridden to fit the test).
   */
  // deno-lint-ignore no-explicit-any
  definition?: ServiceDefinition<any>;
  /** The definition's environment. @default {} */
  env?: Record<string, string>;
  /** The service name. @default the definition's, else "test-service" */
  name?: string;
  /** A running server's URL; without it a JetStream-enabled server is started. */
  natsUrl?: string;
  /** How stream-backed endpoints take messages. @default "core" */
  consumeMode?: ConsumeMode;
  /** Create the streams at start. @default true in JetStream mode */
  ensureStreams?: boolean;
  /** Consumer settings in JetStream mode. @default {} */
  jetstream?: JetStreamConsumerOptions;
  /** Default concurrency per endpoint. @default 16 */
  concurrency?: number;
  /** Default deadline per message, in ms. @default 60000 */
  timeoutMs?: number;
  /** Grace of the stop, in ms. @default 5000 */
  shutdownGraceMs?: number;
  /** How long starting may take, in ms. @default 10000 */
  startTimeoutMs?: number;
  /**
   * Tracing and metrics of the service (a test records spans with its own
   * tracer provider). @default the global providers
   */
  telemetry?: Telemetry;
}

/** Options of {@linkcode TestService.request}. */
export interface TestRequestOptions {
  /** How long to wait for the reply, in ms. @default 5000 */
  timeoutMs?: number;
}

/** A service running in-process for a test. */
export interface TestService extends AsyncDisposable {
  /** The server's URL. */
  readonly url: string;
  /** The server, when the harness started it (kill and restart it). */
  readonly server: NatsServer | undefined;
  /** A client connection, for publishing and subscribing. */
  readonly nc: NatsConnection;
  /** The running service. */
  readonly service: Service;
  /** The service's log lines, parsed. */
  readonly logs: readonly LogFields[];
  /**
   * Sends a typed request and waits for the typed reply; an `ErrorResponse`
   * reply throws its typed error, as natsutil's `request`.
   */
  request<Req extends DescMessage, Res extends DescMessage>(
    subject: string,
    requestSchema: Req,
    message: MessageShape<Req> | MessageInitShape<Req>,
    responseSchema: Res,
    options?: TestRequestOptions,
  ): Promise<MessageShape<Res>>;
  /** Collects a subject's messages (see `collect`). */
  collect<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
  ): Collector<MessageShape<Desc> & { subject: string }>;
  /** Stops the service and waits for it, within the grace. */
  stop(): Promise<void>;
}

/**
 * Starts a service in-process and waits until it serves.
 *
 * @param options What to serve and on which server.
 * @returns The running service with a client; dispose it to stop everything.
 * @throws {Error} When the service does not serve within `startTimeoutMs`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { envVar } from "@homelab/handler-base/config";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { defineService } from "@homelab/handler-base/main";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { startTestService } from "@homelab/handler-base/testing";
 *
 * const greeter = defineService({
 *   name: "greeter",
 *   config: { greeting: envVar.string("GREETING", { required: true }) },
 *   setup: (config) => ({
 *     endpoints: [defineEndpoint({
 *       subject: "demo.greet",
 *       request: TTSRequestSchema,
 *       response: TTSStatusSchema,
 *       handle: (req) => Promise.resolve({ status: `${config.greeting}, ${req.text}` }),
 *     })],
 *   }),
 * });
 * await using t = await startTestService({ definition: greeter, env: { GREETING: "Hello" } });
 * const reply = await t.request("demo.greet", TTSRequestSchema, { text: "Ada" }, TTSStatusSchema);
 * assert.equal(reply.status, "Hello, Ada");
 * ```
 */
export async function startTestService(options: TestServiceOptions): Promise<TestService> {
  const server = options.natsUrl ? undefined : await startNatsServer({ jetstream: true });
  const url = options.natsUrl ?? server!.url;
  const logs: LogFields[] = [];
  const name = options.name ?? options.definition?.name ?? "test-service";
  const logger: Logger = createLogger({
    service: name,
    level: "debug",
    write: (line) => logs.push(JSON.parse(line)),
  });
  const controller = new AbortController();
  const breakers = new CircuitBreakers({ logger });
  let parts: ServiceParts | undefined;
  try {
    parts = options.definition
      ? await options.definition.setup(
        loadConfig(options.definition.spec, { ...options.env, NATS_URL: url, HEALTH_PORT: "0" }),
        { name, logger, signal: controller.signal, clients: { logger, breakers } },
      )
      : { endpoints: options.endpoints ?? [] };
  } catch (error) {
    await server?.[Symbol.asyncDispose]();
    throw error;
  }
  const consumeMode = options.consumeMode ?? "core";
  let resolveStarted: (service: Service) => void = () => {};
  const started = new Promise<Service>((resolve) => resolveStarted = resolve);
  const running = runService({
    name,
    endpoints: parts.endpoints,
    nats: { servers: url },
    healthPort: 0,
    healthHostname: "127.0.0.1",
    logger,
    signal: controller.signal,
    shutdownGraceMs: options.shutdownGraceMs ?? 5000,
    consumeMode,
    ensureStreams: options.ensureStreams ?? consumeMode === "jetstream",
    ...(options.jetstream ? { jetstream: options.jetstream } : {}),
    ...(options.concurrency ?? parts.concurrency
      ? { concurrency: options.concurrency ?? parts.concurrency }
      : {}),
    ...(options.timeoutMs ?? parts.timeoutMs
      ? { timeoutMs: options.timeoutMs ?? parts.timeoutMs }
      : {}),
    ...(parts.checks ? { checks: parts.checks } : {}),
    details: { ...parts.details, backends: () => breakers.snapshot() },
    ...(options.telemetry ? { telemetry: options.telemetry } : {}),
    onStart: async (service) => {
      await parts?.onStart?.(service);
      resolveStarted(service);
    },
  });
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let service: Service;
  try {
    service = await Promise.race([
      started,
      running.then(() => {
        throw new Error(`Cannot start ${name}: it stopped before serving`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Cannot start ${name}: not serving after ${startTimeoutMs} ms`)),
          startTimeoutMs,
        );
      }),
    ]);
  } catch (error) {
    controller.abort();
    await running.catch(() => {});
    await parts.dispose?.();
    await server?.[Symbol.asyncDispose]();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const nc = await connectNats({ servers: url, name: `${name}-test-client` });
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      controller.abort();
      await running.catch(() => {});
      await parts?.dispose?.();
    })();
  return {
    url,
    server,
    nc,
    service,
    logs,
    request(subject, requestSchema, message, responseSchema, requestOptions = {}) {
      return request(nc, subject, requestSchema, message, responseSchema, {
        timeout: requestOptions.timeoutMs ?? 5000,
      });
    },
    collect: (subject, schema) => collect(nc, subject, schema),
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      await nc.close().catch(() => {});
      await server?.[Symbol.asyncDispose]();
    },
  };
}
