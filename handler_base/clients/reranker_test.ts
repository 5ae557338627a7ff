import assert from "node:assert/strict";
import { BackendError, InvalidResponseError } from "../errors.ts";
import { startFakeReranker } from "../testing/fake_reranker.ts";
import { createRerankerClient, type RerankerClientOptions } from "./reranker.ts";

const documents = ["Cakes are sweet.", "NATS is a message bus.", "A bus carries NATS messages."];

function reranker(url: string, options: Partial<RerankerClientOptions> = {}) {
  return createRerankerClient({ baseUrl: url, sleep: () => Promise.resolve(), ...options });
}

Deno.test("RerankerClient speaks the Cohere shape and returns the best first", async () => {
  await using fake = startFakeReranker({ api: "cohere" });
  const client = reranker(fake.url, { api: "cohere", model: "bge-reranker" });
  const ranked = await client.rerank("what is the NATS bus", documents, { topN: 2 });
  assert.deepEqual(ranked.map((r) => r.index), [1, 2]);
  assert.ok(ranked[0]!.score >= ranked[1]!.score);
  assert.deepEqual(fake.requests[0]?.json, {
    query: "what is the NATS bus",
    documents,
    top_n: 2,
    model: "bge-reranker",
  });
  assert.equal(fake.requests[0]?.path, "/v1/rerank");
});

Deno.test("RerankerClient speaks the TEI shape and applies topN itself", async () => {
  await using fake = startFakeReranker({ api: "tei" });
  const ranked = await reranker(fake.url, { api: "tei" }).rerank("NATS bus", documents, {
    topN: 1,
  });
  assert.equal(ranked.length, 1);
  assert.equal(ranked[0]?.index, 1);
  assert.deepEqual(fake.requests[0]?.json, { query: "NATS bus", texts: documents });
  assert.equal(fake.requests[0]?.path, "/rerank");
});

Deno.test("RerankerClient in auto mode falls back to TEI on 404 and remembers it", async () => {
  await using fake = startFakeReranker({ api: "tei" });
  const client = reranker(fake.url);
  assert.equal(client.api, "auto");
  const first = await client.rerank("NATS bus", documents);
  assert.equal(first.length, 3);
  assert.equal(client.api, "tei");
  await client.rerank("cakes", documents);
  assert.deepEqual(fake.requests.map((r) => r.path), ["/v1/rerank", "/rerank", "/rerank"]);
});

Deno.test("RerankerClient in auto mode keeps the Cohere shape when it works", async () => {
  await using fake = startFakeReranker({ api: "both" });
  const client = reranker(fake.url);
  await client.rerank("NATS", documents);
  assert.equal(client.api, "cohere");
  assert.deepEqual(fake.requests.map((r) => r.path), ["/v1/rerank"]);
});

Deno.test("RerankerClient does not fall back on other errors", async () => {
  await using fake = startFakeReranker();
  fake.failNext(500);
  const error = await reranker(fake.url).rerank("q", documents).catch((e) => e);
  assert.ok(error instanceof BackendError && error.status === 500);
  assert.equal(fake.requests.length, 1);
  fake.failNext(503);
  assert.equal((await reranker(fake.url).rerank("q", documents)).length, 3);
  assert.equal(fake.requests.length, 3);
});

Deno.test("RerankerClient of no documents sends nothing", async () => {
  await using fake = startFakeReranker();
  assert.deepEqual(await reranker(fake.url).rerank("q", []), []);
  assert.equal(fake.requests.length, 0);
});

Deno.test("RerankerClient checks indices and scores", async () => {
  await using fake = startFakeReranker();
  const bad: unknown[] = [
    { results: [{ index: 3, relevance_score: 1 }] },
    { results: [{ index: 0, relevance_score: "high" }] },
    { results: [{ index: 0, relevance_score: 1 }, { index: 0, relevance_score: 0.5 }] },
    { nothing: true },
  ];
  for (const body of bad) {
    fake.override(() => Response.json(body));
    await assert.rejects(
      reranker(fake.url, { api: "cohere" }).rerank("q", documents),
      InvalidResponseError,
      JSON.stringify(body),
    );
  }
  fake.override(() => Response.json({ results: [] }));
  await assert.rejects(reranker(fake.url, { api: "tei" }).rerank("q", documents), /not a list/);
});
