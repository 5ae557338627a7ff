import assert from "node:assert/strict";
import { INVALID_SPAN_CONTEXT, trace, type Tracer } from "@opentelemetry/api";
import { envVar } from "../config.ts";
import { InvalidArgumentError, RemoteError } from "../errors.ts";
import { defineEndpoint } from "../handler.ts";
import { defineService } from "../main.ts";
import { TTSRequestSchema, TTSStatusSchema } from "../messages.ts";
import { createTelemetry } from "../telemetry.ts";
import { startTestService } from "./test_service.ts";

const shout = defineEndpoint({
  subject: "test.shout.>",
  request: TTSRequestSchema,
  response: TTSStatusSchema,
  handle(req, ctx) {
    if (!req.text) throw new InvalidArgumentError("Cannot shout: no text");
    ctx.publish(`test.heard.${ctx.tokens.at(-1)}`, TTSStatusSchema, { status: req.text });
    return Promise.resolve({ status: req.text.toUpperCase() });
  },
});

Deno.test("startTestService() serves endpoints over a real server with request and collect", async () => {
  await using t = await startTestService({ endpoints: [shout] });
  using heard = t.collect("test.heard.*", TTSStatusSchema);
  const reply = await t.request("test.shout.a", TTSRequestSchema, { text: "hi" }, TTSStatusSchema);
  assert.equal(reply.status, "HI");
  const [message] = await heard.until((all) => all.length === 1, { timeoutMs: 5000 });
  assert.deepEqual([message?.subject, message?.status], ["test.heard.a", "hi"]);
  await assert.rejects(
    t.request("test.shout.b", TTSRequestSchema, { text: "" }, TTSStatusSchema),
    (error: unknown) => error instanceof RemoteError && error.type === "InvalidArgument",
  );
});

Deno.test("startTestService() sets a definition up from its environment and disposes it", async () => {
  let disposed = false;
  const definition = defineService({
    name: "prefixer",
    config: { prefix: envVar.string("PREFIX", { required: true }) },
    setup: (config) => ({
      endpoints: [defineEndpoint({
        subject: "test.prefix",
        request: TTSRequestSchema,
        response: TTSStatusSchema,
        handle: (req) => Promise.resolve({ status: config.prefix + req.text }),
      })],
      dispose: () => void (disposed = true),
    }),
  });
  const t = await startTestService({ definition, env: { PREFIX: "p-" } });
  try {
    assert.equal(t.service.name, "prefixer");
    const reply = await t.request("test.prefix", TTSRequestSchema, { text: "x" }, TTSStatusSchema);
    assert.equal(reply.status, "p-x");
  } finally {
    await t[Symbol.asyncDispose]();
  }
  assert.ok(disposed);
});

Deno.test("a collector's wait is bounded and says what it saw", async () => {
  await using t = await startTestService({ endpoints: [shout] });
  using heard = t.collect("test.heard.*", TTSStatusSchema);
  await assert.rejects(
    heard.until((all) => all.length > 0, { timeoutMs: 50 }),
    /Condition not met on test.heard.\* within 50 ms after 0 messages/,
  );
});

Deno.test("startTestService() runs the service with the telemetry it is given", async () => {
  const spans: string[] = [];
  const tracer = {
    startSpan(name: string) {
      spans.push(name);
      return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    },
  } as unknown as Tracer;
  const telemetry = createTelemetry({
    serviceName: "t",
    tracerProvider: { getTracer: () => tracer },
  });
  await using t = await startTestService({ endpoints: [shout], telemetry });
  await t.request("test.shout.c", TTSRequestSchema, { text: "hi" }, TTSStatusSchema);
  assert.ok(spans.length > 0, "the handler's span comes from the given tracer");
});
