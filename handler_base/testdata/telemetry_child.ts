/**
 * Run by telemetry_test.ts under `OTEL_DENO=true`: handles one pretend
 * message whose headers carry the `traceparent` and `tracestate` given as
 * arguments, then prints what it injected into an outgoing message as JSON.
 *
 * Usage: `deno run telemetry_child.ts <traceparent> <tracestate>`
 *
 * @module
 */
import { TimeoutError } from "../errors.ts";
import {
  createTelemetry,
  extractTraceContext,
  type HeaderCarrier,
  injectTraceContext,
  recordError,
  startClientSpan,
  startConsumerSpan,
  startProducerSpan,
  withSpan,
} from "../telemetry.ts";

function mapCarrier(entries: [string, string][] = []): HeaderCarrier & Map<string, string> {
  return new Map(entries);
}

const [traceparent = "", tracestate = ""] = Deno.args;
const incoming = mapCarrier([["traceparent", traceparent], ["tracestate", tracestate]]);
const outgoing = mapCarrier();
const telemetry = createTelemetry({ serviceName: "telemetry-child", version: "0.0.1" });
const attributes = { "messaging.destination.name": "ai.chat.request" };

const parent = extractTraceContext(incoming);
const span = startConsumerSpan(telemetry.tracer, {
  subject: "ai.chat.request",
  parent,
  messageBytes: 42,
  consumerGroup: "telemetry-child",
});
telemetry.metrics.inFlight.add(1, attributes);
await withSpan(span, async () => {
  await Promise.resolve(); // the span stays active across an await
  const call = startClientSpan(telemetry.tracer, "llm chat", {
    attributes: { "server.address": "llm" },
  });
  withSpan(call, () => injectTraceContext(outgoing));
  recordError(call, new TimeoutError('Backend "llm" did not answer within 5 ms'));
  call.end();
  const publish = startProducerSpan(telemetry.tracer, {
    subject: "ai.chat.response.r1",
    template: "ai.chat.response.{request_id}",
    messageBytes: 7,
  });
  publish.end();
}, { context: parent });
span.end();
telemetry.metrics.inFlight.add(-1, attributes);
telemetry.metrics.handled.add(1, attributes);
telemetry.metrics.failed.add(1, { ...attributes, "error.type": "Timeout" });
telemetry.metrics.duration.record(0.02, attributes);

console.log(JSON.stringify({
  enabled: telemetry.enabled,
  traceparent: outgoing.get("traceparent"),
  tracestate: outgoing.get("tracestate"),
}));
