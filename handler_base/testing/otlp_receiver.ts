/**
 * An in-process OTLP/HTTP receiver for tests: point a Deno subprocess's
 * built-in OpenTelemetry exporter at it and assert on the spans, metrics and
 * log records it exported.
 *
 * It accepts OTLP/JSON only (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`, which
 * Deno supports); a protobuf export is answered 415.
 * {@linkcode OtlpReceiver.exporterEnv} gives the variables a subprocess needs.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Collect the spans of a subprocess
 * ```ts
 * import assert from "node:assert/strict";
 * import { startOtlpReceiver } from "@homelab/handler-base/testing";
 *
 * await using receiver = startOtlpReceiver();
 * const script = 'import { trace } from "@opentelemetry/api"; ' +
 *   'trace.getTracer("demo").startSpan("hello").end();';
 * await new Deno.Command(Deno.execPath(), {
 *   args: ["eval", script],
 *   env: receiver.exporterEnv("demo"),
 * }).output();
 * const [span] = await receiver.waitForSpans((span) => span.name === "hello");
 * assert.equal(span?.serviceName, "demo");
 * ```
 *
 * @module
 */
import { TimeoutError } from "../errors.ts";

/** An attribute or log body value, decoded from OTLP's `AnyValue`. */
export type OtlpValue =
  | string
  | number
  | boolean
  | null
  | OtlpValue[]
  | { [key: string]: OtlpValue };

/** Attributes decoded from OTLP's `KeyValue` list. */
export type OtlpAttributes = Record<string, OtlpValue>;

/** The kinds of span, as OTLP numbers them. */
export const SPAN_KINDS = [
  "unspecified",
  "internal",
  "server",
  "client",
  "producer",
  "consumer",
] as const;

/** A span kind. */
export type SpanKindName = typeof SPAN_KINDS[number];

/** The span status codes, as OTLP numbers them. */
export const STATUS_CODES = ["unset", "ok", "error"] as const;

/** A span status code. */
export type StatusCodeName = typeof STATUS_CODES[number];

/** One exported span. */
export interface CollectedSpan {
  /** The trace id, 32 lower-case hex digits. */
  readonly traceId: string;
  /** The span id, 16 lower-case hex digits. */
  readonly spanId: string;
  /** The parent's span id, or `""` for a root span. */
  readonly parentSpanId: string;
  /** The span name. */
  readonly name: string;
  /** The span kind. */
  readonly kind: SpanKindName;
  /** The resource's `service.name`. */
  readonly serviceName: string;
  /** The instrumentation scope name (the tracer's name). */
  readonly scopeName: string;
  /** The span attributes. */
  readonly attributes: OtlpAttributes;
  /** The span status. */
  readonly status: { readonly code: StatusCodeName; readonly message: string };
  /** The span events, in order. */
  readonly events: readonly { readonly name: string; readonly attributes: OtlpAttributes }[];
}

/** One data point of an exported metric. */
export interface CollectedDataPoint {
  /** The data point's attributes. */
  readonly attributes: OtlpAttributes;
  /** The value of a sum or gauge point. */
  readonly value?: number;
  /** The number of recordings of a histogram point. */
  readonly count?: number;
  /** The sum of the recordings of a histogram point. */
  readonly sum?: number;
}

/** One exported metric (each export of a cumulative metric is collected again). */
export interface CollectedMetric {
  /** The metric name. */
  readonly name: string;
  /** The unit. */
  readonly unit: string;
  /** The resource's `service.name`. */
  readonly serviceName: string;
  /** The instrumentation scope name (the meter's name). */
  readonly scopeName: string;
  /** The OTLP data type: `sum`, `gauge`, `histogram`, ... */
  readonly type: string;
  /** The data points. */
  readonly dataPoints: readonly CollectedDataPoint[];
}

/** One exported log record. */
export interface CollectedLogRecord {
  /** The resource's `service.name`. */
  readonly serviceName: string;
  /** The severity text (`INFO`, `ERROR`, ...). */
  readonly severityText: string;
  /** The body. */
  readonly body: OtlpValue;
  /** The trace id of the span active when it was written, or `""`. */
  readonly traceId: string;
  /** The span id of the span active when it was written, or `""`. */
  readonly spanId: string;
  /** The record's attributes. */
  readonly attributes: OtlpAttributes;
}

/** Options of the `waitFor*` methods of {@linkcode OtlpReceiver}. */
export interface WaitForOptions {
  /**
   * How many matching items to wait for.
   *
   * @default 1
   */
  count?: number;
  /**
   * How long to wait before rejecting with a `TimeoutError`.
   *
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Stops waiting; the promise rejects with the signal's reason.
   *
   * @default undefined
   */
  signal?: AbortSignal;
}

/** A running OTLP/HTTP receiver. */
export interface OtlpReceiver extends AsyncDisposable {
  /** The base URL to use as `OTEL_EXPORTER_OTLP_ENDPOINT`, such as `http://127.0.0.1:4318`. */
  readonly endpoint: string;
  /** The spans received so far, in arrival order. */
  readonly spans: readonly CollectedSpan[];
  /** The metrics received so far, in arrival order. */
  readonly metrics: readonly CollectedMetric[];
  /** The log records received so far, in arrival order. */
  readonly logs: readonly CollectedLogRecord[];
  /**
   * The environment that makes a Deno subprocess export here: `OTEL_DENO`,
   * `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`
   * and `OTEL_SERVICE_NAME`, plus short export delays
   * (`OTEL_BSP_SCHEDULE_DELAY=100`, `OTEL_METRIC_EXPORT_INTERVAL=1000`) so a
   * long-running subprocess exports while it runs. Deno also exports
   * everything pending when the process exits.
   *
   * @param serviceName The `service.name` the subprocess reports.
   * @returns The variables to add to the subprocess's environment.
   */
  exporterEnv(serviceName: string): Record<string, string>;
  /**
   * Waits until enough spans match.
   *
   * @param predicate Which spans count.
   * @param options How many to wait for, how long, and a signal.
   * @returns Every matching span received so far.
   * @throws {TimeoutError} When not enough spans match in time.
   */
  waitForSpans(
    predicate: (span: CollectedSpan) => boolean,
    options?: WaitForOptions,
  ): Promise<CollectedSpan[]>;
  /**
   * Waits until enough metrics match.
   *
   * @param predicate Which metrics count.
   * @param options How many to wait for, how long, and a signal.
   * @returns Every matching metric received so far.
   * @throws {TimeoutError} When not enough metrics match in time.
   */
  waitForMetrics(
    predicate: (metric: CollectedMetric) => boolean,
    options?: WaitForOptions,
  ): Promise<CollectedMetric[]>;
  /**
   * Waits until enough log records match.
   *
   * @param predicate Which records count.
   * @param options How many to wait for, how long, and a signal.
   * @returns Every matching record received so far.
   * @throws {TimeoutError} When not enough records match in time.
   */
  waitForLogs(
    predicate: (record: CollectedLogRecord) => boolean,
    options?: WaitForOptions,
  ): Promise<CollectedLogRecord[]>;
  /** Stops the server; pending waits reject. */
  close(): Promise<void>;
}

/** Options of {@linkcode startOtlpReceiver}. */
export interface OtlpReceiverOptions {
  /**
   * The port to listen on.
   *
   * @default 0 (a free port)
   */
  port?: number;
  /**
   * The address to listen on.
   *
   * @default "127.0.0.1"
   */
  hostname?: string;
}

// The subset of the OTLP/JSON shapes read here; every field may be absent.
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  bytesValue?: string;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonResource {
  attributes?: JsonKeyValue[];
}
interface JsonScope {
  name?: string;
}
interface JsonSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number | string;
  attributes?: JsonKeyValue[];
  events?: { name?: string; attributes?: JsonKeyValue[] }[];
  status?: { code?: number | string; message?: string };
}
interface JsonTraces {
  resourceSpans?: {
    resource?: JsonResource;
    scopeSpans?: { scope?: JsonScope; spans?: JsonSpan[] }[];
  }[];
}
interface JsonDataPoint {
  attributes?: JsonKeyValue[];
  asDouble?: number;
  asInt?: string | number;
  count?: string | number;
  sum?: number;
}
interface JsonMetric {
  name?: string;
  unit?: string;
  [type: string]: unknown;
}
interface JsonMetrics {
  resourceMetrics?: {
    resource?: JsonResource;
    scopeMetrics?: { scope?: JsonScope; metrics?: JsonMetric[] }[];
  }[];
}
interface JsonLogs {
  resourceLogs?: {
    resource?: JsonResource;
    scopeLogs?: {
      logRecords?: {
        severityText?: string;
        body?: JsonAnyValue;
        traceId?: string;
        spanId?: string;
        attributes?: JsonKeyValue[];
      }[];
    }[];
  }[];
}

const METRIC_TYPES = ["sum", "gauge", "histogram", "exponentialHistogram", "summary"];

function decodeValue(value: JsonAnyValue | undefined): OtlpValue {
  if (value === undefined) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.bytesValue !== undefined) return value.bytesValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(decodeValue);
  if (value.kvlistValue !== undefined) return decodeAttributes(value.kvlistValue.values);
  return null;
}

function decodeAttributes(list: JsonKeyValue[] | undefined): OtlpAttributes {
  const attributes: OtlpAttributes = {};
  for (const { key, value } of list ?? []) attributes[key] = decodeValue(value);
  return attributes;
}

function serviceNameOf(resource: JsonResource | undefined): string {
  const name = decodeAttributes(resource?.attributes)["service.name"];
  return typeof name === "string" ? name : "";
}

/** Decodes an OTLP enum sent as a number or as its name (`SPAN_KIND_CONSUMER`). */
function decodeEnum<T extends string>(
  value: number | string | undefined,
  names: readonly T[],
  prefix: string,
): T {
  if (typeof value === "string") {
    const name = value.replace(prefix, "").toLowerCase();
    return names.find((n) => n === name) ?? names[0]!;
  }
  return names[value ?? 0] ?? names[0]!;
}

function decodeSpans(body: JsonTraces): CollectedSpan[] {
  return (body.resourceSpans ?? []).flatMap((resourceSpans) => {
    const serviceName = serviceNameOf(resourceSpans.resource);
    return (resourceSpans.scopeSpans ?? []).flatMap((scopeSpans) =>
      (scopeSpans.spans ?? []).map((span): CollectedSpan => ({
        traceId: span.traceId ?? "",
        spanId: span.spanId ?? "",
        parentSpanId: span.parentSpanId ?? "",
        name: span.name ?? "",
        kind: decodeEnum(span.kind, SPAN_KINDS, "SPAN_KIND_"),
        serviceName,
        scopeName: scopeSpans.scope?.name ?? "",
        attributes: decodeAttributes(span.attributes),
        status: {
          code: decodeEnum(span.status?.code, STATUS_CODES, "STATUS_CODE_"),
          message: span.status?.message ?? "",
        },
        events: (span.events ?? []).map((event) => ({
          name: event.name ?? "",
          attributes: decodeAttributes(event.attributes),
        })),
      }))
    );
  });
}

function decodeDataPoint(point: JsonDataPoint): CollectedDataPoint {
  const value = point.asDouble ?? (point.asInt === undefined ? undefined : Number(point.asInt));
  return {
    attributes: decodeAttributes(point.attributes),
    ...(value === undefined ? {} : { value }),
    ...(point.count === undefined ? {} : { count: Number(point.count) }),
    ...(point.sum === undefined ? {} : { sum: point.sum }),
  };
}

function decodeMetrics(body: JsonMetrics): CollectedMetric[] {
  return (body.resourceMetrics ?? []).flatMap((resourceMetrics) => {
    const serviceName = serviceNameOf(resourceMetrics.resource);
    return (resourceMetrics.scopeMetrics ?? []).flatMap((scopeMetrics) =>
      (scopeMetrics.metrics ?? []).map((metric): CollectedMetric => {
        const type = METRIC_TYPES.find((t) => metric[t] !== undefined) ?? "";
        const data = metric[type] as { dataPoints?: JsonDataPoint[] } | undefined;
        return {
          name: metric.name ?? "",
          unit: metric.unit ?? "",
          serviceName,
          scopeName: scopeMetrics.scope?.name ?? "",
          type,
          dataPoints: (data?.dataPoints ?? []).map(decodeDataPoint),
        };
      })
    );
  });
}

function decodeLogs(body: JsonLogs): CollectedLogRecord[] {
  return (body.resourceLogs ?? []).flatMap((resourceLogs) => {
    const serviceName = serviceNameOf(resourceLogs.resource);
    return (resourceLogs.scopeLogs ?? []).flatMap((scopeLogs) =>
      (scopeLogs.logRecords ?? []).map((record): CollectedLogRecord => ({
        serviceName,
        severityText: record.severityText ?? "",
        body: decodeValue(record.body),
        traceId: record.traceId ?? "",
        spanId: record.spanId ?? "",
        attributes: decodeAttributes(record.attributes),
      }))
    );
  });
}

async function readJson(request: Request): Promise<unknown> {
  let body = request.body ?? new Blob().stream();
  if (request.headers.get("content-encoding") === "gzip") {
    body = body.pipeThrough(new DecompressionStream("gzip"));
  }
  return JSON.parse(await new Response(body).text());
}

/** A pending `waitFor*` call. */
interface Waiter {
  /** Resolves the wait when enough items match. */
  check(): void;
  /** Rejects the wait. */
  cancel(reason: unknown): void;
}

/**
 * Starts an OTLP/HTTP receiver that collects `POST /v1/traces`,
 * `/v1/metrics` and `/v1/logs` sent as OTLP/JSON.
 *
 * @param options The port and address to listen on.
 * @returns The running receiver; close it or use `await using`.
 *
 * @example Give up waiting after a timeout
 * ```ts
 * import assert from "node:assert/strict";
 * import { startOtlpReceiver } from "@homelab/handler-base/testing";
 *
 * await using receiver = startOtlpReceiver();
 * const pending = receiver.waitForMetrics((m) => m.name === "x.count", { timeoutMs: 50 });
 * await assert.rejects(pending, { name: "TimeoutError" });
 * ```
 */
export function startOtlpReceiver(options: OtlpReceiverOptions = {}): OtlpReceiver {
  const { port = 0, hostname = "127.0.0.1" } = options;
  const spans: CollectedSpan[] = [];
  const metrics: CollectedMetric[] = [];
  const logs: CollectedLogRecord[] = [];
  const waiters = new Set<Waiter>();
  const collectors: Record<string, (body: unknown) => void> = {
    "/v1/traces": (body) => {
      spans.push(...decodeSpans(body as JsonTraces));
    },
    "/v1/metrics": (body) => {
      metrics.push(...decodeMetrics(body as JsonMetrics));
    },
    "/v1/logs": (body) => {
      logs.push(...decodeLogs(body as JsonLogs));
    },
  };

  async function handle(request: Request): Promise<Response> {
    const collect = collectors[new URL(request.url).pathname];
    if (collect === undefined || request.method !== "POST") {
      return new Response("Not an OTLP/HTTP path", { status: 404 });
    }
    if (!request.headers.get("content-type")?.startsWith("application/json")) {
      await request.body?.cancel();
      return new Response(
        "Cannot decode OTLP protobuf: set OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
        { status: 415 },
      );
    }
    let body: unknown;
    try {
      body = await readJson(request);
    } catch (error) {
      return new Response(`Cannot parse OTLP/JSON: ${(error as Error).message}`, { status: 400 });
    }
    collect(body);
    for (const waiter of waiters) waiter.check();
    return Response.json({});
  }

  const server = Deno.serve({ port, hostname, onListen() {} }, handle);

  function waitFor<T>(
    collected: readonly T[],
    what: string,
    predicate: (item: T) => boolean,
    waitOptions: WaitForOptions = {},
  ): Promise<T[]> {
    const { count = 1, timeoutMs = 10_000, signal } = waitOptions;
    const matching = () => collected.filter(predicate);
    const found = matching();
    if (found.length >= count) return Promise.resolve(found);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        check() {
          const now = matching();
          if (now.length < count) return;
          finish();
          resolve(now);
        },
        cancel(reason) {
          finish();
          reject(reason);
        },
      };
      const onAbort = () => waiter.cancel(signal?.reason);
      const timer = setTimeout(() => {
        const arrived = matching().length;
        waiter.cancel(
          new TimeoutError(
            `Cannot collect ${count} matching ${what}: ${arrived} arrived within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      function finish() {
        clearTimeout(timer);
        waiters.delete(waiter);
        signal?.removeEventListener("abort", onAbort);
      }
      waiters.add(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  const endpoint = `http://${hostname}:${server.addr.port}`;
  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= (async () => {
      for (const waiter of waiters) {
        waiter.cancel(new Error("Cannot collect telemetry: the OTLP receiver is closed"));
      }
      await server.shutdown();
    })();
    return closing;
  }

  return {
    endpoint,
    spans,
    metrics,
    logs,
    exporterEnv: (serviceName) => ({
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: serviceName,
      // A long-running subprocess exports while it runs, not only at exit.
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_METRIC_EXPORT_INTERVAL: "1000",
    }),
    waitForSpans: (predicate, waitOptions) => waitFor(spans, "spans", predicate, waitOptions),
    waitForMetrics: (predicate, waitOptions) => waitFor(metrics, "metrics", predicate, waitOptions),
    waitForLogs: (predicate, waitOptions) => waitFor(logs, "log records", predicate, waitOptions),
    close,
    [Symbol.asyncDispose]: close,
  };
}
