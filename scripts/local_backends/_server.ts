/**
 * The HTTP plumbing every stand-in shares (internal): a loopback server that
 * routes `METHOD /path` to a handler, reads bodies with a size cap, and turns
 * every failure into the error body of the API it imitates plus one log line,
 * so bad input never takes a stand-in down.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example A one-route stand-in
 * ```ts ignore
 * import { serveStandIn } from "./_server.ts";
 *
 * await using server = serveStandIn({
 *   name: "demo",
 *   routes: { "GET /ping": () => Response.json({ ok: true }) },
 *   errorBody: (_status, message) => ({ detail: message }),
 * });
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { isRecord } from "../../handler_base/clients/_json.ts";

/** What one stand-in says about itself in the stack's readiness summary. */
export interface Readiness {
  /** The backend it stands in for, such as `"tts"`. */
  backend: string;
  /** Its base URL. */
  url: string;
  /** What answers, such as "flite (slt, kal16, rms, awb) and espeak-ng". */
  standIn: string;
  /** Whether it runs as meant (false: a fallback answers, see `hint`). */
  ok: boolean;
  /** What to install for the real thing, on one line, when `ok` is false or a part is missing. */
  hint?: string;
}

/** A running stand-in. */
export interface StandIn extends AsyncDisposable {
  /** Its base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** What it is and whether it runs as meant. */
  readonly readiness: Readiness;
  /** Stops the server (running requests are ended). */
  close(): Promise<void>;
}

/** A failure that maps to an HTTP status and a message for the client. */
export class HttpError extends Error {
  /** The HTTP status. */
  readonly status: number;

  /**
   * @param status The HTTP status.
   * @param message "Cannot X: detail", safe to send to the client.
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** What a route gets besides the request. */
export interface RouteContext {
  /** Fires when the client went away or the server is closing. */
  signal: AbortSignal;
  /** The stand-in's logger, when it has one. */
  logger: Logger | undefined;
}

/** A route handler. */
export type Route = (request: Request, context: RouteContext) => Response | Promise<Response>;

/** Options of {@linkcode serveStandIn}. */
export interface ServeStandInOptions {
  /** The stand-in's name, for log lines. */
  name: string;
  /** Handlers by `"METHOD /path"`. */
  routes: Record<string, Route>;
  /** The error body of the imitated API. */
  errorBody: (status: number, message: string) => unknown;
  /**
   * The port to listen on (0: a free one).
   *
   * @default 0
   */
  port?: number;
  /**
   * The address to listen on.
   *
   * @default "127.0.0.1"
   */
  hostname?: string;
  /**
   * Where bad requests and failures are logged.
   *
   * @default none
   */
  logger?: Logger;
}

/** A running server of {@linkcode serveStandIn}. */
export interface StandInServer extends AsyncDisposable {
  /** Its base URL. */
  readonly url: string;
  /** Stops it, ending running requests. */
  close(): Promise<void>;
}

/**
 * Starts a stand-in's HTTP server.
 *
 * @param options Name, routes, error shape, address and logger.
 * @returns The running server.
 */
export function serveStandIn(options: ServeStandInOptions): StandInServer {
  const { name, routes, errorBody, logger } = options;
  const closing = new AbortController();
  const server = Deno.serve(
    { hostname: options.hostname ?? "127.0.0.1", port: options.port ?? 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      const key = `${request.method} ${url.pathname}`;
      const route = routes[key];
      const signal = AbortSignal.any([request.signal, closing.signal]);
      try {
        if (!route) {
          const known = Object.keys(routes).some((k) => k.endsWith(` ${url.pathname}`));
          throw new HttpError(
            known ? 405 : 404,
            known
              ? `Cannot ${request.method} ${url.pathname}: method not allowed`
              : `Cannot find ${url.pathname}: the ${name} stand-in does not serve it`,
          );
        }
        return await route(request, { signal, logger });
      } catch (error) {
        if (error instanceof HttpError) {
          logger?.warn("Rejected a request", { path: url.pathname, status: error.status, error });
          return Response.json(errorBody(error.status, error.message), { status: error.status });
        }
        if (signal.aborted) return new Response(null, { status: 499 });
        logger?.error("Request failed", { path: url.pathname, error });
        return Response.json(errorBody(500, `Cannot answer: the ${name} stand-in failed`), {
          status: 500,
        });
      }
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  let closed: Promise<void> | undefined;
  function close(): Promise<void> {
    closing.abort();
    return closed ??= server.shutdown();
  }
  return { url, close, [Symbol.asyncDispose]: close };
}

/**
 * Reads a request body, refusing more than `limit` bytes.
 *
 * @param request The request.
 * @param limit The most bytes accepted.
 * @returns The body.
 * @throws {HttpError} 413 when it is larger.
 */
export async function readBody(
  request: Request,
  limit: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw new HttpError(413, `Cannot read the body: more than ${limit} bytes`);
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const part of request.body ?? []) {
    total += part.byteLength;
    if (total > limit) throw new HttpError(413, `Cannot read the body: more than ${limit} bytes`);
    parts.push(part);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/**
 * Reads a JSON object body.
 *
 * @param request The request.
 * @param limit The most bytes accepted.
 * @returns The object.
 * @throws {HttpError} 400 when the body is not a JSON object, 413 when it is too large.
 */
export async function readJsonObject(
  request: Request,
  limit = 4 * 1024 * 1024,
): Promise<Record<string, unknown>> {
  const bytes = await readBody(request, limit);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new HttpError(400, "Cannot parse the body: it is not JSON");
  }
  if (!isRecord(value)) throw new HttpError(400, "Cannot parse the body: it is not a JSON object");
  return value;
}

/**
 * Reads a `multipart/form-data` body.
 *
 * @param request The request.
 * @param limit The most bytes accepted.
 * @returns The form.
 * @throws {HttpError} 400 when the body is not a form, 413 when it is too large.
 */
export async function readForm(request: Request, limit: number): Promise<FormData> {
  const type = request.headers.get("content-type") ?? "";
  if (!type.includes("multipart/form-data")) {
    throw new HttpError(400, "Cannot parse the body: it is not multipart/form-data");
  }
  const bytes = await readBody(request, limit);
  try {
    return await new Response(bytes, { headers: { "content-type": type } }).formData();
  } catch {
    throw new HttpError(400, "Cannot parse the body: the multipart form is malformed");
  }
}

/**
 * The body of an OpenAI-style error.
 *
 * @param status The HTTP status.
 * @param message The message.
 * @returns `{error: {message, type, code}}`.
 */
export function openAiError(status: number, message: string): unknown {
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  return { error: { message, type, code: status } };
}
