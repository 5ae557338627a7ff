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
 * `/errors`, `/log`, `/async`, `/text`, `/sessions`, `/session-affinity`, `/clients/<name>`, `/cli`,
 * `/testing`; `/handler` gathers endpoint and service, `/jetstream` the
 * JetStream modules): import only what you use. The glue between a service
 * and its message sources is internal and not exported.
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
export * from "./session_affinity.ts";
export * from "./sessions.ts";
export * from "./telemetry.ts";
export * from "./text.ts";
