/**
 * What the JetStream modules share about the JetStream API's answers.
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import { messageOf } from "./jetstream_api.ts";
 *
 * console.log(messageOf(new Error("stream not found"))); // "stream not found"
 * ```
 *
 * @module
 */
import * as js from "@nats-io/jetstream";

/**
 * Whether an error is the JetStream API's answer with this code.
 *
 * @param error Anything thrown.
 * @param code A code of `JetStreamApiCodes`.
 * @returns Whether it is that answer.
 */
export function isApiError(error: unknown, code: number): boolean {
  return error instanceof js.JetStreamApiError && error.code === code;
}

/**
 * The message of anything thrown.
 *
 * @param error Anything thrown.
 * @returns Its message, or its string form.
 */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
