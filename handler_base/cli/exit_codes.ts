/**
 * The exit codes of the command-line client, which scripts may rely on, and
 * the one mapping from any error to its code and its one-line message.
 *
 * @example
 * ```ts
 * import { EXIT_CODES, UsageError, describeFailure } from "./exit_codes.ts";
 *
 * const failure = describeFailure(new UsageError("Cannot parse the arguments: chat needs a question"));
 * console.log(failure.code === EXIT_CODES.usage); // true
 * ```
 *
 * @module
 */
import { DecodeError, RemoteError } from "../errors.ts";
import { NoRespondersError, RequestTimeoutError } from "../natsutil.ts";

/**
 * What the client's exit code means. Stable: scripts may compare against
 * these numbers.
 *
 * | Code | Meaning |
 * |---|---|
 * | 0 | Done |
 * | 1 | A service answered with an error (ErrorResponse, `success=false`, `error` set without an answer, pipeline `failed` or `error`) |
 * | 2 | Usage error: bad arguments, or an input file that cannot be read or is not the right format |
 * | 3 | NATS cannot be reached |
 * | 4 | No service answers, or the answer did not come in time |
 * | 5 | Local failure: cannot write the output, no recorder for `listen`, anything unexpected |
 * | 130 | Interrupted (Ctrl-C) before the command finished |
 *
 * @example
 * ```ts
 * import { EXIT_CODES } from "./exit_codes.ts";
 *
 * console.log(EXIT_CODES.natsUnavailable); // 3
 * ```
 */
export const EXIT_CODES = {
  ok: 0,
  remoteError: 1,
  usage: 2,
  natsUnavailable: 3,
  noService: 4,
  localError: 5,
  interrupted: 130,
} as const;

/** One of {@linkcode EXIT_CODES}. */
export type ExitCode = typeof EXIT_CODES[keyof typeof EXIT_CODES];

/**
 * An error that knows the exit code it ends the client with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CliError, EXIT_CODES } from "./exit_codes.ts";
 *
 * const error = new CliError(EXIT_CODES.localError, "Cannot write out.wav: permission denied");
 * assert.equal(error.code, EXIT_CODES.localError);
 * ```
 */
export class CliError extends Error {
  /** The exit code. */
  readonly code: ExitCode;

  /**
   * Creates the error.
   *
   * @param code The exit code it ends the client with.
   * @param message One line, action first ("Cannot X: detail").
   * @param options The cause.
   */
  constructor(code: ExitCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
    this.code = code;
  }
}

/**
 * Bad arguments or input (exit code 2).
 *
 * @example
 * ```ts
 * import { UsageError } from "./exit_codes.ts";
 *
 * console.log(new UsageError("Cannot parse the arguments: unknown command \"x\"").code); // 2
 * ```
 */
export class UsageError extends CliError {
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(EXIT_CODES.usage, message, options);
    this.name = "UsageError";
  }
}

/** The code and the one-line message a failure ends the client with. */
export interface Failure {
  /** The exit code. */
  readonly code: ExitCode;
  /** A short name of the kind of failure, for `--json` output. */
  readonly kind: string;
  /** One line for a human. */
  readonly message: string;
}

const KIND_OF_CODE: Readonly<Record<ExitCode, string>> = {
  0: "ok",
  1: "remote_error",
  2: "usage",
  3: "nats_unavailable",
  4: "no_service",
  5: "local_error",
  130: "interrupted",
};

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/**
 * Maps anything a command threw to its exit code and one-line message.
 * `service` names who should have answered, for the hint in "no service"
 * messages.
 *
 * @param error What was thrown.
 * @param service The service the command talks to, if one.
 * @returns The code, kind and message.
 *
 * @example
 * ```ts
 * import { NoRespondersError } from "../natsutil.ts";
 * import { describeFailure } from "./exit_codes.ts";
 *
 * const failure = describeFailure(new NoRespondersError("ai.chat.request"), "chat-handler");
 * console.log(failure.code, failure.message);
 * // 4 No service answers on ai.chat.request (is chat-handler running?)
 * ```
 */
export function describeFailure(error: unknown, service?: string): Failure {
  const hint = service ? ` (is ${service} running?)` : "";
  let code: ExitCode;
  let message: string;
  if (error instanceof CliError) {
    code = error.code;
    message = error.message;
  } else if (error instanceof NoRespondersError) {
    code = EXIT_CODES.noService;
    message = `No service answers on ${error.subject}${hint}`;
  } else if (error instanceof RequestTimeoutError) {
    code = EXIT_CODES.noService;
    message = `${error.message}${hint}`;
  } else if (error instanceof RemoteError) {
    code = EXIT_CODES.remoteError;
    message = `${service ?? "The service"} answered ${error.type}: ${error.message}`;
  } else if (error instanceof DecodeError) {
    code = EXIT_CODES.remoteError;
    message = `The answer is not the contract's message: ${error.message}`;
  } else if (error instanceof DOMException && error.name === "AbortError") {
    code = EXIT_CODES.interrupted;
    message = "Interrupted";
  } else {
    code = EXIT_CODES.localError;
    message = error instanceof Error ? error.message : String(error);
  }
  return { code, kind: KIND_OF_CODE[code], message: oneLine(message) };
}
