/**
 * Traces and metrics through Deno's built-in OpenTelemetry: a tracer and the
 * handler metrics of a service, W3C trace context (`traceparent`,
 * `tracestate`) carried in NATS headers, and spans that follow the messaging
 * semantic conventions.
 *
 * Deno exports only when the process starts with `OTEL_DENO=true`; the OTLP
 * exporter reads `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`
 * (`http/protobuf` by default, `http/json` also works) and `OTEL_SERVICE_NAME`.
 * Without `OTEL_DENO` every tracer and meter is a no-op and the helpers here
 * return early, so instrumented code costs close to nothing; an incoming
 * trace context is still passed on to the messages published with it.
 *
 * Two behaviours of Deno 2.9 that shape this module: its spans do not carry
 * their parent's `tracestate` (so {@linkcode extractTraceContext} keeps it in
 * the context for {@linkcode injectTraceContext}), and it records every span,
 * whatever the sampled flag of the incoming `traceparent`.
 *
 * Needs no permission: Deno reads the `OTEL_*` variables and exports by
 * itself, and this module reads no environment.
 *
 * @example Process a message under a consumer span
 * ```ts
 * import {
 *   createTelemetry,
 *   extractTraceContext,
 *   injectTraceContext,
 *   recordError,
 *   startConsumerSpan,
 *   withSpan,
 * } from "@homelab/handler-base/telemetry";
 *
 * const telemetry = createTelemetry({ serviceName: "chat-handler", version: "0.1.0" });
 * const incoming = new Headers({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" });
 * const parent = extractTraceContext(incoming);
 * const span = startConsumerSpan(telemetry.tracer, { subject: "ai.chat.request", parent });
 * try {
 *   await withSpan(span, async () => {
 *     const outgoing = new Headers();
 *     injectTraceContext(outgoing); // the reply continues the trace
 *   }, { context: parent });
 * } catch (error) {
 *   recordError(span, error);
 * } finally {
 *   span.end();
 * }
 * ```
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  context,
  type Counter,
  createContextKey,
  type Histogram,
  INVALID_SPANID,
  INVALID_TRACEID,
  type Meter,
  type MeterProvider,
  metrics,
  ProxyTracer,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
  type TraceState,
  type UpDownCounter,
} from "@opentelemetry/api";
import { errorType } from "./errors.ts";

/**
 * The names of the metrics every handler records.
 *
 * @example Find a metric in an export
 * ```ts
 * import assert from "node:assert/strict";
 * import { METRIC_NAMES } from "@homelab/handler-base/telemetry";
 *
 * assert.equal(METRIC_NAMES.duration, "messaging.process.duration");
 * ```
 */
export const METRIC_NAMES = {
  handled: "handler.messages.handled",
  failed: "handler.messages.failed",
  inFlight: "handler.messages.in_flight",
  duration: "messaging.process.duration",
} as const;

/**
 * Bucket bounds of the duration histogram, in seconds: the messaging semantic
 * conventions' bounds, extended for LLM and TTS calls that take a minute.
 */
const DURATION_BUCKETS_SECONDS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
  30,
  60,
  120,
];

/** The instruments every handler records into. */
export interface HandlerMetrics {
  /** Messages whose handling finished, successfully or not. */
  readonly handled: Counter;
  /** Messages whose handling failed; record with the `error.type` attribute. */
  readonly failed: Counter;
  /** Messages being handled right now. */
  readonly inFlight: UpDownCounter;
  /** How long handling took, in seconds. */
  readonly duration: Histogram;
}

/** A service's tracer, meter and handler metrics. */
export interface Telemetry {
  /** The service name, used as the instrumentation scope name. */
  readonly serviceName: string;
  /** Whether a real tracer provider is registered (Deno runs with `OTEL_DENO=true`). */
  readonly enabled: boolean;
  /** The tracer of the service. */
  readonly tracer: Tracer;
  /** The meter of the service, for metrics of its own. */
  readonly meter: Meter;
  /** The instruments every handler records into. */
  readonly metrics: HandlerMetrics;
}

/** Options of {@linkcode createTelemetry}. */
export interface TelemetryOptions {
  /**
   * The service name, used as the tracer's and meter's scope name. The
   * exported resource's `service.name` comes from `OTEL_SERVICE_NAME`, which
   * Deno reads itself.
   */
  serviceName: string;
  /**
   * The service version, used as the scope version.
   *
   * @default undefined
   */
  version?: string;
  /**
   * Where the tracer comes from.
   *
   * @default the global provider (Deno's when `OTEL_DENO=true`)
   */
  tracerProvider?: TracerProvider;
  /**
   * Where the meter comes from.
   *
   * @default the global provider (Deno's when `OTEL_DENO=true`)
   */
  meterProvider?: MeterProvider;
}

/**
 * Creates the tracer, meter and handler metrics of a service.
 *
 * @param options The service name and version, and the providers to use.
 * @returns The service's telemetry.
 *
 * @example Record a handled message
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTelemetry } from "@homelab/handler-base/telemetry";
 *
 * const telemetry = createTelemetry({ serviceName: "tts-module", version: "0.1.0" });
 * telemetry.metrics.handled.add(1, { "messaging.destination.name": "ai.voice.tts.request.>" });
 * assert.equal(telemetry.enabled, Deno.env.get("OTEL_DENO") === "true");
 * ```
 */
export function createTelemetry(options: TelemetryOptions): Telemetry {
  const {
    serviceName,
    version,
    tracerProvider = trace.getTracerProvider(),
    meterProvider = metrics.getMeterProvider(),
  } = options;
  const tracer = tracerProvider.getTracer(serviceName, version);
  const meter = meterProvider.getMeter(serviceName, version);
  return {
    serviceName,
    // With no provider registered the global provider hands out proxies with
    // nothing behind them; Deno registers its own tracer instead.
    enabled: !(tracer instanceof ProxyTracer),
    tracer,
    meter,
    metrics: {
      handled: meter.createCounter(METRIC_NAMES.handled, {
        description: "Messages whose handling finished, successfully or not",
        unit: "{message}",
      }),
      failed: meter.createCounter(METRIC_NAMES.failed, {
        description: "Messages whose handling failed, by error.type",
        unit: "{message}",
      }),
      inFlight: meter.createUpDownCounter(METRIC_NAMES.inFlight, {
        description: "Messages being handled",
        unit: "{message}",
      }),
      duration: meter.createHistogram(METRIC_NAMES.duration, {
        description: "Duration of handling one message",
        unit: "s",
        advice: { explicitBucketBoundaries: DURATION_BUCKETS_SECONDS },
      }),
    },
  };
}

// Lower-case hex only, as W3C trace context requires; checked by hand because
// it runs for every message and a regular expression measured about 3x slower.
function isLowerHex(value: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = value.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function isValidIds(traceId: string, spanId: string): boolean {
  return traceId.length === 32 && isLowerHex(traceId, 0, 32) && traceId !== INVALID_TRACEID &&
    spanId.length === 16 && isLowerHex(spanId, 0, 16) && spanId !== INVALID_SPANID;
}

/**
 * Parses a W3C `traceparent` header of version `00`. Anything else (another
 * version, upper-case hex, an all-zero id, extra characters) is rejected.
 *
 * @param value The header value, or nothing.
 * @returns The remote span context, or `undefined` when the value is absent or invalid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTraceparent } from "@homelab/handler-base/telemetry";
 *
 * const parent = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
 * assert.equal(parent?.spanId, "b7ad6b7169203331");
 * assert.equal(parseTraceparent("garbage"), undefined);
 * ```
 */
export function parseTraceparent(value: string | null | undefined): SpanContext | undefined {
  if (!value) return undefined;
  // "00-" trace id (32 hex) "-" span id (16 hex) "-" flags (2 hex): 55 characters.
  const header = value.length === 55 ? value : value.trim();
  if (
    header.length !== 55 || !header.startsWith("00-") || header[35] !== "-" ||
    header[52] !== "-" || !isLowerHex(header, 53, 55)
  ) {
    return undefined;
  }
  const traceId = header.slice(3, 35);
  const spanId = header.slice(36, 52);
  if (!isValidIds(traceId, spanId)) return undefined;
  return { traceId, spanId, traceFlags: parseInt(header.slice(53), 16), isRemote: true };
}

/**
 * Formats a span context as a W3C `traceparent` header of version `00`.
 *
 * @param spanContext A span context with lower-case hex ids that are not all zero.
 * @returns The header value.
 * @throws {TypeError} When the span context is not valid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTraceparent } from "@homelab/handler-base/telemetry";
 *
 * const value = formatTraceparent({
 *   traceId: "0af7651916cd43dd8448eb211c80319c",
 *   spanId: "b7ad6b7169203331",
 *   traceFlags: 1,
 * });
 * assert.equal(value, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
 * ```
 */
export function formatTraceparent(spanContext: SpanContext): string {
  const { traceId, spanId, traceFlags } = spanContext;
  if (!isValidIds(traceId, spanId)) {
    throw new TypeError(
      `Cannot format traceparent: the span context is invalid (trace id "${traceId}", span id "${spanId}")`,
    );
  }
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

const TRACE_STATE_MAX_LENGTH = 512;
const TRACE_STATE_MAX_MEMBERS = 32;
const TRACE_STATE_KEY_PATTERN =
  /^(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})$/;
// Printable ASCII except "," and "=", not ending with a space.
const TRACE_STATE_VALUE_PATTERN =
  /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

type TraceStateMember = readonly [key: string, value: string];

/** An immutable W3C `tracestate` list, most recent vendor first. */
class W3cTraceState implements TraceState {
  readonly #members: readonly TraceStateMember[];

  constructor(members: readonly TraceStateMember[]) {
    this.#members = members;
  }

  get(key: string): string | undefined {
    return this.#members.find(([k]) => k === key)?.[1];
  }

  set(key: string, value: string): TraceState {
    const members = [[key, value] as const, ...this.#members.filter(([k]) => k !== key)];
    return new W3cTraceState(members.slice(0, TRACE_STATE_MAX_MEMBERS));
  }

  unset(key: string): TraceState {
    return new W3cTraceState(this.#members.filter(([k]) => k !== key));
  }

  serialize(): string {
    return this.#members.map(([key, value]) => `${key}=${value}`).join(",");
  }
}

/**
 * Parses a `tracestate` header, keeping the valid members with distinct keys,
 * at most 32 of them and at most 512 characters (members are dropped from the
 * end, as the W3C recommends).
 */
function parseTraceState(value: string | null | undefined): TraceState | undefined {
  if (!value) return undefined;
  const members: TraceStateMember[] = [];
  let length = -1; // the first member has no separating comma
  for (const part of value.split(",")) {
    const member = part.trim();
    const equals = member.indexOf("=");
    if (equals <= 0) continue;
    const key = member.slice(0, equals);
    const memberValue = member.slice(equals + 1);
    if (!TRACE_STATE_KEY_PATTERN.test(key) || !TRACE_STATE_VALUE_PATTERN.test(memberValue)) {
      continue;
    }
    if (members.some(([k]) => k === key)) continue;
    if (length + 1 + member.length > TRACE_STATE_MAX_LENGTH) break;
    members.push([key, memberValue]);
    length += 1 + member.length;
    if (members.length === TRACE_STATE_MAX_MEMBERS) break;
  }
  return members.length > 0 ? new W3cTraceState(members) : undefined;
}

/**
 * Headers that trace context can be read from and written to. NATS `MsgHdrs`
 * (`headers()` of `@nats-io/nats-core`) and the web `Headers` both fit.
 */
export interface HeaderCarrier {
  /** The header's value; an absent header gives `""`, `null` or `undefined`. */
  get(key: string): string | null | undefined;
  /** Sets the header, replacing any previous value. */
  set(key: string, value: string): void;
}

/**
 * Where the incoming span context (with its tracestate) is kept, so that
 * {@linkcode injectTraceContext} can pass the tracestate on after Deno's spans,
 * which do not carry it, took over the context.
 */
const INCOMING_SPAN_CONTEXT = createContextKey("handler-base incoming span context");

function incomingTraceState(ctx: Context, traceId: string): TraceState | undefined {
  const incoming = ctx.getValue(INCOMING_SPAN_CONTEXT) as SpanContext | undefined;
  return incoming?.traceId === traceId ? incoming.traceState : undefined;
}

/**
 * Writes `traceparent` (and `tracestate` when there is one) for the span of
 * the given or active context. Writes nothing when there is no valid span
 * context, which is always the case with telemetry off and no incoming trace.
 *
 * @param headers The outgoing headers.
 * @param ctx The context whose span is the parent of the receiver's work.
 * @returns Whether the headers were written.
 *
 * @example Propagate the trace on a publish
 * ```ts
 * import assert from "node:assert/strict";
 * import { headers } from "@nats-io/nats-core";
 * import { extractTraceContext, injectTraceContext } from "@homelab/handler-base/telemetry";
 *
 * const parent = extractTraceContext(
 *   new Headers({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }),
 * );
 * const outgoing = headers();
 * assert.equal(injectTraceContext(outgoing, parent), true);
 * ```
 */
export function injectTraceContext(
  headers: HeaderCarrier,
  ctx: Context = context.active(),
): boolean {
  const spanContext = trace.getSpanContext(ctx);
  if (spanContext === undefined || !isValidIds(spanContext.traceId, spanContext.spanId)) {
    return false;
  }
  headers.set("traceparent", formatTraceparent(spanContext));
  const traceState = spanContext.traceState ?? incomingTraceState(ctx, spanContext.traceId);
  const serialized = traceState?.serialize();
  if (serialized) headers.set("tracestate", serialized);
  return true;
}

/**
 * Reads the parent context from `traceparent` and `tracestate` headers. The
 * lower-case names are tried first, then the canonical `Traceparent` that Go's
 * `http.Header`-based carriers write.
 *
 * @param headers The incoming headers, if the message has any.
 * @returns A context holding the remote parent, or `ROOT_CONTEXT` when the
 * headers are absent or invalid (the consumer span then starts a new trace).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trace } from "@opentelemetry/api";
 * import { extractTraceContext } from "@homelab/handler-base/telemetry";
 *
 * const parent = extractTraceContext(
 *   new Headers({ traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }),
 * );
 * assert.equal(trace.getSpanContext(parent)?.traceId, "0af7651916cd43dd8448eb211c80319c");
 * ```
 */
export function extractTraceContext(headers: HeaderCarrier | undefined): Context {
  if (headers === undefined) return ROOT_CONTEXT;
  const parent = parseTraceparent(headers.get("traceparent") || headers.get("Traceparent"));
  if (parent === undefined) return ROOT_CONTEXT;
  const traceState = parseTraceState(headers.get("tracestate") || headers.get("Tracestate"));
  if (traceState === undefined) return trace.setSpanContext(ROOT_CONTEXT, parent);
  parent.traceState = traceState;
  return trace.setSpanContext(ROOT_CONTEXT, parent).setValue(INCOMING_SPAN_CONTEXT, parent);
}

/** Attributes common to consumer and producer spans. */
export interface MessagingSpanOptions {
  /** The subject of the message (`messaging.destination.name`). */
  subject: string;
  /**
   * A low-cardinality form of the subject, used in the span name and as
   * `messaging.destination.template` (the subscription's subject, wildcards
   * included, or a pattern such as `ai.chat.response.{request_id}`).
   *
   * @default the subject
   */
  template?: string;
  /**
   * The size of the message body in bytes (`messaging.message.body.size`).
   *
   * @default undefined (not recorded)
   */
  messageBytes?: number;
  /**
   * The messaging system (`messaging.system`).
   *
   * @default "nats"
   */
  system?: string;
  /**
   * Further attributes of the span.
   *
   * @default undefined
   */
  attributes?: Attributes;
}

/** Options of {@linkcode startConsumerSpan}. */
export interface ConsumerSpanOptions extends MessagingSpanOptions {
  /**
   * The parent, from {@linkcode extractTraceContext}.
   *
   * @default ROOT_CONTEXT (a new trace)
   */
  parent?: Context;
  /**
   * The operation (`messaging.operation.name` and `.type`): `process` for
   * pushed messages, `receive` for pulled ones.
   *
   * @default "process"
   */
  operation?: "process" | "receive";
  /**
   * The queue group or durable consumer name (`messaging.consumer.group.name`).
   *
   * @default undefined (not recorded)
   */
  consumerGroup?: string;
}

/** Options of {@linkcode startProducerSpan}. */
export interface ProducerSpanOptions extends MessagingSpanOptions {
  /**
   * The parent context.
   *
   * @default the active context
   */
  parent?: Context;
}

/** Options of {@linkcode startClientSpan}. */
export interface ClientSpanOptions {
  /**
   * The parent context.
   *
   * @default the active context
   */
  parent?: Context;
  /**
   * Attributes of the span (`server.address`, ...).
   *
   * @default undefined
   */
  attributes?: Attributes;
}

// Shared, never mutated: starting a span with them allocates no options.
const CONSUMER_SPAN: SpanOptions = Object.freeze({ kind: SpanKind.CONSUMER });
const PRODUCER_SPAN: SpanOptions = Object.freeze({ kind: SpanKind.PRODUCER });
const CLIENT_SPAN: SpanOptions = Object.freeze({ kind: SpanKind.CLIENT });

function messagingAttributes(
  options: MessagingSpanOptions,
  operationName: string,
  operationType: string,
): Attributes {
  const attributes: Attributes = {
    "messaging.system": options.system ?? "nats",
    "messaging.operation.name": operationName,
    "messaging.operation.type": operationType,
    "messaging.destination.name": options.subject,
  };
  if (options.template !== undefined) {
    attributes["messaging.destination.template"] = options.template;
  }
  if (options.messageBytes !== undefined) {
    attributes["messaging.message.body.size"] = options.messageBytes;
  }
  return attributes;
}

/**
 * Starts the CONSUMER span of one incoming message, named
 * `process <template>` as the messaging semantic conventions ask. The
 * attributes are only built when the span records.
 *
 * @param tracer The service's tracer.
 * @param options The subject, the parent and the message's attributes.
 * @returns The started span; end it when handling finishes.
 *
 * @example
 * ```ts
 * import { createTelemetry, extractTraceContext, startConsumerSpan } from "@homelab/handler-base/telemetry";
 *
 * const { tracer } = createTelemetry({ serviceName: "tts-module" });
 * const span = startConsumerSpan(tracer, {
 *   subject: "ai.voice.tts.request.s1",
 *   template: "ai.voice.tts.request.>",
 *   parent: extractTraceContext(undefined),
 *   messageBytes: 120,
 *   consumerGroup: "tts-module",
 * });
 * span.end();
 * ```
 */
export function startConsumerSpan(tracer: Tracer, options: ConsumerSpanOptions): Span {
  const operation = options.operation ?? "process";
  const span = tracer.startSpan(
    `${operation} ${options.template ?? options.subject}`,
    CONSUMER_SPAN,
    options.parent ?? ROOT_CONTEXT,
  );
  if (!span.isRecording()) return span;
  const attributes = messagingAttributes(options, operation, operation);
  if (options.consumerGroup !== undefined) {
    attributes["messaging.consumer.group.name"] = options.consumerGroup;
  }
  span.setAttributes(attributes);
  if (options.attributes !== undefined) span.setAttributes(options.attributes);
  return span;
}

/**
 * Starts the PRODUCER span of one publish, named `publish <template>`. Inject
 * its context into the message's headers so the consumer continues the trace.
 *
 * @param tracer The service's tracer.
 * @param options The subject and the message's attributes.
 * @returns The started span; end it once the message is published.
 *
 * @example
 * ```ts
 * import { headers } from "@nats-io/nats-core";
 * import {
 *   createTelemetry,
 *   injectTraceContext,
 *   startProducerSpan,
 *   withSpan,
 * } from "@homelab/handler-base/telemetry";
 *
 * const { tracer } = createTelemetry({ serviceName: "chat-handler" });
 * const span = startProducerSpan(tracer, {
 *   subject: "ai.chat.response.r1",
 *   template: "ai.chat.response.{request_id}",
 * });
 * const outgoing = headers();
 * withSpan(span, () => injectTraceContext(outgoing)); // the consumer's parent is this span
 * span.end();
 * ```
 */
export function startProducerSpan(tracer: Tracer, options: ProducerSpanOptions): Span {
  const span = tracer.startSpan(
    `publish ${options.template ?? options.subject}`,
    PRODUCER_SPAN,
    options.parent ?? context.active(),
  );
  if (!span.isRecording()) return span;
  span.setAttributes(messagingAttributes(options, "publish", "send"));
  if (options.attributes !== undefined) span.setAttributes(options.attributes);
  return span;
}

/**
 * Starts a CLIENT span for an outgoing request (a backend call, a NATS
 * request). Deno's own `fetch` spans become its children when it is active.
 *
 * @param tracer The service's tracer.
 * @param name The span name, low-cardinality ("llm chat", "milvus search").
 * @param options The parent and the attributes.
 * @returns The started span; end it when the response is complete.
 *
 * @example
 * ```ts
 * import { createTelemetry, startClientSpan, withSpan } from "@homelab/handler-base/telemetry";
 *
 * const { tracer } = createTelemetry({ serviceName: "chat-handler" });
 * const span = startClientSpan(tracer, "embeddings embed", {
 *   attributes: { "server.address": "embeddings-predictor.ai-ml.svc.cluster.local" },
 * });
 * await withSpan(span, async () => {
 *   // await fetch(...): Deno's fetch span becomes a child of this one
 * });
 * span.end();
 * ```
 */
export function startClientSpan(tracer: Tracer, name: string, options?: ClientSpanOptions): Span {
  const span = tracer.startSpan(name, CLIENT_SPAN, options?.parent ?? context.active());
  if (options?.attributes !== undefined && span.isRecording()) {
    span.setAttributes(options.attributes);
  }
  return span;
}

function describeThrown(error: unknown): { name: string; message: string } {
  if (error instanceof Error) return { name: error.name, message: error.message };
  if (typeof error === "string") return { name: "string", message: error };
  return { name: typeof error, message: "" };
}

/**
 * Marks a span as failed: status ERROR, an `error.type` attribute with the
 * error's `ErrorResponse.type` ({@linkcode errorType}), and an `exception`
 * event with the error's name and message only (never its stack).
 *
 * @param span The span of the failed work.
 * @param error Anything that was thrown.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@homelab/handler-base/errors";
 * import { createTelemetry, recordError } from "@homelab/handler-base/telemetry";
 *
 * const { tracer } = createTelemetry({ serviceName: "stt-module" });
 * const span = tracer.startSpan("whisper transcribe");
 * recordError(span, new TimeoutError("Backend \"stt\" did not answer within 30000 ms"));
 * span.end();
 * ```
 */
export function recordError(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const { name, message } = describeThrown(error);
  span.setAttribute("error.type", errorType(error));
  span.addEvent("exception", { "exception.type": name, "exception.message": message });
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/** Options of {@linkcode withSpan}. */
export interface WithSpanOptions {
  /**
   * The context the span is added to. Pass the consumer span's parent (from
   * {@linkcode extractTraceContext}) so that the incoming `tracestate` is
   * passed on by {@linkcode injectTraceContext}.
   *
   * @default the active context
   */
  context?: Context;
}

/**
 * Runs a function with the span active, so that spans started inside it are
 * its children and {@linkcode injectTraceContext} writes its context. A span
 * without a valid context (telemetry off, no incoming trace) is skipped.
 *
 * @typeParam T The function's result.
 * @param span The span to make active.
 * @param fn The work to run; an async function keeps the span active across awaits.
 * @param options The context the span is added to.
 * @returns What `fn` returns.
 * @throws What `fn` throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTelemetry, startClientSpan, withSpan } from "@homelab/handler-base/telemetry";
 *
 * const { tracer } = createTelemetry({ serviceName: "chat-handler" });
 * const span = tracer.startSpan("answer");
 * const answer = await withSpan(span, async () => {
 *   const call = startClientSpan(tracer, "llm chat"); // a child of "answer"
 *   call.end();
 *   return "42";
 * });
 * span.end();
 * assert.equal(answer, "42");
 * ```
 */
export function withSpan<T>(span: Span, fn: () => T, options?: WithSpanOptions): T {
  if (!span.isRecording() && span.spanContext().traceId === INVALID_TRACEID) return fn();
  return context.with(trace.setSpan(options?.context ?? context.active(), span), fn);
}
