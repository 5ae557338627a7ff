/**
 * Fake inference backends for tests: small in-process HTTP servers on a free
 * loopback port that speak the exact shapes the clients use (SYSTEM.md
 * section 7): an OpenAI LLM (whole and SSE-streamed answers), embeddings, a
 * reranker (Cohere and TEI shapes), Milvus v2 REST, an XTTS server (and the
 * OpenAI speech shape) and Whisper.
 *
 * Every fake records the requests it received (with a `disconnected`
 * promise that tells when the client went away), can be scripted to fail
 * ({@linkcode FakeServer.failNext}), to hang until the client goes away
 * ({@linkcode FakeServer.hangNext}) or to answer through a custom handler
 * ({@linkcode FakeServer.override}), and has a mutable `config` that tests
 * may change between calls. Streams can be split at chosen bytes, paced,
 * delayed and cut in the middle (a cut closes the connection without the
 * end of the chunked body; Deno prints the error it was cut with).
 * `close()` (or `await using`) ends hanging requests and running streams,
 * then stops the server.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example A streamed answer split into one-byte reads
 * ```ts
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 *
 * await using llm = startFakeLlm({ reply: "Hello there", chunkSize: 1 });
 * const client = createLlmClient({ baseUrl: llm.url });
 * for await (const delta of client.stream([{ role: "user", content: "Hi" }])) console.log(delta);
 * console.log(llm.requests[0]?.json); // { messages: [...], max_tokens: 1024, temperature: 0.7, stream: true }
 * ```
 *
 * @module
 */
import { delay } from "../async.ts";
import { isRecord } from "../clients/_json.ts";
import { wrapPcmAsWav } from "../clients/wav.ts";

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
 * @example A one-route fake
 * ```ts ignore
 * import { startFakeHttpServer } from "@homelab/handler-base/testing";
 *
 * await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
 * fake.failNext(503, { times: 2 });
 * const response = await fetch(`${fake.url}/anything`);
 * console.log(response.status); // 503
 * await response.body?.cancel();
 * ```
 */
export function startFakeHttpServer(
  routes: FakeRoutes,
  options: FakeServerOptions = {},
): FakeServer {
  const requests: RecordedRequest[] = [];
  const unclaimed: RecordedRequest[] = [];
  const waiters: ((request: RecordedRequest) => void)[] = [];
  const failures: Failure[] = [];
  const closing = new AbortController();
  let hang = 0;
  let overrideHandler: FakeHandler | undefined;

  const handler: Deno.ServeHandler<Deno.NetAddr> = async (request, info) => {
    const gone = Promise.withResolvers<void>();
    const disconnected = () => gone.resolve();
    info.completed.catch(disconnected);
    const recorded = await record(request, gone.promise);
    requests.push(recorded);
    const waiter = waiters.shift();
    if (waiter) waiter(recorded);
    else unclaimed.push(recorded);

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
  };
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
    nextRequest(signal) {
      const ready = unclaimed.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          waiters.splice(waiters.indexOf(deliver), 1);
          reject(signal?.reason);
        };
        const deliver = (request: RecordedRequest) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(request);
        };
        if (signal?.aborted) return reject(signal.reason);
        signal?.addEventListener("abort", onAbort, { once: true });
        waiters.push(deliver);
      });
    },
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

async function record(request: Request, disconnected: Promise<void>): Promise<RecordedRequest> {
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
 * A body that sends the pieces one by one; with `cut` it ends by breaking
 * the connection instead of finishing the chunked body. Pacing waits end
 * when the server closes; a client that goes away marks the request.
 */
function pacedBody(
  pieces: readonly Uint8Array[],
  pacing: StreamPacing,
  cut: boolean,
  { closing, disconnected }: FakeContext,
): ReadableStream<Uint8Array> {
  let index = 0;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index > 0 && pacing.delayMs) {
        await delay(pacing.delayMs, { signal: closing }).catch(() => {});
      }
      if (pacing.pace && index < pieces.length) {
        await Promise.race([pacing.pace(index), untilAborted(closing)]);
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

/** Splits bytes at the given offsets (sorted, out-of-range ones ignored). */
function splitBytes(bytes: Uint8Array, offsets: readonly number[]): Uint8Array[] {
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

function chunked(bytes: Uint8Array, size: number): Uint8Array[] {
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
 * import { concatBytes } from "@homelab/handler-base/testing";
 *
 * console.log(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]).length); // 3
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

const encoder = new TextEncoder();

function notFound(request: RecordedRequest): Response {
  return Response.json({ detail: `Not Found: ${request.method} ${request.path}` }, { status: 404 });
}

// ---------------------------------------------------------------------------
// LLM

/** Options of {@linkcode chatCompletionEvents}. */
export interface ChatCompletionEventsOptions {
  /**
   * The `model` of every chunk.
   *
   * @default "fake-model"
   */
  model?: string;
  /**
   * The `finish_reason` of the last chunk; null sends no finishing chunk.
   *
   * @default "stop"
   */
  finishReason?: string | null;
  /**
   * End with `data: [DONE]`.
   *
   * @default true
   */
  done?: boolean;
  /**
   * The line ending of the stream.
   *
   * @default "\n"
   */
  lineEnding?: "\n" | "\r\n" | "\r";
  /**
   * Put a `: keep-alive` comment before every event.
   *
   * @default false
   */
  keepAlive?: boolean;
}

/**
 * The server-sent events of an OpenAI chat completions stream: a role chunk,
 * one chunk per delta, a chunk with the finish reason, then `[DONE]`.
 *
 * @param deltas The text deltas.
 * @param options Model, finish reason, `[DONE]`, line ending and keep-alives.
 * @returns One string per event, each ending with its blank line.
 *
 * @example Build a recorded stream
 * ```ts
 * import { chatCompletionEvents } from "@homelab/handler-base/testing";
 *
 * const text = chatCompletionEvents(["Hel", "lo"]).join("");
 * console.log(text.endsWith("data: [DONE]\n\n")); // true
 * ```
 */
export function chatCompletionEvents(
  deltas: readonly string[],
  options: ChatCompletionEventsOptions = {},
): string[] {
  const { model = "fake-model", finishReason = "stop", done = true, lineEnding = "\n" } = options;
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    JSON.stringify({
      id: "chatcmpl-fake",
      object: "chat.completion.chunk",
      created: 0,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
  const data = [
    chunk({ role: "assistant", content: "" }, null),
    ...deltas.map((content) => chunk({ content }, null)),
  ];
  if (finishReason !== null) data.push(chunk({}, finishReason));
  if (done) data.push("[DONE]");
  const prefix = options.keepAlive ? `: keep-alive${lineEnding}${lineEnding}` : "";
  return data.map((d) => `${prefix}data: ${d}${lineEnding}${lineEnding}`);
}

/** The behaviour of {@linkcode startFakeLlm}; tests may change it between calls. */
export interface FakeLlmConfig extends StreamPacing, ChatCompletionEventsOptions {
  /**
   * The answer, or a function of the parsed request body.
   *
   * @default "Hello from the fake LLM."
   */
  reply?: string | ((request: Record<string, unknown>) => string);
  /**
   * The deltas of a streamed answer.
   *
   * @default the reply split into words (each with its trailing space)
   */
  deltas?: string[];
  /**
   * Split the streamed bytes into pieces of this size.
   *
   * @default one piece per event
   */
  chunkSize?: number;
  /**
   * Split the streamed bytes at these offsets (overrides `chunkSize`).
   *
   * @default none
   */
  splitAt?: number[];
  /**
   * Send this many events, then half of the next, then break the connection.
   *
   * @default never
   */
  cutAfterEvents?: number;
}

/** A fake LLM server. */
export interface FakeLlm extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeLlmConfig;
}

/**
 * Starts a fake OpenAI chat completions server (`POST /v1/chat/completions`):
 * a JSON answer, or with `stream: true` an SSE stream shaped by `config`.
 * Bodies without `messages` get a vLLM-style 400.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Cut the first stream, answer the next normally
 * ```ts ignore
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 *
 * await using llm = startFakeLlm({ reply: "one two three", cutAfterEvents: 2 });
 * // ... the first stream fails ...
 * llm.config.cutAfterEvents = undefined;
 * ```
 */
export function startFakeLlm(config: FakeLlmConfig = {}): FakeLlm {
  const fake: FakeLlm = Object.assign(
    startFakeHttpServer((request, context) => {
      if (request.method !== "POST" || request.path !== "/v1/chat/completions") {
        return notFound(request);
      }
      const body = request.json;
      if (!isRecord(body) || !Array.isArray(body.messages) || body.messages.length === 0) {
        return Response.json(
          { object: "error", message: "messages is required", type: "BadRequestError", code: 400 },
          { status: 400 },
        );
      }
      const c = fake.config;
      const model = typeof body.model === "string" ? body.model : c.model ?? "fake-model";
      const reply = typeof c.reply === "function"
        ? c.reply(body)
        : c.reply ?? "Hello from the fake LLM.";
      const deltas = c.deltas ?? reply.match(/\S+\s*|\s+/g) ?? [];
      if (body.stream !== true) {
        return Response.json({
          id: "chatcmpl-fake",
          object: "chat.completion",
          created: 0,
          model,
          choices: [{
            index: 0,
            message: { role: "assistant", content: c.deltas ? deltas.join("") : reply },
            finish_reason: c.finishReason === undefined ? "stop" : c.finishReason,
          }],
        });
      }
      const events = chatCompletionEvents(deltas, { ...c, model }).map((e) => encoder.encode(e));
      let bytes = concatBytes(events);
      const cut = c.cutAfterEvents !== undefined;
      if (cut) {
        const kept = events.slice(0, c.cutAfterEvents);
        const next = events[c.cutAfterEvents!];
        bytes = concatBytes([
          ...kept,
          next?.subarray(0, Math.floor(next.length / 2)) ?? new Uint8Array(0),
        ]);
      }
      let pieces: Uint8Array[];
      if (c.splitAt) pieces = splitBytes(bytes, c.splitAt);
      else if (c.chunkSize) pieces = chunked(bytes, c.chunkSize);
      else if (cut) pieces = [bytes];
      else pieces = events;
      return new Response(pacedBody(pieces, c, cut, context), {
        headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      });
    }),
    { config },
  );
  return fake;
}

// ---------------------------------------------------------------------------
// Embeddings

/** The behaviour of {@linkcode startFakeEmbeddings}. */
export interface FakeEmbeddingsConfig {
  /**
   * The vector length of the default embedding.
   *
   * @default 8
   */
  dimensions?: number;
  /**
   * Computes a text's vector.
   *
   * @default a deterministic unit vector derived from the text's characters
   */
  embed?: (text: string) => number[];
  /**
   * Return the items in reverse order (their `index` fields stay right).
   *
   * @default false
   */
  reverse?: boolean;
}

/** A fake embeddings server. */
export interface FakeEmbeddings extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeEmbeddingsConfig;
  /**
   * The vector the fake returns for a text.
   *
   * @param text The input.
   * @returns Its vector.
   */
  vectorOf(text: string): number[];
}

/**
 * Deterministic unit vector of a text: similar texts get similar vectors.
 *
 * @param text The input.
 * @param dimensions The vector length.
 */
function hashEmbedding(text: string, dimensions: number): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  for (const word of text.toLowerCase().split(/\W+/).filter(Boolean)) {
    let h = 2166136261;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619);
    vector[(h >>> 0) % dimensions]! += 1;
  }
  const norm = Math.hypot(...vector) || 1;
  return vector.map((v) => v / norm);
}

/**
 * Starts a fake OpenAI embeddings server (`POST /v1/embeddings`).
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Check the batches a client sent
 * ```ts ignore
 * import { startFakeEmbeddings } from "@homelab/handler-base/testing";
 *
 * await using embeddings = startFakeEmbeddings({ dimensions: 4 });
 * // ... embed ...
 * console.log(embeddings.requests.map((r) => (r.json as { input: string[] }).input.length));
 * ```
 */
export function startFakeEmbeddings(config: FakeEmbeddingsConfig = {}): FakeEmbeddings {
  const vectorOf = (text: string) =>
    fake.config.embed?.(text) ?? hashEmbedding(text, fake.config.dimensions ?? 8);
  const fake: FakeEmbeddings = Object.assign(
    startFakeHttpServer((request) => {
      if (request.method !== "POST" || request.path !== "/v1/embeddings") return notFound(request);
      const body = request.json;
      const input = isRecord(body) ? body.input : undefined;
      const texts = typeof input === "string" ? [input] : input;
      if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
        return Response.json({ detail: "input must be a string or a list of strings" }, {
          status: 422,
        });
      }
      const data = texts.map((text, index) => ({
        object: "embedding",
        index,
        embedding: vectorOf(text),
      }));
      if (fake.config.reverse) data.reverse();
      return Response.json({
        object: "list",
        model: isRecord(body) && typeof body.model === "string" ? body.model : "fake-embedder",
        data,
      });
    }),
    { config, vectorOf },
  );
  return fake;
}

// ---------------------------------------------------------------------------
// Reranker

/** The behaviour of {@linkcode startFakeReranker}. */
export interface FakeRerankerConfig {
  /**
   * Which request shapes are served: `"cohere"` (`/v1/rerank`), `"tei"`
   * (`/rerank`) or both; the other path answers 404.
   *
   * @default "both"
   */
  api?: "cohere" | "tei" | "both";
  /**
   * Scores a document against a query.
   *
   * @default the share of the query's words found in the document
   */
  score?: (query: string, document: string) => number;
}

/** A fake reranker server. */
export interface FakeReranker extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeRerankerConfig;
}

function wordOverlap(query: string, document: string): number {
  const words = query.toLowerCase().split(/\W+/).filter(Boolean);
  if (words.length === 0) return 0;
  const text = ` ${document.toLowerCase().split(/\W+/).join(" ")} `;
  return words.filter((w) => text.includes(` ${w} `)).length / words.length;
}

/**
 * Starts a fake reranker speaking the Cohere/Infinity shape
 * (`POST /v1/rerank {query, documents, top_n}`) and the TEI shape
 * (`POST /rerank {query, texts}`), both sorted by descending score.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example A TEI-only server, to test the automatic fallback
 * ```ts ignore
 * import { startFakeReranker } from "@homelab/handler-base/testing";
 *
 * await using reranker = startFakeReranker({ api: "tei" });
 * ```
 */
export function startFakeReranker(config: FakeRerankerConfig = {}): FakeReranker {
  const fake: FakeReranker = Object.assign(
    startFakeHttpServer((request) => {
      const api = fake.config.api ?? "both";
      const score = fake.config.score ?? wordOverlap;
      const body = isRecord(request.json) ? request.json : {};
      const query = typeof body.query === "string" ? body.query : undefined;
      if (request.method === "POST" && request.path === "/v1/rerank" && api !== "tei") {
        const documents = body.documents;
        if (query === undefined || !Array.isArray(documents)) {
          return Response.json({ detail: "query and documents are required" }, { status: 422 });
        }
        const topN = typeof body.top_n === "number" ? body.top_n : documents.length;
        const results = documents
          .map((doc, index) => ({ index, relevance_score: score(query, String(doc)) }))
          .sort((a, b) => b.relevance_score - a.relevance_score)
          .slice(0, topN);
        return Response.json({ id: "rerank-fake", results });
      }
      if (request.method === "POST" && request.path === "/rerank" && api !== "cohere") {
        const texts = body.texts;
        if (query === undefined || !Array.isArray(texts)) {
          return Response.json({ error: "query and texts are required" }, { status: 422 });
        }
        const results = texts
          .map((text, index) => ({ index, score: score(query, String(text)) }))
          .sort((a, b) => b.score - a.score);
        return Response.json(results);
      }
      return notFound(request);
    }),
    { config },
  );
  return fake;
}

// ---------------------------------------------------------------------------
// Milvus

/** The behaviour of {@linkcode startFakeMilvus}. */
export interface FakeMilvusConfig {
  /**
   * The rows a search returns (the first `limit` of them), each with a
   * `distance`, or a function of the parsed request body.
   *
   * @default three rows `{id, text, distance}` with distances 0.9, 0.8, 0.7
   */
  hits?:
    | Record<string, unknown>[]
    | ((request: Record<string, unknown>) => Record<string, unknown>[]);
  /**
   * The token the fake requires as `Authorization: Bearer <token>`; others
   * get Milvus's code 1800.
   *
   * @default none required
   */
  token?: string;
  /**
   * The collections that exist; others get Milvus's code 100.
   *
   * @default any collection exists
   */
  collections?: string[];
}

/** A fake Milvus server. */
export interface FakeMilvus extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeMilvusConfig;
}

const DEFAULT_MILVUS_HITS = [
  { id: 1, text: "NATS is a messaging system.", distance: 0.9 },
  { id: 2, text: "JetStream adds persistence to NATS.", distance: 0.8 },
  { id: 3, text: "Milvus is a vector database.", distance: 0.7 },
];

/**
 * Starts a fake Milvus v2 REST server (`POST /v2/vectordb/entities/search`).
 * Like Milvus, it answers failures with HTTP 200 and a non-zero `code`.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Require a token
 * ```ts ignore
 * import { startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using milvus = startFakeMilvus({ token: "root:Milvus", hits: [{ id: 7, text: "x", distance: 0.5 }] });
 * ```
 */
export function startFakeMilvus(config: FakeMilvusConfig = {}): FakeMilvus {
  const fake: FakeMilvus = Object.assign(
    startFakeHttpServer((request) => {
      if (request.method !== "POST" || request.path !== "/v2/vectordb/entities/search") {
        return notFound(request);
      }
      const c = fake.config;
      if (c.token && request.headers.get("authorization") !== `Bearer ${c.token}`) {
        return Response.json({ code: 1800, message: "user hasn't authenticated" });
      }
      const body = isRecord(request.json) ? request.json : undefined;
      const data = body?.data;
      if (
        !body || typeof body.collectionName !== "string" || !Array.isArray(data) ||
        !Array.isArray(data[0])
      ) {
        return Response.json({ code: 1100, message: "invalid parameter: data and collectionName" });
      }
      if (c.collections && !c.collections.includes(body.collectionName)) {
        return Response.json({
          code: 100,
          message: `collection not found[collection=${body.collectionName}]`,
        });
      }
      const limit = typeof body.limit === "number" ? body.limit : 100;
      const rows = typeof c.hits === "function" ? c.hits(body) : c.hits ?? DEFAULT_MILVUS_HITS;
      return Response.json({ code: 0, cost: 0, data: rows.slice(0, limit) });
    }),
    { config },
  );
  return fake;
}

// ---------------------------------------------------------------------------
// XTTS

/** XTTS speaker latents as the server sends them. */
export interface XttsLatents {
  /** The speaker embedding. */
  speaker_embedding: number[];
  /** The GPT conditioning latent. */
  gpt_cond_latent: number[][];
}

/** The behaviour of {@linkcode startFakeXtts}. */
export interface FakeXttsConfig extends StreamPacing {
  /**
   * The studio speakers.
   *
   * @default two speakers, "Ana Florence" and "Claribel Dervla", with small latents
   */
  speakers?: Record<string, XttsLatents>;
  /**
   * The output sample rate.
   *
   * @default 24000
   */
  sampleRate?: number;
  /**
   * Samples of audio per character of text.
   *
   * @default 240
   */
  samplesPerChar?: number;
  /**
   * The size of streamed pieces in bytes.
   *
   * @default 4800
   */
  chunkBytes?: number;
  /**
   * Send this many pieces of a stream, then break the connection.
   *
   * @default never
   */
  cutAfterChunks?: number;
}

/** A fake XTTS server. */
export interface FakeXtts extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeXttsConfig;
  /**
   * The 16-bit PCM the fake synthesizes for a text (what `/tts` wraps in
   * WAV and `/tts_stream` streams).
   *
   * @param text The text.
   * @returns Little-endian 16-bit mono samples.
   */
  pcmFor(text: string): Uint8Array;
}

const DEFAULT_SPEAKERS: Record<string, XttsLatents> = {
  "Ana Florence": { speaker_embedding: [0.1, 0.2, 0.3, 0.4], gpt_cond_latent: [[1, 2], [3, 4]] },
  "Claribel Dervla": { speaker_embedding: [0.5, 0.6, 0.7, 0.8], gpt_cond_latent: [[5, 6], [7, 8]] },
};

function xttsError(detail: string): Response {
  return Response.json({ detail }, { status: 422 });
}

/**
 * Starts a fake XTTS streaming server: `POST /tts` (a JSON string of a
 * base64 WAV), `POST /tts_stream` (chunked raw PCM, with a 44-byte WAV
 * header of length 0 first when `add_wav_header` is true), `POST
 * /clone_speaker` (multipart `wav_file`, latents derived from its size),
 * `GET /studio_speakers`, and the OpenAI shape `POST /v1/audio/speech`
 * (`response_format` `wav`, or `pcm` streamed).
 *
 * @param config The initial behaviour.
 * @param options Where it listens (a port to come back on after {@linkcode FakeServer.close}).
 * @returns The running fake.
 *
 * @example Release streamed chunks one at a time
 * ```ts ignore
 * import { startFakeXtts } from "@homelab/handler-base/testing";
 *
 * const gates: PromiseWithResolvers<void>[] = [];
 * await using xtts = startFakeXtts({
 *   pace: (i) => (gates[i] ??= Promise.withResolvers<void>()).promise,
 * });
 * ```
 */
export function startFakeXtts(
  config: FakeXttsConfig = {},
  options: FakeServerOptions = {},
): FakeXtts {
  function pcmFor(text: string): Uint8Array {
    const c = fake.config;
    const perChar = c.samplesPerChar ?? 240;
    const samples = new Int16Array(text.length * perChar);
    for (let i = 0; i < samples.length; i++) {
      const code = text.charCodeAt(Math.floor(i / perChar));
      samples[i] = Math.round(8000 * Math.sin((i * (code % 32 + 1)) / 20));
    }
    return new Uint8Array(samples.buffer);
  }

  function stream(pcm: Uint8Array, header: boolean, context: FakeContext): Response {
    const c = fake.config;
    const pieces = chunked(pcm, c.chunkBytes ?? 4800);
    if (header) {
      pieces.unshift(wrapPcmAsWav(new Uint8Array(0), { sampleRate: c.sampleRate ?? 24000 }));
    }
    const cut = c.cutAfterChunks !== undefined;
    const sent = cut ? pieces.slice(0, c.cutAfterChunks) : pieces;
    return new Response(pacedBody(sent, c, cut, context), {
      headers: { "content-type": "audio/wav" },
    });
  }

  const fake: FakeXtts = Object.assign(
    startFakeHttpServer(async (request, context) => {
      const c = fake.config;
      const speakers = c.speakers ?? DEFAULT_SPEAKERS;
      const sampleRate = c.sampleRate ?? 24000;
      const body = isRecord(request.json) ? request.json : {};
      const route = `${request.method} ${request.path}`;
      if (route === "GET /studio_speakers") return Response.json(speakers);
      if (route === "POST /clone_speaker") {
        const file = request.form?.get("wav_file");
        if (!(file instanceof Blob)) return xttsError("wav_file is required");
        const size = (await file.arrayBuffer()).byteLength;
        return Response.json({
          gpt_cond_latent: [[size, 1], [2, 3]],
          speaker_embedding: [size / 1000, 0.5, 0.25, 0.125],
        });
      }
      if (route === "POST /tts" || route === "POST /tts_stream") {
        if (
          typeof body.text !== "string" || typeof body.language !== "string" ||
          !Array.isArray(body.speaker_embedding) || !Array.isArray(body.gpt_cond_latent)
        ) {
          return xttsError("text, language, speaker_embedding and gpt_cond_latent are required");
        }
        const pcm = pcmFor(body.text);
        if (route === "POST /tts_stream") return stream(pcm, body.add_wav_header === true, context);
        const wav = wrapPcmAsWav(pcm, { sampleRate });
        return Response.json(btoa(Array.from(wav, (b) => String.fromCharCode(b)).join("")));
      }
      if (route === "POST /v1/audio/speech") {
        if (typeof body.input !== "string" || typeof body.voice !== "string") {
          return xttsError("input and voice are required");
        }
        const pcm = pcmFor(body.input);
        if (body.response_format === "pcm") return stream(pcm, false, context);
        return new Response(wrapPcmAsWav(pcm, { sampleRate }), {
          headers: { "content-type": "audio/wav" },
        });
      }
      return notFound(request);
    }, options),
    { config, pcmFor },
  );
  return fake;
}

// ---------------------------------------------------------------------------
// Whisper

/** What a fake Whisper transcribes. */
export interface FakeWhisperInput {
  /** The uploaded file. */
  file: Uint8Array;
  /** The `model` field. */
  model: string;
  /** The `language` field, when sent. */
  language?: string;
}

/** The behaviour of {@linkcode startFakeWhisper}. */
export interface FakeWhisperConfig {
  /**
   * The transcript, or a function of the upload.
   *
   * @default "hello world"
   */
  transcript?: string | ((input: FakeWhisperInput) => string);
}

/** A fake Whisper server. */
export interface FakeWhisper extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeWhisperConfig;
}

/**
 * Starts a fake OpenAI transcription server
 * (`POST /v1/audio/transcriptions`, multipart `file`, `model`, `language`,
 * `response_format`). Files that are not WAV get a 400.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Transcribe by audio length
 * ```ts ignore
 * import { startFakeWhisper } from "@homelab/handler-base/testing";
 *
 * await using whisper = startFakeWhisper({ transcript: ({ file }) => `${file.length} bytes` });
 * ```
 */
export function startFakeWhisper(config: FakeWhisperConfig = {}): FakeWhisper {
  const fake: FakeWhisper = Object.assign(
    startFakeHttpServer(async (request) => {
      if (request.method !== "POST" || request.path !== "/v1/audio/transcriptions") {
        return notFound(request);
      }
      const file = request.form?.get("file");
      const model = request.form?.get("model");
      if (!(file instanceof Blob) || typeof model !== "string") {
        return Response.json({ error: { message: "file and model are required" } }, {
          status: 400,
        });
      }
      const bytes = new Uint8Array(await file.arrayBuffer());
      const magic = new TextDecoder().decode(bytes.subarray(0, 4));
      if (magic !== "RIFF") {
        return Response.json({ error: { message: "the file is not a WAV file" } }, { status: 400 });
      }
      const language = request.form?.get("language");
      const input: FakeWhisperInput = { file: bytes, model };
      if (typeof language === "string") input.language = language;
      const t = fake.config.transcript;
      const text = typeof t === "function" ? t(input) : t ?? "hello world";
      return Response.json({ text });
    }),
    { config },
  );
  return fake;
}
