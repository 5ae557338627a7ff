import assert from "node:assert/strict";
import { abortable } from "../../handler_base/async.ts";
import { BackendError } from "../../handler_base/errors.ts";
import { createLlmClient } from "../../handler_base/clients/llm.ts";
import { chatMessages, greetingMessages } from "../../services/chat/prompt.ts";
import { composeAnswer, readPrompt, startLlmStandIn, tokenize } from "./llm.ts";

const CONTEXT = [
  "[1] README.md › Two commands\nRun deno task stack to start nats-server and every service. " +
  "It stops everything on Ctrl-C.",
  "[2] docs/PERFORMANCE.md › Method\nThe benchmark sends requests through a local broker.",
].join("\n\n");
const QUESTION = "How do I start every service?";
const MESSAGES = chatMessages("Be brief.", QUESTION, CONTEXT);

Deno.test("readPrompt() finds chat-handler's numbered context and the question", () => {
  const { question, context } = readPrompt(MESSAGES);
  assert.equal(question, QUESTION);
  assert.deepEqual(context.map((b) => [b.number, b.label]), [
    [1, "README.md › Two commands"],
    [2, "docs/PERFORMANCE.md › Method"],
  ]);
  assert.match(context[0]!.body, /^Run deno task stack/);
});

Deno.test("composeAnswer() quotes the relevant sentences with their sources", () => {
  const answer = composeAnswer(MESSAGES);
  assert.equal(
    answer,
    "Run deno task stack to start nats-server and every service. [1]\n\n" +
      "Sources: [1] README.md › Two commands",
  );
  assert.match(
    composeAnswer(chatMessages("", "What is the colour of the sky?", CONTEXT)),
    /^The retrieved context does not answer "What is the colour of the sky\?"/,
  );
  assert.match(composeAnswer([{ role: "user", content: "Hi" }]), /stand-in language model/);
  assert.equal(
    composeAnswer(greetingMessages("Ada")),
    "Hello Ada, welcome back! It is good to see you again.",
  );
});

Deno.test("tokenize() splits into word pieces that join back into the answer", () => {
  const answer = "Run deno task stack.\n\nSources: [1] README.md";
  const tokens = tokenize(answer);
  assert.equal(tokens.join(""), answer);
  assert.ok(tokens.every((t) => t.trim().length <= 6));
});

Deno.test("LLM stand-in: answers from context through the project's client, whole and streamed", async () => {
  await using llm = startLlmStandIn({ firstTokenDelayMs: 1, tokenIntervalMs: 1 });
  const client = createLlmClient({ baseUrl: llm.url, timeoutMs: 10_000 });
  const whole = await client.generate(MESSAGES);
  assert.equal(whole.text, composeAnswer(MESSAGES));
  assert.equal(whole.finishReason, "stop");
  assert.equal(whole.model, "stand-in-extractive");

  const stream = client.stream(MESSAGES);
  const deltas = await Array.fromAsync(stream);
  assert.equal(deltas.join(""), whole.text);
  assert.deepEqual(deltas, tokenize(whole.text));
  assert.equal(stream.finishReason, "stop");
});

Deno.test("LLM stand-in: max_tokens cuts the answer with finish_reason length", async () => {
  await using llm = startLlmStandIn({ firstTokenDelayMs: 1, tokenIntervalMs: 1 });
  const client = createLlmClient({ baseUrl: llm.url, timeoutMs: 10_000 });
  const stream = client.stream(MESSAGES, { maxTokens: 4 });
  const deltas = await Array.fromAsync(stream);
  assert.deepEqual(deltas, tokenize(composeAnswer(MESSAGES)).slice(0, 4));
  assert.equal(stream.finishReason, "length");
  const whole = await client.generate(MESSAGES, { maxTokens: 4 });
  assert.equal(whole.text, deltas.join(""));
  assert.equal(whole.finishReason, "length");
  await assert.rejects(
    client.generate(MESSAGES, { maxTokens: 0 }),
    (error: unknown) => error instanceof BackendError && /max_tokens/.test(error.message),
  );
});

Deno.test("LLM stand-in: a client that aborts mid-stream stops the generation", async () => {
  // Slow enough that the stream cannot have ended before the client aborts. A plain fetch:
  // this tests the stand-in, whatever a client library does with the signal.
  await using llm = startLlmStandIn({ firstTokenDelayMs: 1, tokenIntervalMs: 100 });
  const caller = new AbortController();
  const response = await fetch(`${llm.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: MESSAGES, stream: true }),
    signal: caller.signal,
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while ((text.match(/"content":"[^"]+"/g) ?? []).length < 3) {
    const { done, value } = await abortable(reader.read(), AbortSignal.timeout(5000));
    assert.equal(done, false);
    text += decoder.decode(value, { stream: true });
  }
  caller.abort(new Error("enough"));
  await assert.rejects(reader.read(), /enough/);

  const generation = llm.generations.at(-1)!;
  const outcome = await abortable(generation.ended, AbortSignal.timeout(5000));
  assert.equal(outcome.finishReason, null);
  assert.ok(outcome.sent >= 3 && outcome.sent < generation.tokens, `sent ${outcome.sent}`);

  // The stand-in keeps serving.
  const client = createLlmClient({ baseUrl: llm.url, timeoutMs: 10_000 });
  assert.equal((await client.generate(MESSAGES, { maxTokens: 2 })).finishReason, "length");
});

Deno.test("LLM stand-in: paces tokens as configured", async () => {
  await using llm = startLlmStandIn({ firstTokenDelayMs: 50, tokenIntervalMs: 40 });
  const client = createLlmClient({ baseUrl: llm.url, timeoutMs: 10_000 });
  const started = performance.now();
  const deltas = await Array.fromAsync(client.stream(MESSAGES, { maxTokens: 4 }));
  // A lower bound only: the stand-in sleeps before each token, so it can never be faster.
  assert.equal(deltas.length, 4);
  assert.ok(performance.now() - started >= 50 + 3 * 40);
});

Deno.test("LLM stand-in: bad requests get vLLM's error shape", async () => {
  await using llm = startLlmStandIn();
  const post = async (body: string) => {
    const response = await fetch(`${llm.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    return { status: response.status, json: await response.json() };
  };
  assert.deepEqual(await post(JSON.stringify({ messages: [] })), {
    status: 400,
    json: {
      object: "error",
      message: "Cannot complete the chat: messages must be a non-empty list",
      type: "BadRequestError",
      code: 400,
    },
  });
  assert.equal((await post("[1, 2]")).status, 400);
  assert.equal((await post(JSON.stringify({ messages: [{ content: "x" }] }))).status, 400);
  const get = await fetch(`${llm.url}/v1/chat/completions`);
  assert.equal(get.status, 405);
  await get.body?.cancel();
});
