import assert from "node:assert/strict";
import { headers as natsHeaders } from "@nats-io/nats-core";
import {
  type Attributes,
  type AttributeValue,
  type Context,
  INVALID_SPAN_CONTEXT,
  type MeterProvider,
  metrics,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  type SpanStatus,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { BackendUnavailableError, TimeoutError } from "./errors.ts";
import {
  createTelemetry,
  extractTraceContext,
  formatTraceparent,
  type HeaderCarrier,
  injectTraceContext,
  METRIC_NAMES,
  parseTraceparent,
  recordError,
  startClientSpan,
  startConsumerSpan,
  startProducerSpan,
  withSpan,
} from "./telemetry.ts";
import { startOtlpReceiver } from "./testing/otlp_receiver.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const SPAN_ID = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE_ID}-${SPAN_ID}-01`;

/** A header carrier over a Map that refuses writes when `readOnly`. */
function carrier(
  entries: Record<string, string> = {},
  { readOnly = false } = {},
): HeaderCarrier & { map: Map<string, string> } {
  const map = new Map(Object.entries(entries));
  return {
    map,
    get: (key) => map.get(key) ?? "",
    set(key, value) {
      if (readOnly) throw new Error(`Unexpected header write: ${key}`);
      map.set(key, value);
    },
  };
}

/** A span that records what is done to it; a non-recording one throws on any write. */
class FakeSpan implements Span {
  readonly attributes: Record<string, AttributeValue | undefined> = {};
  readonly events: { name: string; attributes?: Attributes }[] = [];
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  ended = false;

  constructor(
    readonly name: string,
    readonly kind: SpanKind | undefined,
    readonly parent: Context | undefined,
    readonly recording: boolean,
    readonly context: SpanContext = INVALID_SPAN_CONTEXT,
  ) {}

  #write(): void {
    if (!this.recording) throw new Error("Unexpected write to a non-recording span");
  }
  spanContext(): SpanContext {
    return this.context;
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.#write();
    this.attributes[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    this.#write();
    Object.assign(this.attributes, attributes);
    return this;
  }
  addEvent(name: string, attributes?: Attributes): this {
    this.#write();
    this.events.push({ name, ...(attributes ? { attributes } : {}) });
    return this;
  }
  addLink(): this {
    this.#write();
    return this;
  }
  addLinks(): this {
    this.#write();
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.#write();
    this.status = status;
    return this;
  }
  updateName(): this {
    this.#write();
    return this;
  }
  end(): void {
    this.ended = true;
  }
  isRecording(): boolean {
    return this.recording;
  }
  recordException(): void {
    throw new Error("Unexpected recordException: it would record the stack");
  }
}

/** A tracer whose spans are FakeSpans; only `startSpan` is used by telemetry.ts. */
function fakeTracer({ recording = true } = {}): Tracer & { spans: FakeSpan[] } {
  const spans: FakeSpan[] = [];
  const tracer = {
    spans,
    startSpan(name: string, options?: SpanOptions, parent?: Context): Span {
      const span = new FakeSpan(name, options?.kind, parent, recording);
      spans.push(span);
      return span;
    },
  };
  return tracer as unknown as Tracer & { spans: FakeSpan[] };
}

Deno.test("parseTraceparent() and formatTraceparent() round-trip every flags byte", () => {
  for (const flags of ["00", "01", "02", "03", "ff"]) {
    const value = `00-${TRACE_ID}-${SPAN_ID}-${flags}`;
    const parsed = parseTraceparent(value);
    assert.deepEqual(parsed, {
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: parseInt(flags, 16),
      isRemote: true,
    });
    assert.equal(formatTraceparent(parsed), value);
  }
});

Deno.test("parseTraceparent() rejects malformed values without throwing", () => {
  const garbage: (string | null | undefined)[] = [
    undefined,
    null,
    "",
    "garbage",
    "00",
    `01-${TRACE_ID}-${SPAN_ID}-01`, // only version 00 is accepted
    `ff-${TRACE_ID}-${SPAN_ID}-01`,
    `00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${SPAN_ID.toUpperCase()}-01`,
    `00-${TRACE_ID}-${SPAN_ID}-0A`,
    `00-${"0".repeat(32)}-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${"0".repeat(16)}-01`,
    `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`,
    `00-${TRACE_ID}0-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${SPAN_ID.slice(1)}-01`,
    `00-${TRACE_ID}-${SPAN_ID}-1`,
    `00-${TRACE_ID}-${SPAN_ID}-01-extra`,
    `00-${TRACE_ID}-${SPAN_ID}-01x`,
    `00_${TRACE_ID}_${SPAN_ID}_01`,
    `00-${TRACE_ID.slice(0, 31)}g-${SPAN_ID}-01`,
    `x00-${TRACE_ID}-${SPAN_ID}-01`,
    "\u0000".repeat(55),
    "-".repeat(10_000),
  ];
  for (const value of garbage) {
    assert.equal(parseTraceparent(value), undefined, `accepted ${JSON.stringify(value)}`);
  }
});

Deno.test("formatTraceparent() throws a TypeError on an invalid span context", () => {
  assert.throws(() => formatTraceparent(INVALID_SPAN_CONTEXT), TypeError);
  assert.throws(
    () => formatTraceparent({ traceId: TRACE_ID.toUpperCase(), spanId: SPAN_ID, traceFlags: 1 }),
    /Cannot format traceparent: the span context is invalid/,
  );
});

Deno.test("extractTraceContext() and injectTraceContext() pass traceparent and tracestate through", () => {
  const incoming = carrier({
    traceparent: TRACEPARENT,
    tracestate: "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
  });
  const parent = extractTraceContext(incoming);
  const spanContext = trace.getSpanContext(parent);
  assert.equal(spanContext?.traceId, TRACE_ID);
  assert.equal(spanContext?.spanId, SPAN_ID);
  assert.equal(spanContext?.isRemote, true);
  assert.equal(spanContext?.traceState?.get("rojo"), "00f067aa0ba902b7");

  const outgoing = carrier();
  assert.equal(injectTraceContext(outgoing, parent), true);
  assert.deepEqual(Object.fromEntries(outgoing.map), {
    traceparent: TRACEPARENT,
    tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
  });
});

Deno.test("injectTraceContext() passes the incoming tracestate on for a span of the same trace", () => {
  const parent = extractTraceContext(carrier({ traceparent: TRACEPARENT, tracestate: "k=v" }));
  // A span such as Deno's, which does not carry the tracestate of its parent.
  const child = trace.wrapSpanContext({
    traceId: TRACE_ID,
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
  });
  const outgoing = carrier();
  injectTraceContext(outgoing, trace.setSpan(parent, child));
  assert.equal(outgoing.map.get("traceparent"), `00-${TRACE_ID}-00f067aa0ba902b7-01`);
  assert.equal(outgoing.map.get("tracestate"), "k=v");

  const otherTrace = trace.wrapSpanContext({
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
  });
  const unrelated = carrier();
  injectTraceContext(unrelated, trace.setSpan(parent, otherTrace));
  assert.equal(unrelated.map.has("tracestate"), false);
});

Deno.test("extractTraceContext() reads the canonical Traceparent that Go carriers write", () => {
  const parent = extractTraceContext(carrier({ Traceparent: TRACEPARENT, Tracestate: "go=1" }));
  assert.equal(trace.getSpanContext(parent)?.spanId, SPAN_ID);
  assert.equal(trace.getSpanContext(parent)?.traceState?.serialize(), "go=1");
});

Deno.test("extractTraceContext() returns ROOT_CONTEXT for absent or invalid headers", () => {
  assert.equal(extractTraceContext(undefined), ROOT_CONTEXT);
  assert.equal(extractTraceContext(carrier()), ROOT_CONTEXT);
  assert.equal(
    extractTraceContext(carrier({ traceparent: "garbage", tracestate: "k=v" })),
    ROOT_CONTEXT,
  );
  assert.equal(extractTraceContext(new Headers()), ROOT_CONTEXT);
});

Deno.test("extractTraceContext() keeps at most 32 valid tracestate members within 512 characters", () => {
  const many = Array.from({ length: 40 }, (_, i) => `k${i}=v${i}`).join(",");
  const fromMany = trace.getSpanContext(
    extractTraceContext(carrier({ traceparent: TRACEPARENT, tracestate: many })),
  )?.traceState?.serialize();
  assert.equal(fromMany, Array.from({ length: 32 }, (_, i) => `k${i}=v${i}`).join(","));

  const long = Array.from({ length: 10 }, (_, i) => `k${i}=${"x".repeat(100)}`).join(",");
  const fromLong = trace.getSpanContext(
    extractTraceContext(carrier({ traceparent: TRACEPARENT, tracestate: long })),
  )?.traceState?.serialize() ?? "";
  assert.equal(fromLong.split(",").length, 4); // 4 members of 104 characters, 3 commas
  assert.ok(fromLong.length <= 512);

  const mixed = "Bad=1, good=1,,=x, no-value=, good=2, sp ace=1, vendor@tenant=ok ,v=a=b";
  const fromMixed = trace.getSpanContext(
    extractTraceContext(carrier({ traceparent: TRACEPARENT, tracestate: mixed })),
  )?.traceState;
  assert.equal(fromMixed?.serialize(), "good=1,vendor@tenant=ok");

  const onlyInvalid = extractTraceContext(carrier({ traceparent: TRACEPARENT, tracestate: "A=1" }));
  assert.equal(trace.getSpanContext(onlyInvalid)?.traceState, undefined);
});

Deno.test("injectTraceContext() writes nothing without a valid span context", () => {
  const readOnly = carrier({}, { readOnly: true });
  assert.equal(injectTraceContext(readOnly, ROOT_CONTEXT), false);
  assert.equal(injectTraceContext(readOnly), false); // no active span in this process
  const invalid = trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  assert.equal(injectTraceContext(readOnly, invalid), false);
});

Deno.test("injectTraceContext() and extractTraceContext() work with NATS MsgHdrs", () => {
  const parent = extractTraceContext(carrier({ traceparent: TRACEPARENT }));
  const headers = natsHeaders();
  assert.equal(injectTraceContext(headers, parent), true);
  assert.equal(headers.get("traceparent"), TRACEPARENT);
  assert.equal(headers.has("tracestate"), false);
  assert.equal(trace.getSpanContext(extractTraceContext(headers))?.spanId, SPAN_ID);
});

Deno.test("startConsumerSpan() starts a CONSUMER span with messaging attributes", () => {
  const tracer = fakeTracer();
  const parent = extractTraceContext(carrier({ traceparent: TRACEPARENT }));
  startConsumerSpan(tracer, {
    subject: "ai.voice.tts.request.s1",
    template: "ai.voice.tts.request.>",
    parent,
    messageBytes: 120,
    consumerGroup: "tts-module",
    attributes: { "messaging.message.id": "7" },
  });
  const [span] = tracer.spans;
  assert.equal(span?.name, "process ai.voice.tts.request.>");
  assert.equal(span?.kind, SpanKind.CONSUMER);
  assert.equal(span?.parent, parent);
  assert.deepEqual(span?.attributes, {
    "messaging.system": "nats",
    "messaging.operation.name": "process",
    "messaging.operation.type": "process",
    "messaging.destination.name": "ai.voice.tts.request.s1",
    "messaging.destination.template": "ai.voice.tts.request.>",
    "messaging.message.body.size": 120,
    "messaging.consumer.group.name": "tts-module",
    "messaging.message.id": "7",
  });
});

Deno.test("startConsumerSpan() starts a new trace by default and leaves a non-recording span alone", () => {
  const tracer = fakeTracer({ recording: false });
  const span = startConsumerSpan(tracer, {
    subject: "ai.chat.request",
    operation: "receive",
    system: "jetstream",
    attributes: { never: "set" },
  });
  assert.equal(span.isRecording(), false); // FakeSpan throws on any write
  assert.equal(tracer.spans[0]?.name, "receive ai.chat.request");
  assert.equal(tracer.spans[0]?.parent, ROOT_CONTEXT);
});

Deno.test("startProducerSpan() and startClientSpan() set their kind, name and attributes", () => {
  const tracer = fakeTracer();
  const parent = extractTraceContext(carrier({ traceparent: TRACEPARENT }));
  startProducerSpan(tracer, {
    subject: "ai.chat.response.r1",
    template: "ai.chat.response.{request_id}",
    messageBytes: 9,
    parent,
  });
  startClientSpan(tracer, "llm chat", { attributes: { "server.address": "llm" } });
  const [producer, client] = tracer.spans;
  assert.equal(producer?.name, "publish ai.chat.response.{request_id}");
  assert.equal(producer?.kind, SpanKind.PRODUCER);
  assert.equal(producer?.parent, parent);
  assert.deepEqual(producer?.attributes, {
    "messaging.system": "nats",
    "messaging.operation.name": "publish",
    "messaging.operation.type": "send",
    "messaging.destination.name": "ai.chat.response.r1",
    "messaging.destination.template": "ai.chat.response.{request_id}",
    "messaging.message.body.size": 9,
  });
  assert.equal(client?.name, "llm chat");
  assert.equal(client?.kind, SpanKind.CLIENT);
  assert.deepEqual(client?.attributes, { "server.address": "llm" });

  const silent = fakeTracer({ recording: false });
  startProducerSpan(silent, { subject: "a.b", attributes: { never: "set" } });
  startClientSpan(silent, "call", { attributes: { never: "set" } });
  assert.equal(silent.spans.length, 2);
});

Deno.test("recordError() records the error's type and message, never its stack", () => {
  const span = new FakeSpan("work", SpanKind.INTERNAL, undefined, true);
  recordError(span, new TimeoutError('Backend "llm" did not answer within 5 ms'));
  assert.deepEqual(span.status, {
    code: SpanStatusCode.ERROR,
    message: 'Backend "llm" did not answer within 5 ms',
  });
  assert.equal(span.attributes["error.type"], "Timeout");
  assert.deepEqual(span.events, [{
    name: "exception",
    attributes: {
      "exception.type": "TimeoutError",
      "exception.message": 'Backend "llm" did not answer within 5 ms',
    },
  }]);

  const other = new FakeSpan("work", SpanKind.INTERNAL, undefined, true);
  recordError(other, new RangeError("boom"));
  assert.equal(other.attributes["error.type"], "Internal");
  const thrownString = new FakeSpan("work", SpanKind.INTERNAL, undefined, true);
  recordError(thrownString, "plain");
  assert.deepEqual(thrownString.events[0]?.attributes, {
    "exception.type": "string",
    "exception.message": "plain",
  });
  const thrownObject = new FakeSpan("work", SpanKind.INTERNAL, undefined, true);
  recordError(thrownObject, Object.create(null));
  assert.deepEqual(thrownObject.events[0]?.attributes, {
    "exception.type": "object",
    "exception.message": "",
  });

  // A non-recording span throws on any write.
  recordError(new FakeSpan("off", undefined, undefined, false), new BackendUnavailableError("llm"));
});

Deno.test("withSpan() returns what the function returns, with or without a span context", async () => {
  const noContext = new FakeSpan("off", undefined, undefined, false);
  assert.equal(withSpan(noContext, () => 42), 42);
  const remote = trace.wrapSpanContext({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 });
  assert.equal(await withSpan(remote, () => Promise.resolve("async")), "async");
  assert.throws(() => withSpan(remote, () => assert.fail("thrown")), /thrown/);
});

Deno.test("createTelemetry() is enabled only with a registered tracer provider", () => {
  const fakeProvider: TracerProvider = { getTracer: () => fakeTracer() };
  assert.equal(createTelemetry({ serviceName: "x", tracerProvider: fakeProvider }).enabled, true);
  const unregistered = new ProxyTracerProvider();
  assert.equal(createTelemetry({ serviceName: "x", tracerProvider: unregistered }).enabled, false);
});

Deno.test("createTelemetry() creates the handler instruments under the service's scope", () => {
  const created: { kind: string; name: string; unit?: string; buckets?: number[] }[] = [];
  const noop = metrics.getMeterProvider().getMeter("noop");
  const scopes: [string, string | undefined][] = [];
  const meterProvider: MeterProvider = {
    getMeter(name, version) {
      scopes.push([name, version]);
      return {
        ...noop,
        createCounter(name, options) {
          created.push({ kind: "counter", name, unit: options?.unit });
          return noop.createCounter(name);
        },
        createUpDownCounter(name, options) {
          created.push({ kind: "updown", name, unit: options?.unit });
          return noop.createUpDownCounter(name);
        },
        createHistogram(name, options) {
          created.push({
            kind: "histogram",
            name,
            unit: options?.unit,
            buckets: options?.advice?.explicitBucketBoundaries,
          });
          return noop.createHistogram(name);
        },
      };
    },
  };
  createTelemetry({ serviceName: "chat-handler", version: "0.1.0", meterProvider });
  assert.deepEqual(scopes, [["chat-handler", "0.1.0"]]);
  assert.deepEqual(created.map(({ kind, name, unit }) => [kind, name, unit]), [
    ["counter", METRIC_NAMES.handled, "{message}"],
    ["counter", METRIC_NAMES.failed, "{message}"],
    ["updown", METRIC_NAMES.inFlight, "{message}"],
    ["histogram", METRIC_NAMES.duration, "s"],
  ]);
  const buckets = created[3]?.buckets ?? [];
  assert.ok(buckets.length > 0 && buckets.every((b, i) => i === 0 || b > buckets[i - 1]!));
});

Deno.test("telemetry exports one linked trace and the handler metrics from a real Deno process", async () => {
  await using receiver = startOtlpReceiver();
  const child = new URL("./testdata/telemetry_child.ts", import.meta.url);
  // No permission flags: Deno exports by itself.
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-prompt", child.href, TRACEPARENT, "vendor=abc"],
    env: receiver.exporterEnv("telemetry-child-service"),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  const printed = JSON.parse(new TextDecoder().decode(output.stdout));

  const spans = await receiver.waitForSpans((span) => span.traceId === TRACE_ID, { count: 3 });
  assert.equal(spans.length, 3);
  assert.deepEqual(new Set(receiver.spans.map((span) => span.traceId)), new Set([TRACE_ID]));
  const consumer = spans.find((span) => span.kind === "consumer");
  const client = spans.find((span) => span.kind === "client");
  const producer = spans.find((span) => span.kind === "producer");
  assert.ok(consumer && client && producer, JSON.stringify(spans));

  assert.equal(consumer.name, "process ai.chat.request");
  assert.equal(consumer.parentSpanId, SPAN_ID);
  assert.equal(consumer.serviceName, "telemetry-child-service");
  assert.equal(consumer.scopeName, "telemetry-child");
  assert.equal(consumer.attributes["messaging.system"], "nats");
  assert.equal(consumer.attributes["messaging.destination.name"], "ai.chat.request");
  assert.equal(consumer.attributes["messaging.message.body.size"], 42);
  assert.equal(consumer.attributes["messaging.consumer.group.name"], "telemetry-child");

  assert.equal(client.name, "llm chat");
  assert.equal(client.parentSpanId, consumer.spanId);
  assert.equal(client.status.code, "error");
  assert.equal(client.attributes["error.type"], "Timeout");
  assert.deepEqual(client.events, [{
    name: "exception",
    attributes: {
      "exception.type": "TimeoutError",
      "exception.message": 'Backend "llm" did not answer within 5 ms',
    },
  }]);

  assert.equal(producer.name, "publish ai.chat.response.{request_id}");
  assert.equal(producer.parentSpanId, consumer.spanId);

  assert.deepEqual(printed, {
    enabled: true,
    traceparent: `00-${TRACE_ID}-${client.spanId}-01`,
    tracestate: "vendor=abc",
  });

  for (const name of Object.values(METRIC_NAMES)) {
    const [metric] = await receiver.waitForMetrics((m) => m.name === name);
    assert.equal(metric?.serviceName, "telemetry-child-service");
    assert.ok((metric?.dataPoints.length ?? 0) > 0, name);
  }
  const [failed] = await receiver.waitForMetrics((m) => m.name === METRIC_NAMES.failed);
  assert.equal(failed?.dataPoints[0]?.attributes["error.type"], "Timeout");
  assert.equal(failed?.dataPoints[0]?.value, 1);
  const [duration] = await receiver.waitForMetrics((m) => m.name === METRIC_NAMES.duration);
  assert.equal(duration?.unit, "s");
  assert.equal(duration?.dataPoints[0]?.count, 1);
});
