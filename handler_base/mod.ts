/**
 * `@homelab/handler-base`: everything a homelab handler service needs to be a
 * short file that wires typed handlers to NATS subjects, with configuration,
 * health probes, tracing, metrics, error replies, concurrency limits,
 * at-least-once delivery and a clean shutdown.
 *
 * Each concern is also its own entry point (`@homelab/handler-base/config`,
 * `/natsutil`, `/health`, `/telemetry`, `/endpoint`, `/service`, `/run`,
 * `/main`, `/streams`, `/consume-config`, `/consumer`, `/dead-letters`,
 * `/durable-publish`, `/confirmed-publish`, `/discovery`, `/messages`,
 * `/errors`, `/log`, `/async`, `/text`, `/clients/<name>`, `/cli`,
 * `/testing`; `/handler` gathers endpoint and service, `/jetstream` the
 * JetStream modules): import only what you use. The glue between a service
 * and its message sources is internal and not exported.
 *
 * @example A service in a few lines
 * ```ts ignore
 * import {
 *   createLogger, defineEndpoint, loadConfig, natsConfigSpec, natsOptionsFromConfig,
 *   runService, runtimeConfigSpec, TTSRequestSchema, TTSStatusSchema,
 * } from "@homelab/handler-base";
 *
 * const config = loadConfig({ ...natsConfigSpec, ...runtimeConfigSpec }, Deno.env);
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * await runService({
 *   name: "demo",
 *   endpoints: [echo],
 *   nats: natsOptionsFromConfig(config),
 *   healthPort: config.healthPort,
 *   logger: createLogger({ service: "demo", level: config.logLevel }),
 * });
 * ```
 *
 * @module
 */
export * from "./async.ts";
export * from "./config.ts";
export * from "./confirmed_publish.ts";
export * from "./consume_config.ts";
export * from "./consumer.ts";
export * from "./dead_letters.ts";
export * from "./discovery.ts";
export * from "./durable_publish.ts";
export * from "./endpoint.ts";
export * from "./errors.ts";
export * from "./health.ts";
export * from "./log.ts";
export * from "./main.ts";
export * from "./messages.ts";
export * from "./natsutil.ts";
export * from "./run.ts";
export * from "./service.ts";
export * from "./streams.ts";
export * from "./telemetry.ts";
export * from "./text.ts";
