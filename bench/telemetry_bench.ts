/**
 * The cost of the telemetry wrap around one message with telemetry off (no
 * `OTEL_DENO`): extract the trace context, start a consumer span, count the
 * message in flight, run the handler with the span active, record the
 * metrics and end the span, against calling the same handler bare.
 *
 * Run: `deno bench bench/telemetry_bench.ts` (without `OTEL_DENO`)
 *
 * @module
 */
import { headers as natsHeaders } from "@nats-io/nats-core";
import { errorType } from "../handler_base/errors.ts";
import {
  createTelemetry,
  extractTraceContext,
  type HeaderCarrier,
  recordError,
  startConsumerSpan,
  type Telemetry,
  withSpan,
} from "../handler_base/telemetry.ts";

interface Message {
  subject: string;
  data: Uint8Array;
  headers?: HeaderCarrier;
}

const telemetry = createTelemetry({ serviceName: "bench" });
const data = new TextEncoder().encode("How fast is the telemetry wrap?");
const bare: Message = { subject: "ai.chat.request", data };
const traced: Message = { subject: "ai.chat.request", data, headers: natsHeaders() };
traced.headers?.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
// Built once per endpoint, as a handler layer would.
const attributes = { "messaging.destination.name": "ai.chat.request" };

function handle(msg: Message): Promise<number> {
  return Promise.resolve(msg.data.length);
}

async function handleWithTelemetry(t: Telemetry, msg: Message): Promise<number> {
  const started = performance.now();
  const parent = extractTraceContext(msg.headers);
  const span = startConsumerSpan(t.tracer, {
    subject: msg.subject,
    template: "ai.chat.request",
    parent,
    messageBytes: msg.data.length,
    consumerGroup: "bench",
  });
  t.metrics.inFlight.add(1, attributes);
  try {
    return await withSpan(span, () => handle(msg), { context: parent });
  } catch (error) {
    recordError(span, error);
    t.metrics.failed.add(1, { ...attributes, "error.type": errorType(error) });
    throw error;
  } finally {
    t.metrics.inFlight.add(-1, attributes);
    t.metrics.handled.add(1, attributes);
    t.metrics.duration.record((performance.now() - started) / 1000, attributes);
    span.end();
  }
}

if (telemetry.enabled) {
  console.warn("OTEL_DENO is set: this bench measures the cost with telemetry off");
}

Deno.bench("bare handler call", { group: "message", baseline: true }, async () => {
  await handle(bare);
});

Deno.bench("telemetry off, no trace headers", { group: "message" }, async () => {
  await handleWithTelemetry(telemetry, bare);
});

Deno.bench("telemetry off, incoming traceparent", { group: "message" }, async () => {
  await handleWithTelemetry(telemetry, traced);
});
