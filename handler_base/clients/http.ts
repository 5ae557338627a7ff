/**
 * The HTTP layer every backend client is built on: `fetch` with a base URL, a
 * timeout, retries with backoff for idempotent calls, size-bounded bodies and
 * typed errors from `errors.ts`.
 *
 * Rules it follows:
 * - The caller's `AbortSignal` always wins: when it fires, the call rejects with
 *   its `reason` and the request is really cancelled (the connection closes).
 * - The client timeout covers a whole call (every attempt, the backoff and the
 *   body); a stream's timeout covers the response head and then each wait for
 *   the next chunk. It rejects with {@linkcode TimeoutError}.
 * - Only idempotent calls are retried, and only on connection errors and the
 *   statuses 429, 502, 503 and 504, with exponential backoff and jitter or the
 *   delay `Retry-After` asks for. A stream is never retried once its head
 *   arrived.
 * - Connection failures and 429/502/503/504 become
 *   {@linkcode BackendUnavailableError}; any other non-2xx status a
 *   {@linkcode BackendError} with a short excerpt of the body; a body that is not
 *   JSON or is larger than `maxBodyBytes` an {@linkcode InvalidResponseError}.
 * - A {@linkcode CircuitBreaker} per backend (`clients/circuit_breaker.ts`)
 *   counts consecutive connection failures. Once it opens, calls fail at once
 *   with {@linkcode BackendUnavailableError} without touching the network,
 *   and a call whose connection fails is not retried: a backend that is down
 *   costs its callers no time, so their slots do not fill. After its open
 *   time one probe call goes through and closes it again.
 * - A retry never waits past the call's timeout: when the backoff would end
 *   after it, the call fails with the last error at once; and the caller's
 *   signal (a handler's deadline) ends a backoff as it ends any wait.
 * - Bodies are always read or cancelled, so connections are reused.
 * - Errors and log lines carry no credentials: user info in the base URL is
 *   turned into a `Basic` header and removed, header values never appear, and
 *   body excerpts are scrubbed of the configured header values.
 *
 * Requires `--allow-net` to the backends' hosts.
 *
 * @example Call a JSON endpoint
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHttpClient } from "@homelab/handler-base/clients/http";
 * import { startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeHttpServer((request) => Response.json({ echo: request.json }));
 * server.failNext(503); // an idempotent call is retried
 * const http = createHttpClient("embeddings", { baseUrl: server.url, timeoutMs: 5000 });
 * const body = await http.json("/v1/embeddings", { json: { input: ["hi"] }, idempotent: true });
 * assert.deepEqual(body, { echo: { input: ["hi"] } });
 * assert.equal(server.requests.length, 2);
 * ```
 *
 * @module
 */
import {
  BackendError,
  BackendUnavailableError,
  HandlerError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { delay } from "../async.ts";
import { envVar, type VarSpec } from "../config.ts";
import type { Logger } from "../log.ts";
import { truncateText } from "../text.ts";
import { CircuitBreaker, type CircuitBreakers, type CircuitPermit } from "./circuit_breaker.ts";

/** Options every backend client takes (the HTTP part of its configuration). */
export interface ClientOptions {
  /** The backend's base URL, such as `http://llm-draft.ai-ml.svc.cluster.local:8000`. */
  baseUrl: string;
  /**
   * How long one call may take, in milliseconds; `0` disables the timeout.
   * For streams: the wait for the response head and each wait for a chunk.
   *
   * @default 30000
   */
  timeoutMs?: number;
  /**
   * How many times an idempotent call is tried again after a retryable failure.
   *
   * @default 2
   */
  retries?: number;
  /**
   * The largest response body read into memory, in bytes.
   *
   * @default 16777216 (16 MiB)
   */
  maxBodyBytes?: number;
  /**
   * The first retry delay in milliseconds; it doubles with each retry.
   *
   * @default 200
   */
  retryDelayMs?: number;
  /**
   * The longest retry delay in milliseconds. A `Retry-After` longer than this
   * is not waited for: the call fails at once.
   *
   * @default 5000
   */
  maxRetryDelayMs?: number;
  /**
   * The `fetch` to use (tests inject one).
   *
   * @default globalThis.fetch
   */
  fetch?: typeof fetch;
  /**
   * Where retries are reported (as warnings).
   *
   * @default no logging
   */
  logger?: Logger;
  /**
   * Waits between retries; it must reject with `signal.reason` when the
   * signal aborts (tests inject a fast one).
   *
   * @default a `setTimeout`-based sleep
   */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /**
   * The jitter source, a number in [0, 1).
   *
   * @default Math.random
   */
  random?: () => number;
  /**
   * The circuit breaker of this backend, or `false` for none.
   *
   * @default `breakers.get(backend)` when `breakers` is given, else a breaker of the client's own
   */
  circuitBreaker?: CircuitBreaker | false;
  /**
   * The service's registry of breakers: the client uses (and shows there)
   * the breaker of its backend name.
   *
   * @default none
   */
  breakers?: CircuitBreakers;
}

/** Options of {@linkcode createHttpClient}. */
export interface HttpClientOptions extends ClientOptions {
  /**
   * Headers sent with every request (such as `Authorization`). Their values
   * never appear in errors or logs.
   *
   * @default none
   */
  headers?: HeadersInit;
}

/** A request body that can be sent again when the call is retried. */
export type RequestBody = string | Uint8Array<ArrayBuffer> | FormData | URLSearchParams;

/** Options of one call of an {@linkcode HttpClient}. */
export interface HttpRequestOptions {
  /**
   * The HTTP method.
   *
   * @default "POST" when there is a body, else "GET"
   */
  method?: string;
  /**
   * A value sent as a JSON body (with `Content-Type: application/json`).
   *
   * @default no body
   */
  json?: unknown;
  /**
   * A raw body; ignored when `json` is given.
   *
   * @default no body
   */
  body?: RequestBody;
  /**
   * Extra headers of this call.
   *
   * @default none
   */
  headers?: HeadersInit;
  /**
   * Whether the call has no side effects, so that it may be sent again.
   *
   * @default true for GET and HEAD, else false
   */
  idempotent?: boolean;
  /**
   * Cancels the call; its reason is what the call rejects with.
   *
   * @default none
   */
  signal?: AbortSignal;
  /**
   * The timeout of this call in milliseconds.
   *
   * @default the client's `timeoutMs`
   */
  timeoutMs?: number;
  /**
   * The largest body read into memory.
   *
   * @default the client's `maxBodyBytes`
   */
  maxBodyBytes?: number;
}

/**
 * A streamed response body, read chunk by chunk as the backend sends it.
 * Leaving a `for await` loop early, `return()` and disposal cancel the body
 * and close the request.
 */
export interface HttpStream extends AsyncIterableIterator<Uint8Array>, AsyncDisposable {
  /** The response status (always 2xx). */
  readonly status: number;
  /** The response headers. */
  readonly headers: Headers;
}

/** A client of one backend; see the module documentation for its rules. */
export interface HttpClient {
  /** The backend's short name, used in errors and logs. */
  readonly backend: string;
  /** The base URL without credentials. */
  readonly baseUrl: string;
  /** The backend's circuit breaker, when it has one. */
  readonly circuitBreaker: CircuitBreaker | undefined;
  /**
   * Sends a request and parses the JSON body of the 2xx answer.
   *
   * @param path The path under the base URL, starting with `/`.
   * @param options The method, body, idempotency, signal and limits.
   * @returns The parsed body.
   * @throws {BackendUnavailableError} When the backend cannot be reached or answers 429/502/503/504.
   * @throws {BackendError} When it answers another non-2xx status.
   * @throws {InvalidResponseError} When the body is not JSON or is too large.
   * @throws {TimeoutError} When the call takes longer than its timeout.
   */
  json(path: string, options?: HttpRequestOptions): Promise<unknown>;
  /**
   * Sends a request and reads the 2xx body as bytes.
   *
   * @param path The path under the base URL.
   * @param options The method, body, idempotency, signal and limits.
   * @returns The body, at most `maxBodyBytes` long, and the response headers.
   * @throws {BackendUnavailableError | BackendError | InvalidResponseError | TimeoutError} As {@linkcode HttpClient.json}.
   */
  bytes(
    path: string,
    options?: HttpRequestOptions,
  ): Promise<{ body: Uint8Array; headers: Headers }>;
  /**
   * Sends a request and returns the 2xx body as a stream once the head arrived.
   *
   * @param path The path under the base URL.
   * @param options The method, body, idempotency, signal and timeout.
   * @returns The body stream; its reads reject with the same typed errors.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} As {@linkcode HttpClient.json}.
   */
  stream(path: string, options?: HttpRequestOptions): Promise<HttpStream>;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 2;
const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
const DEFAULT_RETRY_DELAY_MS = 200;
const DEFAULT_MAX_RETRY_DELAY_MS = 5_000;
/** How much of an error body is read to build an excerpt. */
const ERROR_BODY_READ_BYTES = 4096;
const EXCERPT_CHARS = 200;
/** setTimeout overflows above 2^31 - 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
const UNAVAILABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/**
 * Creates the HTTP client of one backend.
 *
 * @param backend The backend's short name for errors and logs ("llm", "milvus", ...).
 * @param options The base URL, timeout, retry policy, limits and injected helpers.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Retry a GET without really waiting
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHttpClient } from "@homelab/handler-base/clients/http";
 * import { startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeHttpServer(() => Response.json({ "Ana Florence": {} }));
 * server.failNext(502, { times: 3 });
 * const delays: number[] = [];
 * const http = createHttpClient("tts", {
 *   baseUrl: server.url,
 *   retries: 3,
 *   sleep: (ms) => {
 *     delays.push(ms); // a test's sleep: no waiting
 *     return Promise.resolve();
 *   },
 * });
 * const speakers = await http.json("/studio_speakers", { signal: AbortSignal.timeout(10_000) });
 * assert.deepEqual(Object.keys(speakers as object), ["Ana Florence"]);
 * assert.equal(delays.length, 3);
 * ```
 */
export function createHttpClient(backend: string, options: HttpClientOptions): HttpClient {
  const url = new URL(options.baseUrl);
  const headers = new Headers(options.headers);
  if ((url.username || url.password) && !headers.has("authorization")) {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    headers.set("authorization", `Basic ${btoa(`${user}:${password}`)}`);
  }
  url.username = "";
  url.password = "";
  url.search = "";
  url.hash = "";
  const secrets = secretsOf(headers);
  return new FetchHttpClient(backend, url.href.replace(/\/+$/, ""), headers, secrets, options);
}

/** The parts of header values that must never be echoed (whole values and their tokens). */
function secretsOf(headers: Headers): string[] {
  const secrets = new Set<string>();
  for (const [, value] of headers) {
    for (const part of [value, ...value.split(/\s+/)]) {
      if (part.length >= 6) secrets.add(part);
    }
  }
  return [...secrets].sort((a, b) => b.length - a.length);
}

/** A timeout and an abort for one call, combined with the caller's signal. */
class CallScope {
  readonly signal: AbortSignal;
  readonly caller: AbortSignal | undefined;
  timedOut = false;
  readonly #controller = new AbortController();
  readonly #onCallerAbort = () => this.#controller.abort(this.caller?.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(caller: AbortSignal | undefined) {
    this.caller = caller;
    this.signal = this.#controller.signal;
    // A listener, not AbortSignal.any(): the caller's signal then holds the
    // scope strongly. A signal made by any() is held weakly by its sources,
    // and once fetch's own follower of it is collected, aborting the caller
    // no longer reaches a body being read.
    if (caller?.aborted) this.#controller.abort(caller.reason);
    else caller?.addEventListener("abort", this.#onCallerAbort, { once: true });
  }

  arm(ms: number): void {
    this.disarm();
    if (!(ms > 0) || !Number.isFinite(ms)) return;
    this.#timer = setTimeout(() => {
      this.timedOut = true;
      this.#controller.abort(new DOMException("The backend call timed out", "TimeoutError"));
    }, Math.min(ms, MAX_TIMER_MS));
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Ends the scope of a call that completed: no timer or listener stays behind. */
  release(): void {
    this.disarm();
    this.caller?.removeEventListener("abort", this.#onCallerAbort);
  }

  /** Ends the scope of a call that did not complete: released, and the request is closed. */
  close(): void {
    this.release();
    this.#controller.abort(new DOMException("The backend call ended", "AbortError"));
  }
}

/**
 * The delay `Retry-After` asks for, in milliseconds (seconds or an HTTP date).
 *
 * @param value The header value.
 * @param now The current time in ms since the epoch.
 */
function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** A short, secret-free phrase for a failed connection (the raw message names the URL). */
function describeNetworkError(error: unknown): string {
  const text = error instanceof Error
    ? `${error.message} ${error.cause instanceof Error ? error.cause.message : ""}`
    : String(error);
  if (/refused/i.test(text)) return "connection refused";
  if (/dns|lookup|resolve|name or service|not known/i.test(text)) return "name resolution failed";
  if (/certificate|tls|ssl/i.test(text)) return "TLS handshake failed";
  if (/reset|closed|broken pipe|incomplete|eof/i.test(text)) return "connection closed";
  return "connection failed";
}

function excerptOf(text: string, secrets: readonly string[]): string {
  let message = text;
  try {
    const parsed: unknown = JSON.parse(text);
    message = errorMessageOf(parsed) ?? text;
  } catch {
    // Not JSON: use the text itself.
  }
  for (const secret of secrets) message = message.replaceAll(secret, "[redacted]");
  message = message.replace(/\b(Bearer|Basic)\s+[\w.~+/=-]{8,}/g, "$1 [redacted]")
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u001f\u007f]+/g, " ")
    .replace(/\s+/g, " ")
    .trim();
  return truncateText(message, EXCERPT_CHARS, { ellipsis: "…" });
}

/** The message of the usual JSON error bodies (`{detail}`, `{message}`, `{error: {message}}`). */
function errorMessageOf(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const record = body as Record<string, unknown>;
  for (const key of ["message", "detail", "error"]) {
    const value = record[key];
    if (typeof value === "string" && value) return value;
    const nested = errorMessageOf(value);
    if (nested) return nested;
  }
  return undefined;
}

/** Reads at most `limit` bytes; returns undefined (and cancels the body) when it is larger. */
async function readBounded(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array | undefined> {
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        return undefined;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** Reads the start of an error body and cancels the rest. */
async function readPrefix(body: ReadableStream<Uint8Array> | null, limit: number): Promise<string> {
  if (body === null) return "";
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let total = 0;
  try {
    while (total < limit) {
      const { done, value } = await reader.read();
      if (done) return text + decoder.decode();
      total += value.byteLength;
      text += decoder.decode(value, { stream: true });
    }
    await reader.cancel().catch(() => {});
    return text;
  } finally {
    reader.releaseLock();
  }
}

class FetchHttpClient implements HttpClient {
  readonly backend: string;
  readonly baseUrl: string;
  readonly #headers: Headers;
  readonly #secrets: readonly string[];
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #maxBodyBytes: number;
  readonly #retryDelayMs: number;
  readonly #maxRetryDelayMs: number;
  readonly #fetch: typeof fetch;
  readonly #logger: Logger | undefined;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly circuitBreaker: CircuitBreaker | undefined;

  constructor(
    backend: string,
    baseUrl: string,
    headers: Headers,
    secrets: readonly string[],
    options: HttpClientOptions,
  ) {
    this.backend = backend;
    this.baseUrl = baseUrl;
    this.#headers = headers;
    this.#secrets = secrets;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#retries = Math.max(0, options.retries ?? DEFAULT_RETRIES);
    this.#maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#logger = options.logger;
    this.#sleep = options.sleep ?? ((ms, signal) => delay(ms, { signal }));
    this.#random = options.random ?? Math.random;
    this.circuitBreaker = options.circuitBreaker === false ? undefined : options.circuitBreaker ??
      options.breakers?.get(backend) ??
      new CircuitBreaker(backend, options.logger ? { logger: options.logger } : {});
  }

  async json(path: string, options: HttpRequestOptions = {}): Promise<unknown> {
    const { body } = await this.bytes(path, options);
    try {
      return JSON.parse(new TextDecoder().decode(body));
    } catch (error) {
      throw new InvalidResponseError(this.backend, "the body is not JSON", { cause: error });
    }
  }

  async bytes(
    path: string,
    options: HttpRequestOptions = {},
  ): Promise<{ body: Uint8Array; headers: Headers }> {
    const scope = new CallScope(options.signal);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    scope.arm(timeoutMs);
    try {
      const response = await this.#send(path, options, scope, timeoutMs);
      const limit = options.maxBodyBytes ?? this.#maxBodyBytes;
      const declared = response.headers.get("content-length");
      let body: Uint8Array | undefined;
      if (declared === null) {
        body = await readBounded(response.body, limit);
      } else if (Number(declared) <= limit) {
        // The framing guarantees the declared length, and arrayBuffer() is the fast path.
        body = new Uint8Array(await response.arrayBuffer());
      }
      if (body === undefined) {
        await response.body?.cancel().catch(() => {});
        throw new InvalidResponseError(this.backend, `the body is larger than ${limit} bytes`);
      }
      scope.release();
      return { body, headers: response.headers };
    } catch (error) {
      scope.close();
      throw this.#toError(error, scope, timeoutMs);
    }
  }

  async stream(path: string, options: HttpRequestOptions = {}): Promise<HttpStream> {
    const scope = new CallScope(options.signal);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    scope.arm(timeoutMs);
    let response: Response;
    try {
      response = await this.#send(path, options, scope, timeoutMs);
    } catch (error) {
      scope.close();
      throw this.#toError(error, scope, timeoutMs);
    } finally {
      scope.disarm();
    }
    return new BodyStream(
      response,
      scope,
      timeoutMs,
      (error) => this.#toError(error, scope, timeoutMs),
    );
  }

  /** Sends the request with retries; resolves with a 2xx response whose body is unread. */
  async #send(
    path: string,
    options: HttpRequestOptions,
    scope: CallScope,
    timeoutMs: number,
  ): Promise<Response> {
    const init = this.#init(options, scope.signal);
    const idempotent = options.idempotent ?? (init.method === "GET" || init.method === "HEAD");
    const url = this.baseUrl + path;
    const startedAt = performance.now();
    for (let attempt = 0;; attempt++) {
      scope.signal.throwIfAborted();
      let failure: HandlerError;
      let retryAfterMs: number | undefined;
      const permit = this.#admit();
      try {
        let response: Response;
        try {
          response = await this.#fetch(url, init);
        } catch (error) {
          if (scope.signal.aborted) permit?.released();
          else permit?.failed(describeNetworkError(error));
          throw error;
        }
        permit?.succeeded();
        if (response.ok) return response;
        if (!UNAVAILABLE_STATUSES.has(response.status)) {
          const text = await readPrefix(response.body, ERROR_BODY_READ_BYTES);
          throw new BackendError(this.backend, {
            status: response.status,
            excerpt: excerptOf(text, this.#secrets),
          });
        }
        await response.body?.cancel().catch(() => {});
        retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), Date.now());
        failure = new BackendUnavailableError(this.backend, {
          detail: `the backend answered ${response.status}`,
        });
      } catch (error) {
        if (error instanceof HandlerError || scope.signal.aborted) throw error;
        failure = new BackendUnavailableError(this.backend, {
          detail: describeNetworkError(error),
          cause: error,
        });
      }
      if (!idempotent || attempt >= this.#retries) throw failure;
      if (retryAfterMs !== undefined && retryAfterMs > this.#maxRetryDelayMs) throw failure;
      // A backend whose circuit opened is down: retrying would only hold the caller.
      if (this.circuitBreaker && this.circuitBreaker.state !== "closed") throw failure;
      const backoff = Math.min(this.#maxRetryDelayMs, this.#retryDelayMs * 2 ** attempt);
      const delayMs = retryAfterMs ?? Math.round(backoff * (0.5 + this.#random() / 2));
      // Never wait into the call's own timeout: fail with what is known now.
      if (timeoutMs > 0 && performance.now() - startedAt + delayMs >= timeoutMs) throw failure;
      this.#logger?.warn("Retrying backend call", {
        backend: this.backend,
        path,
        attempt: attempt + 1,
        delayMs,
        reason: failure.message,
        timeoutMs,
      });
      await this.#sleep(delayMs, scope.signal);
    }
  }

  /** A permit of the circuit breaker, or the error of a refused call. */
  #admit(): CircuitPermit | undefined {
    const breaker = this.circuitBreaker;
    if (!breaker) return undefined;
    const permit = breaker.tryAcquire();
    if (permit) return permit;
    const { consecutive_failures, last_failure, retry_in_ms } = breaker.snapshot();
    const next = retry_in_ms > 0 ? `, next try in ${retry_in_ms} ms` : ", a probe is under way";
    throw new BackendUnavailableError(this.backend, {
      detail: `the circuit is open after ${consecutive_failures} failed connections ` +
        `(${last_failure || "connection failed"})${next}`,
    });
  }

  #init(options: HttpRequestOptions, signal: AbortSignal): RequestInit {
    const headers = new Headers(this.#headers);
    for (const [name, value] of new Headers(options.headers)) headers.set(name, value);
    let body: RequestBody | undefined = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers.set("content-type", "application/json");
    }
    const method = options.method ?? (body === undefined ? "GET" : "POST");
    return { method, headers, body: body ?? null, signal };
  }

  /** Maps anything thrown during a call to the error the caller sees. */
  #toError(error: unknown, scope: CallScope, timeoutMs: number): unknown {
    if (scope.caller?.aborted) return scope.caller.reason;
    if (scope.timedOut) {
      return new TimeoutError(
        `Backend "${this.backend}" did not answer within ${timeoutMs} ms`,
        { cause: error },
      );
    }
    if (error instanceof HandlerError) return error;
    if (error instanceof TypeError) {
      return new BackendUnavailableError(this.backend, {
        detail: "the connection broke during the response",
        cause: error,
      });
    }
    return error;
  }
}

class BodyStream implements HttpStream {
  readonly status: number;
  readonly headers: Headers;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #scope: CallScope;
  readonly #idleMs: number;
  readonly #toError: (error: unknown) => unknown;
  #finished = false;

  constructor(
    response: Response,
    scope: CallScope,
    idleMs: number,
    toError: (error: unknown) => unknown,
  ) {
    this.status = response.status;
    this.headers = response.headers;
    this.#reader = (response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }))
      .getReader();
    this.#scope = scope;
    this.#idleMs = idleMs;
    this.#toError = toError;
    // An abort ends a pending read at once, whatever fetch still follows.
    scope.signal.addEventListener("abort", () => {
      this.#reader.cancel(scope.signal.reason).catch(() => {});
    }, { once: true });
  }

  async next(): Promise<IteratorResult<Uint8Array, undefined>> {
    if (this.#finished) return { done: true, value: undefined };
    this.#scope.arm(this.#idleMs);
    try {
      const result = await this.#reader.read();
      if (this.#scope.signal.aborted) throw this.#scope.signal.reason;
      if (!result.done) return result;
      this.#finished = true;
      this.#scope.release();
      return { done: true, value: undefined };
    } catch (error) {
      this.#finished = true;
      this.#scope.close();
      throw this.#toError(error);
    } finally {
      this.#scope.disarm();
    }
  }

  async return(): Promise<IteratorResult<Uint8Array, undefined>> {
    if (!this.#finished) {
      this.#finished = true;
      await this.#reader.cancel().catch(() => {});
      this.#scope.close();
    }
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.return();
  }
}

/** What every `<backend>ClientFromConfig` factory takes beside the loaded variables. */
export interface ClientFromConfigOptions {
  /**
   * Where retries are reported (as warnings).
   *
   * @default no logging
   */
  logger?: Logger;
  /**
   * The service's circuit breakers: the client uses its backend's (see
   * {@linkcode ClientOptions.breakers}). `serviceMain` passes its registry
   * to `setup` as `context.clients.breakers`.
   *
   * @default a breaker of the client's own
   */
  breakers?: CircuitBreakers;
}

/**
 * The variable builder of a backend's base URL: `http` or `https`, with a default.
 *
 * @param name The variable's name, such as `VLLM_URL`.
 * @param defaultUrl Its default (SYSTEM.md section 6).
 * @returns The variable's spec.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backendUrlVar } from "@homelab/handler-base/clients/http";
 * import { loadConfig } from "@homelab/handler-base/config";
 *
 * const config = loadConfig({ url: backendUrlVar("DEMO_URL", "http://demo:8000") }, {});
 * assert.equal(config.url, "http://demo:8000");
 * ```
 */
export function backendUrlVar(name: string, defaultUrl: string): VarSpec<string> {
  return envVar.url(name, { default: defaultUrl, schemes: ["http", "https"] });
}
