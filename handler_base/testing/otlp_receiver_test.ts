import assert from "node:assert/strict";
import { TimeoutError } from "../errors.ts";
import { type OtlpReceiver, startOtlpReceiver } from "./otlp_receiver.ts";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";

function resource(serviceName: string) {
  return { attributes: [{ key: "service.name", value: { stringValue: serviceName } }] };
}

function tracesBody(spanId: string, kind: number | string = 5) {
  return {
    resourceSpans: [{
      resource: resource("svc"),
      scopeSpans: [{
        scope: { name: "scope" },
        spans: [{
          traceId: TRACE_ID,
          spanId,
          parentSpanId: "b7ad6b7169203331",
          name: "process ai.chat.request",
          kind,
          attributes: [
            { key: "s", value: { stringValue: "text" } },
            { key: "i", value: { intValue: "42" } },
            { key: "d", value: { doubleValue: 0.5 } },
            { key: "b", value: { boolValue: true } },
            {
              key: "a",
              value: { arrayValue: { values: [{ intValue: 1 }, { stringValue: "x" }] } },
            },
            {
              key: "kv",
              value: { kvlistValue: { values: [{ key: "k", value: { boolValue: false } }] } },
            },
          ],
          events: [{
            name: "exception",
            attributes: [{ key: "m", value: { stringValue: "boom" } }],
          }],
          status: { code: 2, message: "boom" },
        }],
      }],
    }],
  };
}

async function post(
  receiver: OtlpReceiver,
  path: string,
  body: BodyInit,
  headers: HeadersInit = { "content-type": "application/json" },
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${receiver.endpoint}${path}`, { method: "POST", body, headers });
  return { status: response.status, text: await response.text() };
}

Deno.test("startOtlpReceiver() decodes OTLP/JSON spans, metrics and logs", async () => {
  await using receiver = startOtlpReceiver();
  const waiting = receiver.waitForSpans((span) => span.spanId === "00f067aa0ba902b7");
  assert.equal(
    (await post(receiver, "/v1/traces", JSON.stringify(tracesBody("00f067aa0ba902b7")))).status,
    200,
  );
  const [span] = await waiting;
  assert.deepEqual(span, {
    traceId: TRACE_ID,
    spanId: "00f067aa0ba902b7",
    parentSpanId: "b7ad6b7169203331",
    name: "process ai.chat.request",
    kind: "consumer",
    serviceName: "svc",
    scopeName: "scope",
    attributes: { s: "text", i: 42, d: 0.5, b: true, a: [1, "x"], kv: { k: false } },
    status: { code: "error", message: "boom" },
    events: [{ name: "exception", attributes: { m: "boom" } }],
  });

  const metricsBody = {
    resourceMetrics: [{
      resource: resource("svc"),
      scopeMetrics: [{
        scope: { name: "scope" },
        metrics: [
          {
            name: "handled",
            unit: "{message}",
            sum: { dataPoints: [{ asInt: "3", attributes: [] }], isMonotonic: true },
          },
          {
            name: "duration",
            unit: "s",
            histogram: { dataPoints: [{ count: "2", sum: 0.25, attributes: [] }] },
          },
        ],
      }],
    }],
  };
  await post(receiver, "/v1/metrics", JSON.stringify(metricsBody));
  assert.deepEqual(
    receiver.metrics.map(({ name, type, dataPoints }) => ({ name, type, dataPoints })),
    [
      { name: "handled", type: "sum", dataPoints: [{ attributes: {}, value: 3 }] },
      {
        name: "duration",
        type: "histogram",
        dataPoints: [{ attributes: {}, count: 2, sum: 0.25 }],
      },
    ],
  );

  const logsBody = {
    resourceLogs: [{
      resource: resource("svc"),
      scopeLogs: [{
        logRecords: [{ severityText: "INFO", body: { stringValue: "hello\n" }, traceId: TRACE_ID }],
      }],
    }],
  };
  await post(receiver, "/v1/logs", JSON.stringify(logsBody));
  const [log] = await receiver.waitForLogs((record) => record.body === "hello\n");
  assert.equal(log?.traceId, TRACE_ID);
  assert.equal(log?.serviceName, "svc");
});

Deno.test("startOtlpReceiver() accepts gzip bodies and enum names", async () => {
  await using receiver = startOtlpReceiver();
  const gzipped = new Blob([JSON.stringify(tracesBody("1111111111111111", "SPAN_KIND_PRODUCER"))])
    .stream().pipeThrough(new CompressionStream("gzip"));
  const { status } = await post(receiver, "/v1/traces", await new Response(gzipped).arrayBuffer(), {
    "content-type": "application/json",
    "content-encoding": "gzip",
  });
  assert.equal(status, 200);
  assert.equal(receiver.spans[0]?.kind, "producer");
});

Deno.test("startOtlpReceiver() refuses protobuf, unknown paths and broken JSON", async () => {
  await using receiver = startOtlpReceiver();
  const protobuf = await post(receiver, "/v1/traces", new Uint8Array([10, 0]), {
    "content-type": "application/x-protobuf",
  });
  assert.equal(protobuf.status, 415);
  assert.match(protobuf.text, /OTEL_EXPORTER_OTLP_PROTOCOL=http\/json/);
  assert.equal((await post(receiver, "/v1/profiles", "{}")).status, 404);
  assert.equal((await post(receiver, "/v1/traces", "{not json")).status, 400);
  assert.equal(receiver.spans.length, 0);
});

Deno.test("OtlpReceiver.waitForSpans() rejects on timeout, abort and close", async () => {
  const receiver = startOtlpReceiver();
  await assert.rejects(
    receiver.waitForSpans(() => true, { timeoutMs: 1 }),
    (error) => error instanceof TimeoutError && /0 arrived within 1 ms/.test(error.message),
  );
  const controller = new AbortController();
  const aborted = receiver.waitForSpans(() => true, { signal: controller.signal });
  controller.abort(new Error("stop"));
  await assert.rejects(aborted, /stop/);
  await assert.rejects(receiver.waitForSpans(() => true, { signal: controller.signal }), /stop/);
  const pending = assert.rejects(
    receiver.waitForMetrics(() => true),
    /Cannot collect telemetry: the OTLP receiver is closed/,
  );
  await receiver.close();
  await pending;
  await receiver.close(); // closing twice is fine
});

Deno.test("OtlpReceiver.waitForSpans() waits for the requested count", async () => {
  await using receiver = startOtlpReceiver();
  const two = receiver.waitForSpans((span) => span.traceId === TRACE_ID, { count: 2 });
  await post(receiver, "/v1/traces", JSON.stringify(tracesBody("1111111111111111")));
  assert.equal(receiver.spans.length, 1);
  await post(receiver, "/v1/traces", JSON.stringify(tracesBody("2222222222222222")));
  assert.deepEqual((await two).map((span) => span.spanId), [
    "1111111111111111",
    "2222222222222222",
  ]);
  assert.deepEqual(receiver.exporterEnv("svc"), {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "svc",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    OTEL_METRIC_EXPORT_INTERVAL: "1000",
  });
});
