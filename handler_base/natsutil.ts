/**
 * NATS with protobuf: connect from configuration (reconnecting forever, with
 * jitter), publish and request typed messages, and decode payloads into typed
 * errors. Every publish and request carries the `Msg-Type` header and the W3C
 * trace headers of the active span (SYSTEM.md section 2).
 *
 * Requires `--allow-net=<nats host:port>`, and `--allow-read=<file>` for a
 * creds file or TLS CA.
 *
 * @example Request a typed reply
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, decodeMsg, publish, request } from "@homelab/handler-base/natsutil";
 * import { TTSFullResponseSchema, TTSRequestSchema } from "@homelab/handler-base/messages";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "demo" });
 * // A responder standing in for tts-module.
 * nc.subscribe("ai.voice.tts.request.*", {
 *   callback: (_error, msg) => {
 *     const { text } = decodeMsg(TTSRequestSchema, msg);
 *     publish(nc, msg.reply!, TTSFullResponseSchema, { sessionId: text, sampleRate: 24000 });
 *   },
 * });
 * const audio = await request(nc, "ai.voice.tts.request.s1", TTSRequestSchema, { text: "Hi" },
 *   TTSFullResponseSchema, { timeout: 30_000 });
 * assert.deepEqual([audio.sessionId, audio.sampleRate], ["Hi", 24000]);
 * await nc.drain();
 * ```
 *
 * @module
 */
import type * as nats from "@nats-io/nats-core";
import {
  credsAuthenticator,
  errors as natsErrors,
  headers as createHeaders,
} from "@nats-io/nats-core";
import { NatsConnectionImpl, setTransportFactory } from "@nats-io/nats-core/internal";
import { type Context, context as otelContext } from "@opentelemetry/api";
import {
  BackendUnavailableError,
  fromErrorResponse,
  HandlerError,
  TimeoutError,
} from "./errors.ts";
import {
  decode,
  type DescMessage,
  encode,
  ErrorResponseSchema,
  type MessageInitShape,
  type MessageShape,
  MSG_TYPE_HEADER,
} from "./messages.ts";
import { abortable } from "./async.ts";
import type { NatsConfig } from "./config.ts";
import { injectTraceContext } from "./telemetry.ts";
import { denoTransportFactory } from "./nats_transport.ts";

/** A connection to NATS (nats.js). */
export type NatsConnection = nats.NatsConnection;

/** A received NATS message (nats.js). */
export type Msg = nats.Msg;

/** NATS message headers (nats.js). */
export type MsgHdrs = nats.MsgHdrs;

/** Options of {@linkcode connectNats}. */
export interface NatsConnectOptions {
  /** One URL or several, comma-separated or as a list. */
  servers: string | string[];
  /** The connection name the server shows (the service name). */
  name: string;
  /** User, with {@linkcode NatsConnectOptions.password}. @default undefined */
  user?: string | undefined;
  /** Password. @default undefined */
  password?: string | undefined;
  /** Token. @default undefined */
  token?: string | undefined;
  /** Path of a `.creds` file (JWT and nkey seed). @default undefined */
  credsFile?: string | undefined;
  /** Path of a PEM CA bundle; enables TLS. @default undefined */
  tlsCaFile?: string | undefined;
  /**
   * Keep trying when the first connection fails instead of throwing.
   *
   * @default false
   */
  waitOnFirstConnect?: boolean;
  /**
   * Base wait between reconnect attempts, in milliseconds.
   *
   * @default 1000
   */
  reconnectTimeWaitMs?: number;
  /**
   * How long the first connection may take (TCP, TLS and the server's
   * handshake), in milliseconds.
   *
   * @default 20000
   */
  connectTimeoutMs?: number;
}

/**
 * The connection options that a loaded {@linkcode NatsConfig} describes.
 *
 * @param config The loaded `natsConfigSpec` variables.
 * @returns Options for {@linkcode connectNats}, without the name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig, natsConfigSpec } from "@homelab/handler-base/config";
 * import { natsOptionsFromConfig } from "@homelab/handler-base/natsutil";
 *
 * const options = natsOptionsFromConfig(loadConfig(natsConfigSpec, { NATS_URL: "nats://a:4222" }));
 * assert.deepEqual(options.servers, ["nats://a:4222"]);
 * ```
 */
export function natsOptionsFromConfig(config: NatsConfig): Omit<NatsConnectOptions, "name"> {
  return {
    servers: [...config.natsUrl],
    user: config.natsUser,
    password: config.natsPassword,
    token: config.natsToken,
    credsFile: config.natsCreds,
    tlsCaFile: config.natsTlsCa,
  };
}

function splitServers(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : servers.split(",");
  return list.map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * Connects to NATS, reconnecting forever with jitter after the first
 * connection.
 *
 * The connection runs over the project's Deno-native socket transport
 * (`nats_transport.ts`: `Deno.connect` and `Deno.startTls`), not over
 * `@nats-io/transport-node` and Deno's Node socket layer. nats-core keeps
 * its transport factory in one module-global setting, which this function
 * sets before each connection: every connection made in the process after
 * it, reconnections included, uses this transport.
 *
 * @param options Servers, name and credentials.
 * @returns The connection.
 * @throws {Error} When the first connection fails and `waitOnFirstConnect` is false.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats } from "@homelab/handler-base/natsutil";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "tts-module" });
 * assert.equal(nc.isClosed(), false);
 * await nc.drain();
 * ```
 */
export async function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  const { credsFile, tlsCaFile } = options;
  setTransportFactory(denoTransportFactory);
  return await NatsConnectionImpl.connect({
    servers: splitServers(options.servers),
    name: options.name,
    user: options.user,
    pass: options.password,
    token: options.token,
    authenticator: credsFile ? credsAuthenticator(await Deno.readFile(credsFile)) : undefined,
    tls: tlsCaFile ? { caFile: tlsCaFile } : undefined,
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 1000,
    reconnectJitter: 500,
    waitOnFirstConnect: options.waitOnFirstConnect ?? false,
    ...(options.connectTimeoutMs === undefined ? {} : { timeout: options.connectTimeoutMs }),
  });
}

/** What {@linkcode watchConnection} reports. */
export type ConnectionState = "connected" | "disconnected" | "closed";

/** A live view of a connection's state. */
export interface ConnectionWatch {
  /** The current state. */
  readonly state: ConnectionState;
}

/**
 * Follows a connection's status events, so readiness can be answered without
 * I/O.
 *
 * @param nc The connection.
 * @param onChange Called on each change of state.
 * @returns A live view of the state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, watchConnection } from "@homelab/handler-base/natsutil";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "demo" });
 * const watch = watchConnection(nc);
 * assert.equal(watch.state, "connected");
 * await nc.close();
 * ```
 */
export function watchConnection(
  nc: NatsConnection,
  onChange?: (state: ConnectionState) => void,
): ConnectionWatch {
  let state: ConnectionState = nc.isClosed() ? "closed" : "connected";
  const set = (next: ConnectionState) => {
    if (next === state) return;
    state = next;
    onChange?.(next);
  };
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect" || status.type === "reconnecting") set("disconnected");
      else if (status.type === "reconnect") set("connected");
      else if (status.type === "close") set("closed");
    }
  })();
  nc.closed().then(() => set("closed"));
  return {
    get state() {
      return state;
    },
  };
}

/** Options of {@linkcode publish}. */
export interface PublishOptions {
  /** Extra headers; `Msg-Type` and trace headers are added to them. @default new headers */
  headers?: MsgHdrs;
  /** The trace context to propagate. @default the active context */
  context?: Context;
  /** A reply subject for the receiver. @default undefined */
  reply?: string;
}

/**
 * The headers every message the project publishes carries: `Msg-Type` and
 * the W3C trace context.
 *
 * @param typeName The full protobuf name of the payload.
 * @param options Headers to extend and the trace context.
 * @returns The headers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { messageHeaders } from "@homelab/handler-base/natsutil";
 *
 * const h = messageHeaders("messages.v1.TTSStatus");
 * assert.equal(h.get("Msg-Type"), "messages.v1.TTSStatus");
 * ```
 */
export function messageHeaders(
  typeName: string,
  options: Pick<PublishOptions, "headers" | "context"> = {},
): MsgHdrs {
  const h = options.headers ?? createHeaders();
  h.set(MSG_TYPE_HEADER, typeName);
  injectTraceContext(h, options.context ?? otelContext.active());
  return h;
}

/**
 * Publishes one typed message.
 *
 * @typeParam Desc The message schema.
 * @param nc The connection.
 * @param subject The subject.
 * @param schema The message's schema.
 * @param message The message or its fields.
 * @param options Headers, trace context and reply subject.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, publish } from "@homelab/handler-base/natsutil";
 * import { TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "demo" });
 * const sub = nc.subscribe("ai.voice.tts.status.s1", { max: 1 });
 * publish(nc, "ai.voice.tts.status.s1", TTSStatusSchema, { sessionId: "s1", status: "processing" });
 * for await (const msg of sub) assert.equal(msg.headers?.get("Msg-Type"), "messages.v1.TTSStatus");
 * await nc.close();
 * ```
 */
export function publish<Desc extends DescMessage>(
  nc: NatsConnection,
  subject: string,
  schema: Desc,
  message: MessageShape<Desc> | MessageInitShape<Desc>,
  options: PublishOptions = {},
): void {
  nc.publish(subject, encode(schema, message), {
    headers: messageHeaders(schema.typeName, options),
    ...(options.reply ? { reply: options.reply } : {}),
  });
}

/** Options of {@linkcode request}. */
export interface RequestOptions {
  /** How long to wait for the reply, in milliseconds. */
  timeout: number;
  /** Aborts the wait. @default undefined */
  signal?: AbortSignal;
  /** Extra headers. @default new headers */
  headers?: MsgHdrs;
  /** The trace context to propagate. @default the active context */
  context?: Context;
}

/**
 * Nobody subscribes to the subject of a request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NoRespondersError } from "@homelab/handler-base/natsutil";
 *
 * assert.equal(new NoRespondersError("ai.chat.request").type, "BackendUnavailable");
 * ```
 */
export class NoRespondersError extends BackendUnavailableError {
  /** The subject nobody answers. */
  readonly subject: string;

  /**
   * Creates the error for a subject nobody answers.
   *
   * @param subject The subject.
   * @param options The cause.
   */
  constructor(subject: string, options?: ErrorOptions) {
    super(subject, { ...options, detail: "no responders" });
    this.name = "NoRespondersError";
    this.subject = subject;
  }
}

/**
 * A request whose reply did not come in time.
 *
 * @example
 * ```ts
 * import { RequestTimeoutError } from "@homelab/handler-base/natsutil";
 *
 * console.log(new RequestTimeoutError("ai.chat.request", 5000).message);
 * // No reply on "ai.chat.request" within 5000 ms
 * ```
 */
export class RequestTimeoutError extends TimeoutError {
  /** The subject of the request. */
  readonly subject: string;

  /**
   * Creates the error for a request that timed out.
   *
   * @param subject The subject.
   * @param timeoutMs The timeout.
   * @param options The cause.
   */
  constructor(subject: string, timeoutMs: number, options?: ErrorOptions) {
    super(`No reply on "${subject}" within ${timeoutMs} ms`, options);
    this.name = "RequestTimeoutError";
    this.subject = subject;
  }
}

function isErrorResponse(msg: Msg): boolean {
  const msgType = msg.headers?.get(MSG_TYPE_HEADER);
  if (msgType) return msgType === ErrorResponseSchema.typeName;
  // Go services send no header; only ErrorResponse has a bool as field 1.
  try {
    // decode() keeps unknown fields, as fromBinary(..., { readUnknownFields: true }) did.
    const reply = decode(ErrorResponseSchema, msg.data);
    return reply.error && !(reply.$unknown?.length);
  } catch {
    return false;
  }
}

/**
 * Decodes a received NATS message as the given type, checking its
 * `Msg-Type` header when it has one.
 *
 * @typeParam Desc The message schema.
 * @param schema The expected schema.
 * @param msg The NATS message.
 * @returns The decoded message.
 * @throws {DecodeError} When the payload is not that type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, decodeMsg, publish } from "@homelab/handler-base/natsutil";
 * import { TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "demo" });
 * const statuses = nc.subscribe("ai.voice.tts.status.s1", { max: 1 });
 * publish(nc, "ai.voice.tts.status.s1", TTSStatusSchema, { status: "completed" });
 * for await (const msg of statuses) {
 *   assert.equal(decodeMsg(TTSStatusSchema, msg).status, "completed");
 * }
 * await nc.close();
 * ```
 */
export function decodeMsg<Desc extends DescMessage>(schema: Desc, msg: Msg): MessageShape<Desc> {
  return decode(schema, msg.data, { msgType: msg.headers?.get(MSG_TYPE_HEADER) || undefined });
}

/**
 * Sends a typed request and decodes the typed reply.
 *
 * @typeParam Req The request schema.
 * @typeParam Res The reply schema.
 * @param nc The connection.
 * @param subject The subject.
 * @param requestSchema The request's schema.
 * @param message The request or its fields.
 * @param responseSchema The reply's schema.
 * @param options Timeout, signal, headers and trace context.
 * @returns The decoded reply.
 * @throws {RemoteError} When the reply is an `ErrorResponse`.
 * @throws {RequestTimeoutError} When no reply comes in time.
 * @throws {NoRespondersError} When nobody subscribes to the subject.
 * @throws {DecodeError} When the reply is not the expected type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, NoRespondersError, publish, request } from "@homelab/handler-base/natsutil";
 * import { EmptySchema, TTSVoiceListResponseSchema } from "@homelab/handler-base/messages";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "demo" });
 * nc.subscribe("ai.voice.tts.voices.list", {
 *   callback: (_error, msg) =>
 *     publish(nc, msg.reply!, TTSVoiceListResponseSchema, { defaultSpeaker: "Ana Florence" }),
 * });
 * const voices = await request(nc, "ai.voice.tts.voices.list", EmptySchema, {},
 *   TTSVoiceListResponseSchema, { timeout: 2000 });
 * assert.equal(voices.defaultSpeaker, "Ana Florence");
 * await assert.rejects( // nobody listens here
 *   request(nc, "ai.voice.tts.voices.none", EmptySchema, {}, TTSVoiceListResponseSchema, { timeout: 2000 }),
 *   NoRespondersError,
 * );
 * await nc.close();
 * ```
 */
export async function request<Req extends DescMessage, Res extends DescMessage>(
  nc: NatsConnection,
  subject: string,
  requestSchema: Req,
  message: MessageShape<Req> | MessageInitShape<Req>,
  responseSchema: Res,
  options: RequestOptions,
): Promise<MessageShape<Res>> {
  const { timeout, signal } = options;
  signal?.throwIfAborted();
  const pending = nc.request(subject, encode(requestSchema, message), {
    timeout,
    headers: messageHeaders(requestSchema.typeName, options),
  });
  let reply: Msg;
  try {
    reply = await abortable(pending, signal);
  } catch (cause) {
    throw toRequestError(subject, timeout, cause);
  }
  if (isErrorResponse(reply)) {
    throw fromErrorResponse(decode(ErrorResponseSchema, reply.data));
  }
  return decodeMsg(responseSchema, reply);
}

function toRequestError(subject: string, timeout: number, cause: unknown): unknown {
  if (cause instanceof HandlerError) return cause;
  const inner = cause instanceof natsErrors.RequestError ? cause.cause ?? cause : cause;
  if (
    inner instanceof natsErrors.NoRespondersError ||
    (cause instanceof natsErrors.RequestError && cause.isNoResponders())
  ) {
    return new NoRespondersError(subject, { cause });
  }
  if (inner instanceof natsErrors.TimeoutError) {
    return new RequestTimeoutError(subject, timeout, { cause });
  }
  return cause;
}

/**
 * The tokens of a subject (`"ai.voice.tts.request.s1"` gives
 * `["ai", "voice", "tts", "request", "s1"]`).
 *
 * @param subject A subject.
 * @returns Its dot-separated tokens.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { subjectTokens } from "@homelab/handler-base/natsutil";
 *
 * assert.equal(subjectTokens("ai.voice.stream.abc").at(-1), "abc");
 * ```
 */
export function subjectTokens(subject: string): string[] {
  return subject.split(".");
}
