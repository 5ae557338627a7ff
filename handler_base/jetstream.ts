/**
 * JetStream, the at-least-once side of handler-base, in one import: this
 * entry point re-exports
 *
 * - `streams.ts`: the platform's streams (`STREAMS`) and `ensureStreams`;
 * - `consume_config.ts`: the `CONSUME_MODE` family of variables;
 * - `consumer.ts`: `consumeJetStream`, the durable consumers that feed a
 *   service's stream-backed endpoints (ack, nak with backoff, dead letter);
 * - `dead_letters.ts`: dead-letter subjects and headers;
 * - `durable_publish.ts`: `publishDurable`, a publish that retries until the
 *   stream acknowledges, without duplicates.
 *
 * Import those directly to take only what you use.
 *
 * Requires `--allow-net=<nats>`.
 *
 * @example
 * ```ts
 * import { deadLetterSubject, STREAMS } from "@homelab/handler-base/jetstream";
 *
 * console.log(STREAMS.AI_PIPELINE.subjects); // ["ai.pipeline.trigger"]
 * console.log(deadLetterSubject("jobs", "test.jobs.1")); // "dlq.jobs.test.jobs.1"
 * ```
 *
 * @module
 */
export * from "./consume_config.ts";
export * from "./consumer.ts";
export * from "./dead_letters.ts";
export * from "./durable_publish.ts";
export * from "./streams.ts";
