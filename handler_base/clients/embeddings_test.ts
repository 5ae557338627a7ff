import assert from "node:assert/strict";
import { BackendError, InvalidResponseError, TimeoutError } from "../errors.ts";
import { startFakeEmbeddings } from "../testing/fake_embeddings.ts";
import { createEmbeddingsClient, type EmbeddingsClientOptions } from "./embeddings.ts";
import { deadline } from "../async.ts";

function embeddings(url: string, options: Partial<EmbeddingsClientOptions> = {}) {
  return createEmbeddingsClient({ baseUrl: url, sleep: () => Promise.resolve(), ...options });
}

function inputs(fake: { requests: { json?: unknown }[] }): string[][] {
  return fake.requests.map((r) => (r.json as { input: string[] }).input);
}

Deno.test("EmbeddingsClient.embed() returns one vector per input, ordered by index", async () => {
  await using fake = startFakeEmbeddings({ dimensions: 4, reverse: true });
  const texts = ["alpha", "beta gamma", "delta"];
  const vectors = await embeddings(fake.url, { model: "bge" }).embed(texts);
  assert.deepEqual(vectors, texts.map((t) => fake.vectorOf(t)));
  assert.notDeepEqual(vectors[0], vectors[1]);
  assert.deepEqual(fake.requests[0]?.json, { input: texts, model: "bge" });
  assert.equal(fake.requests[0]?.path, "/v1/embeddings");
});

Deno.test("EmbeddingsClient.embed() sends large inputs in batches and keeps their order", async () => {
  await using fake = startFakeEmbeddings({ reverse: true });
  const texts = ["a", "b", "c", "d", "e"];
  const vectors = await embeddings(fake.url, { batchSize: 2 }).embed(texts);
  assert.deepEqual(inputs(fake), [["a", "b"], ["c", "d"], ["e"]]);
  assert.deepEqual(vectors, texts.map((t) => fake.vectorOf(t)));
  assert.ok(!("model" in (fake.requests[0]?.json as object)));
});

Deno.test("EmbeddingsClient.embed() of nothing sends nothing", async () => {
  await using fake = startFakeEmbeddings();
  assert.deepEqual(await embeddings(fake.url).embed([]), []);
  assert.equal(fake.requests.length, 0);
});

Deno.test("EmbeddingsClient.embedOne() returns the vector of one text", async () => {
  await using fake = startFakeEmbeddings({ embed: (t) => [t.length, 1] });
  assert.deepEqual(await embeddings(fake.url).embedOne("four"), [4, 1]);
});

Deno.test("EmbeddingsClient checks counts, indices and dimensions", async () => {
  await using fake = startFakeEmbeddings();
  const bad: [string, unknown][] = [
    ["missing data", {}],
    ["too few", { data: [{ index: 0, embedding: [1] }] }],
    ["index out of range", { data: [{ index: 0, embedding: [1] }, { index: 2, embedding: [1] }] }],
    ["index twice", { data: [{ index: 0, embedding: [1] }, { index: 0, embedding: [1] }] }],
    ["not numbers", { data: [{ index: 0, embedding: ["x"] }, { index: 1, embedding: [1] }] }],
    ["lengths differ", { data: [{ index: 0, embedding: [1, 2] }, { index: 1, embedding: [1] }] }],
  ];
  for (const [name, body] of bad) {
    fake.override(() => Response.json(body));
    await assert.rejects(embeddings(fake.url).embed(["a", "b"]), InvalidResponseError, name);
  }
  fake.override(() => Response.json({ data: [{ index: 0, embedding: [1, 2, 3] }] }));
  await assert.rejects(
    embeddings(fake.url, { dimensions: 4 }).embedOne("a"),
    /embedding 0 has 3 dimensions, expected 4/,
  );
  // Batches of one call must agree with each other too.
  let size = 2;
  fake.override((req) => {
    const input = (req.json as { input: string[] }).input;
    return Response.json({
      data: input.map((_, index) => ({ index, embedding: new Array(size++).fill(0) })),
    });
  });
  await assert.rejects(
    embeddings(fake.url, { batchSize: 1 }).embed(["a", "b"]),
    /has 3 dimensions, expected 2/,
  );
});

Deno.test("EmbeddingsClient retries a 503, not a 500 or a 400", async () => {
  await using fake = startFakeEmbeddings();
  fake.failNext(503);
  assert.equal((await embeddings(fake.url).embed(["a"])).length, 1);
  assert.equal(fake.requests.length, 2);
  for (const status of [500, 400]) {
    fake.failNext(status);
    const error = await embeddings(fake.url).embed(["a"]).catch((e) => e);
    assert.ok(error instanceof BackendError && error.status === status);
  }
  assert.equal(fake.requests.length, 4);
});

Deno.test("EmbeddingsClient times out and honours the caller's abort", async () => {
  await using fake = startFakeEmbeddings();
  fake.hangNext(2);
  await assert.rejects(embeddings(fake.url, { timeoutMs: 200 }).embed(["a"]), TimeoutError);
  const controller = new AbortController();
  const call = embeddings(fake.url).embed(["a"], { signal: controller.signal });
  await deadline(fake.nextRequest(), 10_000, { what: "the request" });
  await deadline(fake.nextRequest(), 10_000, { what: "the request" });
  const reason = new Error("cancelled");
  controller.abort(reason);
  assert.equal(await call.catch((e) => e), reason);
});

Deno.test("createEmbeddingsClient() rejects a bad batch size", () => {
  assert.throws(() => createEmbeddingsClient({ baseUrl: "http://x", batchSize: 0 }), RangeError);
});
