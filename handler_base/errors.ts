/**
 * The error taxonomy of handler-base: one class per condition a caller may
 * catch, each carrying one of the stable `ErrorResponse.type` codes of the wire
 * contract, and the single boundary that turns any error into an
 * `ErrorResponse` and back.
 *
 * Nothing here reads the environment or needs a permission.
 *
 * @example Throw a typed error from a handler and map it for the wire
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidArgumentError, toErrorResponse } from "@homelab/handler-base/errors";
 *
 * const reply = toErrorResponse(new InvalidArgumentError("Cannot chat: the query is empty"));
 * assert.equal(reply.type, "InvalidArgument");
 * ```
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ErrorResponse,
  ErrorResponseSchema,
} from "./gen/messagespb/messages/v1/messages_pb.ts";

/**
 * The stable short codes of `ErrorResponse.type` (SYSTEM.md section 2).
 *
 * @example Compare a reply's type
 * ```ts
 * import assert from "node:assert/strict";
 * import { ERROR_TYPE } from "@homelab/handler-base/errors";
 *
 * assert.equal(ERROR_TYPE.Timeout, "Timeout");
 * ```
 */
export const ERROR_TYPE = {
  InvalidMessage: "InvalidMessage",
  InvalidArgument: "InvalidArgument",
  BackendUnavailable: "BackendUnavailable",
  BackendError: "BackendError",
  Timeout: "Timeout",
  Overloaded: "Overloaded",
  Internal: "Internal",
} as const;

/** One of the stable `ErrorResponse.type` codes. */
export type ErrorType = typeof ERROR_TYPE[keyof typeof ERROR_TYPE];

/** Options of every {@linkcode HandlerError}. */
export interface HandlerErrorOptions extends ErrorOptions {
  /**
   * Whether trying the same work again later may succeed (a JetStream consumer
   * naks a retryable failure and terminates any other).
   *
   * @default the default of the error's type: true for BackendUnavailable, Timeout and Overloaded
   */
  retryable?: boolean;
}

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorType> = new Set([
  ERROR_TYPE.BackendUnavailable,
  ERROR_TYPE.Timeout,
  ERROR_TYPE.Overloaded,
]);

/**
 * Base of every error that knows its `ErrorResponse.type`. Its message is safe
 * to send on the wire: never put a secret or a stack trace in it.
 *
 * @example Throw one with a cause
 * ```ts
 * import assert from "node:assert/strict";
 * import { HandlerError } from "@homelab/handler-base/errors";
 *
 * const error = new HandlerError("Internal", "Cannot load the voice registry", {
 *   cause: new Error("disk full"),
 * });
 * assert.deepEqual([error.type, error.retryable], ["Internal", false]);
 * ```
 */
export class HandlerError extends Error {
  /** The `ErrorResponse.type` this error is answered with. */
  readonly type: ErrorType;
  /** Whether the same work may succeed when tried again later. */
  readonly retryable: boolean;

  /**
   * Creates an error of the given wire type.
   *
   * @param type The `ErrorResponse.type` code.
   * @param message A wire-safe message in sentence case, action first.
   * @param options The cause and whether the failure is retryable.
   */
  constructor(type: ErrorType, message: string, options?: HandlerErrorOptions) {
    super(message, options);
    this.name = "HandlerError";
    this.type = type;
    this.retryable = options?.retryable ?? RETRYABLE_BY_DEFAULT.has(type);
  }
}

/**
 * A payload that is not the protobuf message its subject carries.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "@homelab/handler-base/errors";
 *
 * const error = new DecodeError("messages.v1.ChatRequest", { cause: new Error("premature EOF") });
 * assert.equal(error.message, "Cannot decode messages.v1.ChatRequest: premature EOF");
 * ```
 */
export class DecodeError extends HandlerError {
  /** The full protobuf name of the type that was expected. */
  readonly typeName: string;

  /**
   * Creates the error.
   *
   * @param typeName The full protobuf name of the expected type.
   * @param options The underlying decoding failure as `cause`.
   */
  constructor(typeName: string, options?: ErrorOptions) {
    const detail = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super(ERROR_TYPE.InvalidMessage, `Cannot decode ${typeName}${detail}`, options);
    this.name = "DecodeError";
    this.typeName = typeName;
  }
}

/**
 * A well-formed message whose content is not acceptable (empty text, unknown
 * speaker, out-of-range value).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidArgumentError } from "@homelab/handler-base/errors";
 *
 * const error = new InvalidArgumentError("Cannot synthesize speech: the text is empty");
 * assert.deepEqual([error.type, error.retryable], ["InvalidArgument", false]);
 * ```
 */
export class InvalidArgumentError extends HandlerError {
  /**
   * Creates the error.
   *
   * @param message What is wrong, wire-safe.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_TYPE.InvalidArgument, message, options);
    this.name = "InvalidArgumentError";
  }
}

/**
 * A backend that cannot be reached (connection refused, DNS failure, 502,
 * 503, 504, 429 after retries). Retryable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackendUnavailableError } from "@homelab/handler-base/errors";
 *
 * const error = new BackendUnavailableError("llm");
 * assert.equal(error.message, 'Cannot reach backend "llm"');
 * ```
 */
export class BackendUnavailableError extends HandlerError {
  /** The backend's short name ("llm", "milvus", ...). */
  readonly backend: string;

  /**
   * Creates the error.
   *
   * @param backend The backend's short name.
   * @param options The cause; `detail` is appended to the message.
   */
  constructor(backend: string, options?: ErrorOptions & { detail?: string }) {
    const detail = options?.detail ? `: ${options.detail}` : "";
    super(ERROR_TYPE.BackendUnavailable, `Cannot reach backend "${backend}"${detail}`, options);
    this.name = "BackendUnavailableError";
    this.backend = backend;
  }
}

/**
 * A backend that answered with an error status or an error body. Not
 * retryable unless said otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackendError } from "@homelab/handler-base/errors";
 *
 * const error = new BackendError("tts", { status: 500, excerpt: "CUDA out of memory" });
 * assert.equal(error.message, 'Backend "tts" failed with status 500: CUDA out of memory');
 * ```
 */
export class BackendError extends HandlerError {
  /** The backend's short name. */
  readonly backend: string;
  /** The HTTP status, or 0 when the failure was in the body of a 200. */
  readonly status: number;
  /** A short, secret-free excerpt of the response body. */
  readonly excerpt: string;

  /**
   * Creates the error.
   *
   * @param backend The backend's short name.
   * @param options Status, body excerpt, cause and retryability.
   */
  constructor(
    backend: string,
    options: HandlerErrorOptions & { status: number; excerpt?: string },
  ) {
    const excerpt = options.excerpt ?? "";
    const what = options.status ? `failed with status ${options.status}` : "failed";
    super(
      ERROR_TYPE.BackendError,
      `Backend "${backend}" ${what}${excerpt ? `: ${excerpt}` : ""}`,
      options,
    );
    this.name = "BackendError";
    this.backend = backend;
    this.status = options.status;
    this.excerpt = excerpt;
  }
}

/**
 * A backend that answered 2xx with a body that is not the documented shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackendError, InvalidResponseError } from "@homelab/handler-base/errors";
 *
 * const error = new InvalidResponseError("embeddings", "the data field is missing");
 * assert.ok(error instanceof BackendError);
 * assert.equal(error.message, 'Backend "embeddings" failed: invalid response: the data field is missing');
 * ```
 */
export class InvalidResponseError extends BackendError {
  /**
   * Creates the error.
   *
   * @param backend The backend's short name.
   * @param detail What is wrong with the body.
   * @param options The cause.
   */
  constructor(backend: string, detail: string, options?: ErrorOptions) {
    super(backend, { ...options, status: 0, excerpt: `invalid response: ${detail}` });
    this.name = "InvalidResponseError";
  }
}

/**
 * Work that did not finish before its deadline. Retryable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TimeoutError } from "@homelab/handler-base/errors";
 *
 * const error = new TimeoutError("Backend \"llm\" did not answer within 30000 ms");
 * assert.equal(error.type, "Timeout");
 * ```
 */
export class TimeoutError extends HandlerError {
  /**
   * Creates the error.
   *
   * @param message What timed out, wire-safe.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_TYPE.Timeout, message, options);
    this.name = "TimeoutError";
  }
}

/**
 * The service is at its capacity and refuses more work now. Retryable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OverloadedError } from "@homelab/handler-base/errors";
 *
 * const error = new OverloadedError("Cannot accept the request: 64 requests are in flight");
 * assert.deepEqual([error.type, error.retryable], ["Overloaded", true]);
 * ```
 */
export class OverloadedError extends HandlerError {
  /**
   * Creates the error.
   *
   * @param message Why the work was refused.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_TYPE.Overloaded, message, options);
    this.name = "OverloadedError";
  }
}

/**
 * An `ErrorResponse` received as the answer to a request, rebuilt as an error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RemoteError } from "@homelab/handler-base/errors";
 *
 * const error = new RemoteError("InvalidArgument", "Cannot chat: the query is empty");
 * assert.equal(error.type, "InvalidArgument");
 * ```
 */
export class RemoteError extends Error {
  /** The `type` of the `ErrorResponse`, as sent (not validated against {@linkcode ERROR_TYPE}). */
  readonly type: string;

  /**
   * Creates the error an `ErrorResponse` describes.
   *
   * @param type The remote `type`.
   * @param message The remote `message`.
   */
  constructor(type: string, message: string) {
    super(message);
    this.name = "RemoteError";
    this.type = type;
  }
}

/** The message sent for errors that carry no wire-safe message of their own. */
export const INTERNAL_ERROR_MESSAGE = "Internal error";

function isAbortLike(error: unknown): boolean {
  return error instanceof DOMException &&
    (error.name === "TimeoutError" || error.name === "AbortError");
}

/**
 * The wire type of any thrown value: a {@linkcode HandlerError}'s own type,
 * `Timeout` for a DOMException of an aborted or timed-out signal, else
 * `Internal`.
 *
 * @param error Anything that was thrown.
 * @returns The `ErrorResponse.type` to answer with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorType } from "@homelab/handler-base/errors";
 *
 * assert.equal(errorType(new RangeError("boom")), "Internal");
 * ```
 */
export function errorType(error: unknown): ErrorType {
  if (error instanceof HandlerError) return error.type;
  if (isAbortLike(error)) return ERROR_TYPE.Timeout;
  return ERROR_TYPE.Internal;
}

/**
 * Whether the failure may pass when the same work is tried again later.
 *
 * @param error Anything that was thrown.
 * @returns True for retryable {@linkcode HandlerError}s and timeouts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BackendUnavailableError, isRetryable } from "@homelab/handler-base/errors";
 *
 * assert.equal(isRetryable(new BackendUnavailableError("tts")), true);
 * ```
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof HandlerError) return error.retryable;
  return isAbortLike(error);
}

/**
 * The single error boundary: turns anything thrown into the `ErrorResponse`
 * sent on the wire. Only {@linkcode HandlerError} messages travel; anything
 * else becomes a generic `Internal` message (log the original yourself).
 *
 * @param error Anything that was thrown.
 * @returns An `ErrorResponse` with `error: true`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toErrorResponse } from "@homelab/handler-base/errors";
 *
 * const reply = toErrorResponse(new Error("password=hunter2"));
 * assert.equal(reply.message, "Internal error");
 * ```
 */
export function toErrorResponse(error: unknown): ErrorResponse {
  const type = errorType(error);
  let message = INTERNAL_ERROR_MESSAGE;
  if (error instanceof HandlerError) message = error.message;
  else if (type === ERROR_TYPE.Timeout) message = "Deadline exceeded";
  return create(ErrorResponseSchema, { error: true, message, type });
}

/**
 * Rebuilds the error an `ErrorResponse` describes.
 *
 * @param reply A decoded `ErrorResponse`.
 * @returns A {@linkcode RemoteError} with the reply's type and message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromErrorResponse, toErrorResponse, TimeoutError } from "@homelab/handler-base/errors";
 *
 * const error = fromErrorResponse(toErrorResponse(new TimeoutError("Too slow")));
 * assert.deepEqual([error.type, error.message], ["Timeout", "Too slow"]);
 * ```
 */
export function fromErrorResponse(reply: ErrorResponse): RemoteError {
  return new RemoteError(reply.type || ERROR_TYPE.Internal, reply.message);
}
