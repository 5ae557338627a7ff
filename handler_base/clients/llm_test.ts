import assert from "node:assert/strict";
import {
  BackendError,
  BackendUnavailableError,
  InvalidArgumentError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { startFakeLlm } from "../testing/fake_llm.ts";
import { type ChatMessage, createLlmClient, type LlmClientOptions } from "./llm.ts";
import { deadline } from "../async.ts";

const recorded = await Deno.readFile(new URL("./testdata/chat_stream.sse", import.meta.url));
const RECORDED_TEXT = "Grüße aus Köln 👋! 日本語 ok\n\nÜnïcödé end.";
const messages: ChatMessage[] = [{ role: "user", content: "Hi" }];
const noWait = { sleep: () => Promise.resolve() };

function llm(url: string, options: Partial<LlmClientOptions> = {}) {
  return createLlmClient({ baseUrl: url, ...noWait, ...options });
}

async function collect(stream: AsyncIterable<string>): Promise<string[]> {
  const deltas: string[] = [];
  for await (const delta of stream) deltas.push(delta);
  return deltas;
}

Deno.test("LlmClient.generate() sends the OpenAI request and returns text, finish reason and model", async () => {
  await using fake = startFakeLlm({ reply: "Hello Ada." });
  const answer = await llm(fake.url, { model: "small", maxTokens: 50, temperature: 0.2 })
    .generate([{ role: "system", content: "Be brief." }, ...messages]);
  assert.deepEqual(answer, { text: "Hello Ada.", finishReason: "stop", model: "small" });
  assert.deepEqual(fake.requests[0]?.json, {
    model: "small",
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
    max_tokens: 50,
    temperature: 0.2,
    stream: false,
  });
  assert.equal(fake.requests[0]?.path, "/v1/chat/completions");
});

Deno.test("LlmClient omits model when none is configured and applies its defaults", async () => {
  await using fake = startFakeLlm();
  const answer = await llm(fake.url).generate(messages);
  assert.equal(answer.model, "fake-model");
  assert.deepEqual(fake.requests[0]?.json, {
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 1024,
    temperature: 0.7,
    stream: false,
  });
});

Deno.test("LlmClient uses the premium model for premium calls, else the default", async () => {
  await using fake = startFakeLlm();
  const models = async (client: ReturnType<typeof llm>) => {
    await client.generate(messages, { premium: true });
    await client.generate(messages);
    await client.generate(messages, { premium: true, model: "explicit" });
    return fake.requests.splice(0).map((r) => (r.json as { model?: string }).model);
  };
  assert.deepEqual(await models(llm(fake.url, { model: "base", premiumModel: "big" })), [
    "big",
    "base",
    "explicit",
  ]);
  assert.deepEqual(await models(llm(fake.url, { model: "base" })), ["base", "base", "explicit"]);
});

Deno.test("LlmClient.generate() retries a 503, not a 500 or a 400", async () => {
  await using fake = startFakeLlm({ reply: "ok" });
  fake.failNext(503);
  assert.equal((await llm(fake.url).generate(messages)).text, "ok");
  assert.equal(fake.requests.length, 2);

  fake.failNext(500);
  const serverError = await llm(fake.url).generate(messages).catch((e) => e);
  assert.ok(serverError instanceof BackendError && serverError.status === 500);
  assert.equal(fake.requests.length, 3);

  fake.override(() =>
    Response.json({ object: "error", message: "max_tokens must be at least 1", code: 400 }, {
      status: 400,
    })
  );
  const invalid = await llm(fake.url).generate(messages).catch((e) => e);
  assert.ok(invalid instanceof BackendError);
  assert.equal(invalid.status, 400);
  assert.equal(invalid.excerpt, "max_tokens must be at least 1");
  assert.equal(fake.requests.length, 4);
});

Deno.test("LlmClient.generate() rejects an empty conversation without a request", async () => {
  await using fake = startFakeLlm();
  await assert.rejects(llm(fake.url).generate([]), InvalidArgumentError);
  assert.throws(() => llm(fake.url).stream([]), InvalidArgumentError);
  assert.equal(fake.requests.length, 0);
});

Deno.test("LlmClient.generate() reports malformed answers as InvalidResponseError", async () => {
  await using fake = startFakeLlm();
  for (const body of ["{oops", "{}", '{"choices":[]}', '{"choices":[{"message":{"content":5}}]}']) {
    fake.override(() => new Response(body, { headers: { "content-type": "application/json" } }));
    await assert.rejects(llm(fake.url).generate(messages), InvalidResponseError, body);
  }
  fake.override(() => Response.json({ choices: [{ message: { content: null } }] }));
  assert.deepEqual(await llm(fake.url).generate(messages), {
    text: "",
    finishReason: null,
    model: "",
  });
});

Deno.test("LlmClient.generate() times out and closes the request", async () => {
  await using fake = startFakeLlm();
  fake.hangNext();
  const call = llm(fake.url, { timeoutMs: 200 }).generate(messages);
  const request = await deadline(fake.nextRequest(), 10_000, { what: "the request" });
  await assert.rejects(call, TimeoutError);
  await deadline(request.disconnected, 10_000, { what: "the client to close the request" });
});

Deno.test("LlmClient.stream() yields the deltas, then exposes finish reason and model", async () => {
  await using fake = startFakeLlm({ deltas: ["Hel", "lo", " there"], keepAlive: true });
  const stream = llm(fake.url).stream(messages, { model: "m1" });
  assert.equal(stream.finishReason, undefined);
  assert.deepEqual(await collect(stream), ["Hel", "lo", " there"]);
  assert.equal(stream.finishReason, "stop");
  assert.equal(stream.model, "m1");
  const sent = fake.requests[0]!;
  assert.equal((sent.json as { stream: boolean }).stream, true);
  assert.equal(sent.headers.get("accept"), "text/event-stream");
  assert.throws(() => stream[Symbol.asyncIterator](), TypeError);
});

Deno.test("LlmClient.stream() over real sockets, split into one-byte pieces and CRLF lines", async () => {
  await using fake = startFakeLlm({ reply: "Grüße 👋 aus Köln", chunkSize: 1, lineEnding: "\r\n" });
  const stream = llm(fake.url).stream(messages);
  assert.equal((await collect(stream)).join(""), "Grüße 👋 aus Köln");
  assert.equal(stream.finishReason, "stop");
});

/** A fetch that answers with the recorded stream cut into the given pieces, in-process. */
function recordedFetch(pieces: Uint8Array[]): typeof fetch {
  return () =>
    Promise.resolve(
      new Response(ReadableStream.from(pieces), {
        headers: { "content-type": "text/event-stream" },
      }),
    );
}

Deno.test("LlmClient.stream() gives the same deltas for every split point of a recorded stream", async () => {
  const reference = llm("http://llm.invalid", { fetch: recordedFetch([recorded]) });
  const expected = await collect(reference.stream(messages));
  assert.equal(expected.join(""), RECORDED_TEXT);
  for (let at = 0; at <= recorded.length; at++) {
    const pieces = [recorded.subarray(0, at), recorded.subarray(at)];
    const stream = llm("http://llm.invalid", { fetch: recordedFetch(pieces) }).stream(messages);
    assert.deepEqual(await collect(stream), expected, `split at byte ${at}`);
    assert.equal(stream.finishReason, "stop");
    assert.equal(stream.model, "Qwen/Qwen2.5-7B-Instruct");
  }
});

Deno.test("LlmClient.stream() accepts a stream with a finish reason but no [DONE]", async () => {
  await using fake = startFakeLlm({ deltas: ["a", "b"], done: false, finishReason: "length" });
  const stream = llm(fake.url).stream(messages);
  assert.deepEqual(await collect(stream), ["a", "b"]);
  assert.equal(stream.finishReason, "length");
});

Deno.test("LlmClient.stream() reports [DONE] without a finish reason as null", async () => {
  await using fake = startFakeLlm({ deltas: ["a"], finishReason: null });
  const stream = llm(fake.url).stream(messages);
  assert.deepEqual(await collect(stream), ["a"]);
  assert.equal(stream.finishReason, null);
});

Deno.test("LlmClient.stream() fails with BackendUnavailableError when the connection is cut midway", async () => {
  await using fake = startFakeLlm({ deltas: ["one ", "two ", "three"], cutAfterEvents: 2 });
  const deltas: string[] = [];
  const stream = llm(fake.url).stream(messages);
  const error = await (async () => {
    for await (const delta of stream) deltas.push(delta);
  })().catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError, String(error));
  assert.deepEqual(deltas, ["one "]);
  assert.equal(stream.finishReason, undefined);
  assert.equal(fake.requests.length, 1, "a stream is never retried after its first byte");
});

Deno.test("LlmClient.stream() fails when the stream ends cleanly without finish reason or [DONE]", async () => {
  await using fake = startFakeLlm({ deltas: ["one ", "two"], finishReason: null, done: false });
  const deltas: string[] = [];
  const error = await (async () => {
    for await (const delta of llm(fake.url).stream(messages)) deltas.push(delta);
  })().catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError);
  assert.match(error.message, /the stream ended before the answer was complete/);
  assert.deepEqual(deltas, ["one ", "two"]);
});

Deno.test("LlmClient.stream() retries a 503 before the stream starts, not a 500", async () => {
  await using fake = startFakeLlm({ deltas: ["ok"] });
  fake.failNext(503);
  assert.deepEqual(await collect(llm(fake.url).stream(messages)), ["ok"]);
  assert.equal(fake.requests.length, 2);
  fake.failNext(500);
  await assert.rejects(collect(llm(fake.url).stream(messages)), BackendError);
  assert.equal(fake.requests.length, 3);
});

Deno.test("LlmClient.stream() turns an error event into BackendError", async () => {
  await using fake = startFakeLlm();
  fake.override(() =>
    new Response(
      'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' +
        'data: {"error":{"object":"error","message":"KV cache is full","code":503}}\n\n',
      { headers: { "content-type": "text/event-stream" } },
    )
  );
  const error = await collect(llm(fake.url).stream(messages)).catch((e) => e);
  assert.ok(error instanceof BackendError && !(error instanceof InvalidResponseError));
  assert.equal(error.status, 503);
  assert.equal(error.excerpt, "KV cache is full");
});

Deno.test("LlmClient.stream() reports malformed streams as InvalidResponseError", async () => {
  await using fake = startFakeLlm();
  const bodies: [string, string][] = [
    ["data: {not json}\n\n", "text/event-stream"],
    ['data: {"nothing":1}\n\n', "text/event-stream"],
    ['{"choices":[]}', "application/json"],
    [`data: ${"x".repeat(1_100_000)}\n\n`, "text/event-stream"],
  ];
  for (const [body, type] of bodies) {
    fake.override(() => new Response(body, { headers: { "content-type": type } }));
    await assert.rejects(collect(llm(fake.url).stream(messages)), InvalidResponseError);
  }
});

Deno.test("LlmClient.stream() closes the request when the caller stops early or aborts", async () => {
  const gate = Promise.withResolvers<void>();
  await using fake = startFakeLlm({
    deltas: ["a", "b", "c"],
    pace: (i) => (i < 2 ? Promise.resolve() : gate.promise),
  });
  // Leaving the loop early.
  for await (const _ of llm(fake.url).stream(messages)) break;
  await deadline(fake.requests[0]!.disconnected, 10_000, {
    what: "the client to close the request",
  });

  // The caller's signal, mid-stream: its reason wins.
  const controller = new AbortController();
  const reason = new Error("user left");
  const stream = llm(fake.url).stream(messages, { signal: controller.signal });
  const error = await (async () => {
    for await (const delta of stream) if (delta === "a") controller.abort(reason);
  })().catch((e) => e);
  assert.equal(error, reason);
  await deadline(fake.requests[1]!.disconnected, 10_000, {
    what: "the client to close the request",
  });

  // Disposal of a stream that is waiting for its next delta.
  const idle = llm(fake.url).stream(messages);
  const iterator = idle[Symbol.asyncIterator]();
  assert.equal((await iterator.next()).value, "a");
  await idle[Symbol.asyncDispose]();
  await deadline(fake.requests[2]!.disconnected, 10_000, {
    what: "the client to close the request",
  });
  gate.resolve();
});

Deno.test("LlmClient.stream() times out when the server goes silent mid-stream", async () => {
  await using fake = startFakeLlm({
    deltas: ["a", "b"],
    pace: (i) => (i < 2 ? Promise.resolve() : new Promise(() => {})),
  });
  const deltas: string[] = [];
  const error = await (async () => {
    for await (const d of llm(fake.url, { timeoutMs: 200 }).stream(messages)) deltas.push(d);
  })().catch((e) => e);
  assert.ok(error instanceof TimeoutError);
  assert.deepEqual(deltas, ["a"]);
});
