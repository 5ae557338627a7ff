/**
 * `@homelab/handler-base`: everything a homelab handler service needs to be a
 * short file that wires typed handlers to NATS subjects, with configuration,
 * health probes, tracing, metrics, error replies, concurrency limits,
 * at-least-once delivery and a clean shutdown.
 *
 * Each concern is also its own entry point (`@homelab/handler-base/config`,
 * `/natsutil`, `/health`, `/telemetry`, `/handler`, `/run`, `/jetstream`,
 * `/discovery`, `/messages`, `/errors`, `/log`, `/async`, `/sessions`,
 * `/session-affinity`, `/clients/<name>`,
 * `/testing`): import only what you use.
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
export * from "./discovery.ts";
export * from "./errors.ts";
export * from "./handler.ts";
export * from "./health.ts";
export * from "./jetstream.ts";
export * from "./log.ts";
export * from "./main.ts";
export * from "./messages.ts";
export * from "./natsutil.ts";
export * from "./run.ts";
export * from "./session_affinity.ts";
export * from "./sessions.ts";
export * from "./telemetry.ts";
