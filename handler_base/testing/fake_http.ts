/**
 * The HTTP server under every fake backend: a `Deno.serve` on a free loopback
 * port that records each request (with a `disconnected` promise that tells
 * when the client went away), can be scripted to fail
 * ({@linkcode FakeServer.failNext}), to hang until the client goes away
 * ({@linkcode FakeServer.hangNext}) or to answer through a custom handler
 * ({@linkcode FakeServer.override}), and streams bodies split at chosen
 * bytes, paced, delayed and cut in the middle ({@linkcode pacedBody}; a cut
 * closes the connection without the end of the chunked body, and Deno prints
 * the error it was cut with). `close()` (or `await using`) ends hanging
 * requests and running streams, then stops the server.
 *
 * A new fake is a function of the request given to
 * {@linkcode startFakeHttpServer}, in its own file beside the others.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example A one-route fake that fails twice, then answers
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using fake = startFakeHttpServer((request) => Response.json({ path: request.path }));
 * fake.failNext(503, { times: 2 });
 * const statuses = [];
 * for (let i = 0; i < 3; i++) {
 *   const response = await fetch(`${fake.url}/ping`);
 *   statuses.push(response.status);
 *   await response.body?.cancel();
 * }
 * assert.deepEqual(statuses, [503, 503, 200]);
 * assert.equal(fake.requests.length, 3);
 * ```
 *
 * @module
 */
import { delay } from "../async.ts";

/** A request a fake server received. */
export interface RecordedRequest {
  /** The HTTP method. */
  method: string;
  /** The URL path (without the query). */
  path: string;
  /** The query string, with its `?`, or "". */
  search: string;
  /** The request headers. */
  headers: Headers;
  /** The raw body. */
  body: Uint8Array;
  /** The body parsed as JSON, when it is JSON. */
  json?: unknown;
  /** The body parsed as a form, when it is `multipart/form-data`. */
  form?: FormData;
  /**
   * Resolves when the client went away before the response was fully
   * delivered (a timeout or abort that closed the connection).
   */
  disconnected: Promise<void>;
  /** When the request reached the fake (`performance.now()` of the fake's process). */
  receivedAt: number;
  /**
   * Milliseconds from {@linkcode RecordedRequest.receivedAt} until the fake had
   * its response (head and, unless streamed, body) ready: the backend's own
   * time, for benchmarks that subtract it. Undefined until then.
   */
  handledMs?: number;
}

/**
 * Answers a recorded request; an override may return undefined to let the
 * fake's own handler answer.
 */
export type FakeHandler = (
  request: RecordedRequest,
) => Response | undefined | Promise<Response | undefined>;

/** Options of {@linkcode FakeServer.failNext}. */
export interface FailNextOptions {
  /**
   * How many requests fail.
   *
   * @default 1
   */
  times?: number;
  /**
   * The response body.
   *
   * @default `{"error": "scripted failure <status>"}`
   */
  body?: string;
  /**
   * Response headers (such as `{"retry-after": "0"}`).
   *
   * @default a JSON content type
   */
  headers?: HeadersInit;
  /**
   * Fail only requests to this path; others pass.
   *
   * @default every path
   */
  path?: string;
  /**
   * Fail only requests with this method (`"POST"`); others pass.
   *
   * @default every method
   */
  method?: string;
}

/** A running fake server. */
export interface FakeServer extends AsyncDisposable {
  /** The base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The requests received so far, in arrival order. */
  readonly requests: RecordedRequest[];
  /**
   * Waits for the next request to arrive (a request that already arrived
   * and was not yet waited for is returned at once, in order).
   *
   * @param signal Gives up waiting.
   * @returns The request.
   */
  nextRequest(signal?: AbortSignal): Promise<RecordedRequest>;
  /**
   * Answers the next requests with an error status.
   *
   * @param status The status, such as 503.
   * @param options How many times, the body, headers and path.
   */
  failNext(status: number, options?: FailNextOptions): void;
  /**
   * Holds the next requests until the client goes away or the server closes
   * (for timeout and abort tests): the fake sends a 200 head and then
   * nothing, because Deno.serve cannot always tell that a client still
   * waiting for a head went away, while a body write always can.
   *
   * @param times How many requests to hold.
   */
  hangNext(times?: number): void;
  /**
   * Puts a custom handler in front of the fake's own (undefined removes it).
   *
   * @param handler The handler; when it returns undefined the fake answers.
   */
  override(handler: FakeHandler | undefined): void;
  /**
   * Stops listening, as a backend that went down: connections are refused
   * until {@linkcode FakeServer.up}. Recorded requests and scripting stay.
   */
  down(): Promise<void>;
  /** Listens again on the same port after {@linkcode FakeServer.down}. */
  up(): void;
  /** Ends held requests and streams, then stops the server. */
  close(): Promise<void>;
}

/** What a fake's route handler gets besides the request. */
export interface FakeContext {
  /** Aborts when the fake server closes. */
  closing: AbortSignal;
  /** Marks the request as disconnected (call it from a streamed body's `cancel`). */
  disconnected: () => void;
}

/** A fake's own routing: answers a request the scripting left through. */
export type FakeRoutes = (
  request: RecordedRequest,
  context: FakeContext,
) => Response | Promise<Response>;

/** Where a fake listens. */
export interface FakeServerOptions {
  /**
   * The port on 127.0.0.1: give the port of a fake that was closed to bring
   * "the same backend" back after an outage.
   *
   * @default 0 (a free port)
   */
  port?: number;
}

interface Failure {
  status: number;
  times: number;
  body: string;
  headers: Headers;
  path?: string;
  method?: string;
}

/**
 * Starts a fake HTTP server with the recording and scripting every fake
 * has, answering with the given routes.
 *
 * @param routes The fake's own handler.
 * @param options Where it listens.
 * @returns The running server.
 *
 * @example A fake that holds the next request until the client gives up
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
 * fake.hangNext();
 * const client = new AbortController();
 * const call = fetch(fake.url, { signal: client.signal }).then((r) => r.text());
 * const request = await fake.nextRequest();
 * client.abort();
 * await assert.rejects(call, { name: "AbortError" });
 * await request.disconnected;
 * ```
 */
export function startFakeHttpServer(
  routes: FakeRoutes,
  options: FakeServerOptions = {},
): FakeServer {
  const requests: RecordedRequest[] = [];
  const arrivals = new Mailbox<RecordedRequest>();
  const failures: Failure[] = [];
  const closing = new AbortController();
  let hang = 0;
  let overrideHandler: FakeHandler | undefined;

  const handler: Deno.ServeHandler<Deno.NetAddr> = async (request, info) => {
    const receivedAt = performance.now();
    const gone = Promise.withResolvers<void>();
    const disconnected = () => gone.resolve();
    info.completed.catch(disconnected);
    const recorded = await record(request, gone.promise, receivedAt);
    requests.push(recorded);
    arrivals.put(recorded);
    const response = await answer(recorded, disconnected);
    recorded.handledMs = performance.now() - receivedAt;
    return response;
  };
  async function answer(recorded: RecordedRequest, disconnected: () => void): Promise<Response> {
    const failure = failures.find((f) =>
      (f.path === undefined || f.path === recorded.path) &&
      (f.method === undefined || f.method === recorded.method)
    );
    if (failure) {
      if (--failure.times <= 0) failures.splice(failures.indexOf(failure), 1);
      return new Response(failure.body, { status: failure.status, headers: failure.headers });
    }
    if (hang > 0) {
      hang--;
      return new Response(heldBody({ closing: closing.signal, disconnected }));
    }
    const custom = await overrideHandler?.(recorded);
    if (custom) return custom;
    return await routes(recorded, { closing: closing.signal, disconnected });
  }
  let server: Deno.HttpServer<Deno.NetAddr> | undefined = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen() {} },
    handler,
  );
  const port = server.addr.port;
  const url = `http://127.0.0.1:${port}`;

  let closed: Promise<void> | undefined;
  function close(): Promise<void> {
    closing.abort();
    const running = server;
    server = undefined;
    return closed ??= running?.shutdown() ?? Promise.resolve();
  }

  return {
    url,
    requests,
    nextRequest: (signal) => arrivals.next(signal),
    failNext(status, options = {}) {
      const headers = new Headers(options.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      failures.push({
        status,
        times: options.times ?? 1,
        body: options.body ?? JSON.stringify({ error: `scripted failure ${status}` }),
        headers,
        path: options.path,
        method: options.method,
      });
    },
    hangNext(times = 1) {
      hang += times;
    },
    override(handler) {
      overrideHandler = handler;
    },
    async down() {
      const running = server;
      server = undefined;
      await running?.shutdown();
    },
    up() {
      if (server || closing.signal.aborted) return;
      server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, handler);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function record(
  request: Request,
  disconnected: Promise<void>,
  receivedAt: number,
): Promise<RecordedRequest> {
  const url = new URL(request.url);
  // A client that went away mid-upload is still recorded, with the body cut short.
  const body = new Uint8Array(await request.arrayBuffer().catch(() => new ArrayBuffer(0)));
  const type = request.headers.get("content-type") ?? "";
  const recorded: RecordedRequest = {
    method: request.method,
    path: url.pathname,
    search: url.search,
    headers: request.headers,
    body,
    disconnected,
    receivedAt,
  };
  if (type.includes("json")) {
    try {
      recorded.json = JSON.parse(new TextDecoder().decode(body));
    } catch {
      // Left undefined: the route answers the bad body.
    }
  } else if (type.includes("multipart/form-data")) {
    recorded.form = await new Response(body, { headers: { "content-type": type } }).formData()
      .catch(() => undefined);
  }
  return recorded;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** How a fake streams a body. */
export interface StreamPacing {
  /**
   * Milliseconds to wait before each piece after the first.
   *
   * @default 0
   */
  delayMs?: number;
  /**
   * Awaited before piece `index` is sent, so a test can release pieces one by one.
   *
   * @default none
   */
  pace?: (index: number) => Promise<void>;
}

/** Options of {@linkcode pacedBody}. */
export interface PacedBodyOptions extends StreamPacing {
  /**
   * End by breaking the connection instead of finishing the chunked body.
   *
   * @default false
   */
  cut?: boolean;
}

/**
 * The error a fake cuts a stream with. Deno prints it when the connection
 * breaks; one line without a stack says it is on purpose.
 */
function cutError(): Error {
  const error = new Error("Fake backend cut the connection on purpose");
  error.stack = `${error.name}: ${error.message}`;
  return error;
}

/**
 * A response body that sends the pieces one by one, paced; with `cut` it
 * ends by breaking the connection instead of finishing the chunked body.
 * Pacing waits end when the server closes; a client that goes away marks
 * the request disconnected.
 *
 * @param pieces The pieces, in order.
 * @param context The context the fake's routes got.
 * @param options Pacing and the cut.
 * @returns The body stream.
 *
 * @example Release the second piece when the test says so
 * ```ts
 * import assert from "node:assert/strict";
 * import { pacedBody, startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * const gate = Promise.withResolvers<void>();
 * const pieces = [new Uint8Array([1]), new Uint8Array([2])];
 * await using fake = startFakeHttpServer((_request, context) =>
 *   new Response(pacedBody(pieces, context, { pace: (i) => i === 1 ? gate.promise : Promise.resolve() }))
 * );
 * const reader = (await fetch(fake.url)).body!.getReader();
 * assert.deepEqual((await reader.read()).value, new Uint8Array([1]));
 * gate.resolve();
 * assert.deepEqual((await reader.read()).value, new Uint8Array([2]));
 * assert.equal((await reader.read()).done, true);
 * ```
 */
export function pacedBody(
  pieces: readonly Uint8Array[],
  context: FakeContext,
  options: PacedBodyOptions = {},
): ReadableStream<Uint8Array> {
  const { closing, disconnected } = context;
  const { delayMs, pace, cut = false } = options;
  let index = 0;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index > 0 && delayMs) {
        await delay(delayMs, { signal: closing }).catch(() => {});
      }
      if (pace && index < pieces.length) {
        await Promise.race([pace(index), untilAborted(closing)]);
      }
      if (cancelled) return;
      if (closing.aborted || index >= pieces.length) {
        if (cut && !closing.aborted) controller.error(cutError());
        else controller.close();
        return;
      }
      controller.enqueue(pieces[index++]!);
    },
    cancel() {
      cancelled = true;
      disconnected();
    },
  });
}

/** A body that never sends a byte; it ends when the server closes. */
function heldBody({ closing, disconnected }: FakeContext): ReadableStream<Uint8Array> {
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await untilAborted(closing);
      if (!cancelled) controller.close();
    },
    cancel() {
      cancelled = true;
      disconnected();
    },
  });
}

/**
 * Splits bytes at the given offsets (sorted; out-of-range and repeated ones
 * are ignored), to send a stream in awkward pieces.
 *
 * @param bytes The bytes.
 * @param offsets Where to cut.
 * @returns The pieces, views of `bytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitBytes } from "@homelab/handler-base/testing";
 *
 * const pieces = splitBytes(new Uint8Array([1, 2, 3, 4]), [3, 1, 9]);
 * assert.deepEqual(pieces.map((p) => [...p]), [[1], [2, 3], [4]]);
 * ```
 */
export function splitBytes(bytes: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const offset of [...offsets].sort((a, b) => a - b)) {
    if (offset <= start || offset >= bytes.length) continue;
    pieces.push(bytes.subarray(start, offset));
    start = offset;
  }
  pieces.push(bytes.subarray(start));
  return pieces;
}

/**
 * Splits bytes into pieces of one size (the last may be shorter).
 *
 * @param bytes The bytes.
 * @param size The size of a piece.
 * @returns The pieces, views of `bytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkBytes } from "@homelab/handler-base/testing";
 *
 * assert.deepEqual(chunkBytes(new Uint8Array(5), 2).map((p) => p.length), [2, 2, 1]);
 * ```
 */
export function chunkBytes(bytes: Uint8Array, size: number): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) pieces.push(bytes.subarray(i, i + size));
  return pieces;
}

/**
 * Joins byte arrays into one (to compare streamed audio with a fake's whole audio).
 *
 * @param parts The arrays, in order.
 * @returns One array with their bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatBytes } from "@homelab/handler-base/testing";
 *
 * assert.deepEqual(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * The 404 every fake answers a route it does not serve with.
 *
 * @param request The request.
 * @returns A JSON 404 naming the method and path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { notFound, startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using fake = startFakeHttpServer(notFound);
 * const response = await fetch(`${fake.url}/nowhere`);
 * assert.equal(response.status, 404);
 * assert.deepEqual(await response.json(), { detail: "Not Found: GET /nowhere" });
 * ```
 */
export function notFound(request: RecordedRequest): Response {
  return Response.json({ detail: `Not Found: ${request.method} ${request.path}` }, { status: 404 });
}

/**
 * A response body that breaks the connection after its first byte, as a
 * server that stored a create and then lost its answer: the client never
 * gets the result of a call that took effect.
 *
 * @param server The fake's name, for the error the stream ends with.
 * @returns The body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lostResponseBody } from "@homelab/handler-base/testing";
 *
 * const reader = lostResponseBody("Fake API").getReader();
 * assert.equal((await reader.read()).value?.length, 1);
 * await assert.rejects(reader.read(), /Fake API lost the response on purpose/);
 * ```
 */
export function lostResponseBody(server: string): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(new TextEncoder().encode("{"));
        return;
      }
      const error = new Error(`${server} lost the response on purpose`);
      error.stack = `${error.name}: ${error.message}`;
      controller.error(error);
    },
  });
}

/**
 * A queue of things a fake saw (requests, created runs), each taken once by
 * whoever asks next: at once when one is waiting, else when it arrives.
 *
 * @typeParam T What is queued.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Mailbox } from "@homelab/handler-base/testing";
 *
 * const created = new Mailbox<string>();
 * const next = created.next(AbortSignal.timeout(1000));
 * created.put("run-1");
 * assert.equal(await next, "run-1");
 * ```
 */
export class Mailbox<T> {
  readonly #unclaimed: T[] = [];
  readonly #waiters: ((item: T) => void)[] = [];

  /**
   * Hands an item to the oldest waiter, or keeps it for the next call.
   *
   * @param item The item.
   */
  put(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#unclaimed.push(item);
  }

  /**
   * The oldest unclaimed item, or the next to arrive.
   *
   * @param signal Stops waiting: the promise rejects with its reason.
   * @returns The item.
   */
  next(signal?: AbortSignal): Promise<T> {
    if (this.#unclaimed.length > 0) return Promise.resolve(this.#unclaimed.shift()!);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.splice(this.#waiters.indexOf(deliver), 1);
        reject(signal?.reason);
      };
      const deliver = (item: T) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(item);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(deliver);
    });
  }
}
