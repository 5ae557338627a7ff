/**
 * `@homelab/handler-base`: everything a homelab handler service needs to be a
 * short file that wires typed handlers to NATS subjects, with configuration,
 * health probes, tracing, metrics, error replies, concurrency limits,
 * at-least-once delivery and a clean shutdown.
 *
 * Each concern is also its own entry point (`@homelab/handler-base/config`,
 * `/natsutil`, `/health`, `/telemetry`, `/handler`, `/run`, `/jetstream`,
 * `/discovery`, `/messages`, `/errors`, `/log`, `/async`, `/clients/<name>`,
 * `/testing`): import only what you use.
 *
 * @example A service in a few lines, called in-process
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   defineEndpoint,
 *   defineService,
 *   envVar,
 *   serviceMain,
 *   TTSRequestSchema,
 *   TTSStatusSchema,
 * } from "@homelab/handler-base";
 * import { callEndpoint } from "@homelab/handler-base/testing";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * export const echoService = defineService({
 *   name: "echo",
 *   config: { greeting: envVar.string("ECHO_GREETING", { default: "hi" }) },
 *   setup: () => ({ endpoints: [echo] }),
 * });
 * // The entry file services/echo.ts holds one line more:
 * // if (import.meta.main) await serviceMain(echoService);
 * assert.equal(typeof serviceMain, "function");
 *
 * const { reply } = await callEndpoint(echo, { text: "hello" });
 * assert.equal(reply?.message, "hello");
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
export * from "./telemetry.ts";
