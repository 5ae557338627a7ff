/**
 * Characters counted and cut as characters (issue #11.3): the query limit
 * counts code points, and the greeting name is cut at whole grapheme
 * clusters, so an astral character is never half kept.
 */
import assert from "node:assert/strict";
import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
import { createLlmClient } from "@homelab/handler-base/clients/llm";
import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
import type { TypedEndpoint } from "@homelab/handler-base/handler";
import {
  ChatRequestSchema,
  ChatResponseSchema,
  decode,
  encode,
  GreetingRequestSchema,
  GreetingResponseSchema,
} from "@homelab/handler-base/messages";
import { callEndpoint, closedPortUrl, startFakeLlm } from "@homelab/handler-base/testing";
import { countCodePoints } from "@homelab/handler-base/text";
import { createChatEndpoints } from "./handler.ts";

const SMILEY = "\u{1F600}";
const WAVE_MEDIUM = "\u{1F44B}\u{1F3FD}"; // 2 code points, 1 grapheme cluster
const E_ACUTE = "e\u0301"; // 2 code points, 1 grapheme cluster

type ChatEndpoint = TypedEndpoint<typeof ChatRequestSchema, typeof ChatResponseSchema>;
type GreetingEndpoint = TypedEndpoint<typeof GreetingRequestSchema, typeof GreetingResponseSchema>;

function endpoints(llmUrl: string, maxQueryChars = 8000) {
  const http = { retries: 0, timeoutMs: 10_000 };
  const down = closedPortUrl();
  const [, chat, greeting] = createChatEndpoints({
    llm: createLlmClient({ ...http, baseUrl: llmUrl, model: "small" }),
    rag: {
      embeddings: createEmbeddingsClient({ ...http, baseUrl: down }),
      milvus: createMilvusClient({ ...http, baseUrl: down }),
      reranker: createRerankerClient({ ...http, baseUrl: down }),
    },
  }, { streamMinIntervalMs: 0, maxQueryChars });
  return { chat: chat as ChatEndpoint, greeting: greeting as GreetingEndpoint };
}

/** A string as it comes back from the wire (lone surrogates become U+FFFD). */
function throughWire(text: string): string {
  return decode(GreetingResponseSchema, encode(GreetingResponseSchema, { greeting: text }))
    .greeting;
}

Deno.test("chat: CHAT_MAX_QUERY_CHARS counts code points, so 8,000 emoji are 8,000 characters", async () => {
  await using llm = startFakeLlm({ reply: "ok" });
  const { chat } = endpoints(llm.url);
  const accepted = await callEndpoint(chat, { requestId: "r1", message: SMILEY.repeat(8000) });
  assert.equal(accepted.errorResponse, undefined, accepted.errorResponse?.message ?? "");
  assert.equal(accepted.reply?.success, true);
  assert.equal(llm.requests.length, 1);

  const refused = await callEndpoint(chat, { requestId: "r2", message: SMILEY.repeat(8001) });
  assert.equal(refused.errorResponse?.type, "InvalidArgument");
  assert.equal(
    refused.errorResponse?.message,
    "Cannot chat: the message has 8001 characters, more than 8000",
  );
  assert.equal(llm.requests.length, 1);
});

Deno.test("chat: a combining sequence counts its code points toward the limit", async () => {
  await using llm = startFakeLlm({ reply: "ok" });
  const { chat } = endpoints(llm.url, 10);
  // Five accented letters are five clusters but ten code points: within 10.
  const within = await callEndpoint(chat, { requestId: "r1", message: E_ACUTE.repeat(5) });
  assert.equal(within.reply?.success, true, within.errorResponse?.message ?? "");
  // One more combining mark is past it: a limit in clusters would let a flood of marks through.
  const past = await callEndpoint(chat, { requestId: "r2", message: E_ACUTE.repeat(5) + "\u0301" });
  assert.match(past.errorResponse?.message ?? "", /11 characters, more than 10/);
});

Deno.test("greeting: with the LLM down, the name is cut at a whole character, never into U+FFFD", async () => {
  const { greeting } = endpoints(closedPortUrl());
  const cases: [string, string][] = [
    // 255 letters and an emoji are 256 characters (257 UTF-16 units): kept whole.
    ["x".repeat(255) + SMILEY + "tail", "x".repeat(255) + SMILEY],
    // An emoji with a skin tone that does not fit is dropped whole.
    ["x".repeat(255) + WAVE_MEDIUM, "x".repeat(255)],
    // 300 emoji are cut to 256 emoji, not 128.
    [SMILEY.repeat(300), SMILEY.repeat(256)],
    // An accented letter across the limit is dropped with its accent.
    ["x".repeat(255) + E_ACUTE, "x".repeat(255)],
  ];
  for (const [nickname, name] of cases) {
    const { reply, errorResponse } = await callEndpoint(greeting, { nickname }, {
      subject: "ai.chat.user.u1.greeting.request",
    });
    assert.equal(errorResponse, undefined);
    const text = reply?.greeting ?? "";
    assert.equal(text, `Hello, ${name}!`);
    assert.equal(throughWire(text), text);
    assert.ok(!text.includes("\uFFFD"));
    assert.ok(countCodePoints(name) <= 256);
  }
});

Deno.test("greeting: a user id of 256 astral characters is one valid token, 257 are too many", async () => {
  const { greeting } = endpoints(closedPortUrl());
  const ok = await callEndpoint(greeting, { userId: SMILEY.repeat(256), username: "ada" });
  assert.equal(ok.errorResponse, undefined, ok.errorResponse?.message ?? "");
  assert.equal(ok.reply?.greeting, "Hello, ada!");
  const tooLong = await callEndpoint(greeting, { userId: SMILEY.repeat(257), username: "ada" });
  assert.equal(tooLong.errorResponse?.type, "InvalidArgument");
  assert.match(tooLong.errorResponse?.message ?? "", /at most 256 characters/);
});
