import assert from "node:assert/strict";
import { InvalidArgumentError } from "../errors.ts";
import { defineEndpoint } from "../handler.ts";
import {
  EmptySchema,
  encode,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
} from "../messages.ts";
import { callEndpoint } from "./call_endpoint.ts";

const relay = defineEndpoint({
  subject: "test.relay.>",
  request: TTSRequestSchema,
  response: TTSStatusSchema,
  async handle(req, ctx) {
    ctx.publish(`test.out.${ctx.tokens.at(-1)}`, TTSStatusSchema, { status: "first" });
    const asked = await ctx.request("test.ask", TTSRequestSchema, req, TTSStatusSchema, {
      timeout: 1000,
    });
    ctx.publish(`test.out.${ctx.tokens.at(-1)}`, TTSStatusSchema, { status: "second" });
    return { status: asked.status, sessionId: ctx.subject };
  },
});

Deno.test("callEndpoint() records publishes and requests in order, and decodes the reply", async () => {
  const result = await callEndpoint(relay, { text: "hi" }, {
    subject: "test.relay.s9",
    respond: (subject, data, typeName) => {
      assert.equal(subject, "test.ask");
      assert.equal(typeName, "messages.v1.TTSRequest");
      assert.ok(data.length > 0);
      return encode(TTSStatusSchema, { status: "answered" });
    },
  });
  assert.equal(result.error, undefined);
  assert.equal(result.reply?.status, "answered");
  assert.equal(result.reply?.sessionId, "test.relay.s9");
  assert.deepEqual(result.messages(TTSStatusSchema).map((m) => [m.subject, m.status]), [
    ["test.out.s9", "first"],
    ["test.out.s9", "second"],
  ]);
  assert.equal(result.requests.length, 1);
  assert.equal(result.published[0]?.headers.get("Msg-Type"), "messages.v1.TTSStatus");
});

Deno.test("callEndpoint() turns a thrown error into the ErrorResponse of the wire", async () => {
  const result = await callEndpoint(relay, { text: "hi" });
  assert.equal(result.reply, undefined);
  assert.equal(result.errorResponse?.type, "BackendUnavailable");
  const strict = defineEndpoint({
    subject: "test.strict",
    request: TTSRequestSchema,
    response: TTSStatusSchema,
    handle: () => Promise.reject(new InvalidArgumentError("Cannot speak: no text")),
  });
  const failed = await callEndpoint(strict, {});
  assert.deepEqual(
    [failed.errorResponse?.error, failed.errorResponse?.type, failed.errorResponse?.message],
    [true, "InvalidArgument", "Cannot speak: no text"],
  );
});

Deno.test("callEndpoint() checks a Msg-Type header as the wire does", async () => {
  const result = await callEndpoint(relay, { text: "hi" }, {
    headers: { "Msg-Type": "messages.v1.ChatRequest" },
  });
  assert.equal(result.errorResponse?.type, "InvalidMessage");
});

Deno.test("callEndpoint() ends a handler that ignores its signal at the deadline", async () => {
  let aborted = false;
  const stuck = defineEndpoint({
    subject: "test.stuck",
    request: TTSRequestSchema,
    handle: (_req, ctx) => {
      ctx.signal.addEventListener("abort", () => aborted = true);
      return new Promise(() => {});
    },
  });
  const result = await callEndpoint(stuck, {}, { timeoutMs: 20 });
  assert.equal(result.errorResponse?.type, "Timeout");
  assert.ok(aborted);
});

Deno.test("an endpoint with EmptySchema ignores the payload and Msg-Type it gets", async () => {
  const list = defineEndpoint({
    subject: "test.list",
    request: EmptySchema,
    response: TTSVoiceListResponseSchema,
    handle: () => Promise.resolve({ defaultSpeaker: "ana" }),
  });
  const result = await callEndpoint(list, {}, {
    headers: { "Msg-Type": "messages.v1.TTSRequest" },
  });
  assert.equal(result.reply?.defaultSpeaker, "ana");
  const raw = await list.invoke(new Uint8Array([0xff, 0xff, 0xff]), undefined, {} as never);
  assert.ok(raw && raw.length > 0);
});
