import assert from "node:assert/strict";
import { BackendError } from "../../handler_base/errors.ts";
import { createRerankerClient } from "../../handler_base/clients/reranker.ts";
import { overlapScores, startRerankerStandIn } from "./reranker.ts";

const DOCUMENTS = [
  "NATS core delivers messages at most once.",
  "JetStream streams keep messages; durable consumers read them at least once.",
  "Milvus is a vector database.",
  "A durable consumer of JetStream.",
];

Deno.test("overlapScores() ranks every query term above some, rare terms above common ones", () => {
  const scores = overlapScores("durable JetStream consumers", DOCUMENTS);
  assert.equal(scores[2], 0);
  assert.ok(scores[1]! > scores[0]!);
  assert.ok(scores[3]! > 0);
  assert.ok(scores[1]! > 0.9 && scores[3]! > 0.9, "both have every term");
  assert.deepEqual(overlapScores("the of", DOCUMENTS), [0, 0, 0, 0]);
});

Deno.test("Reranker stand-in: the Cohere and TEI shapes order by term overlap through the project's client", async () => {
  await using reranker = startRerankerStandIn();
  const query = "Which database stores vectors?";
  for (const api of ["cohere", "tei", "auto"] as const) {
    const client = createRerankerClient({ baseUrl: reranker.url, api, timeoutMs: 10_000 });
    const ranked = await client.rerank(query, DOCUMENTS, { topN: 2 });
    assert.equal(ranked.length, 2, api);
    assert.equal(ranked[0]!.index, 2, api);
    assert.ok(ranked[0]!.score > ranked[1]!.score, api);
  }
  const client = createRerankerClient({ baseUrl: reranker.url, timeoutMs: 10_000 });
  const order = (await client.rerank("durable JetStream consumers", DOCUMENTS)).map((r) => r.index);
  assert.deepEqual(order.slice(2), [0, 2]);
});

Deno.test("Reranker stand-in: returns documents when asked, and rejects bad bodies", async () => {
  await using reranker = startRerankerStandIn();
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${reranker.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, json: await response.json() };
  };
  const cohere = await post("/v1/rerank", {
    query: "vector database",
    documents: DOCUMENTS,
    top_n: 1,
    return_documents: true,
  });
  assert.deepEqual(cohere.json.results[0].document, { text: DOCUMENTS[2] });
  const tei = await post("/rerank", {
    query: "vector database",
    texts: DOCUMENTS,
    return_text: true,
  });
  assert.equal(tei.json[0].text, DOCUMENTS[2]);
  assert.equal((await post("/v1/rerank", { query: "x" })).status, 422);
  assert.equal((await post("/rerank", { query: "x", texts: [1] })).status, 422);
  assert.equal((await post("/v1/rerank", { query: "x", documents: ["a"], top_n: 0 })).status, 422);
  const client = createRerankerClient({ baseUrl: reranker.url, api: "cohere", timeoutMs: 10_000 });
  await assert.rejects(
    client.rerank("q", ["a"], { topN: -1 }),
    (error: unknown) => error instanceof BackendError && error.status === 422,
  );
});
