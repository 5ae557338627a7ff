import assert from "node:assert/strict";
import { BackendError } from "../../handler_base/errors.ts";
import { createEmbeddingsClient } from "../../handler_base/clients/embeddings.ts";
import { createLlmClient } from "../../handler_base/clients/llm.ts";
import { createMilvusClient } from "../../handler_base/clients/milvus.ts";
import { type RagClients, retrieve } from "../../handler_base/clients/rag.ts";
import { createRerankerClient } from "../../handler_base/clients/reranker.ts";
import { chatMessages, DEFAULT_SYSTEM_PROMPT } from "../../services/chat/prompt.ts";
import { EMBEDDING_DIMENSIONS, embedText, startEmbeddingsStandIn } from "./embeddings.ts";
import { startLlmStandIn } from "./llm.ts";
import { startMilvusStandIn } from "./milvus.ts";
import { startRerankerStandIn } from "./reranker.ts";

const PASSAGES = [
  { id: 1, source: "a.md", title: "Cats", text: "a.md › Cats\nCats sleep most of the day." },
  {
    id: 2,
    source: "b.md",
    title: "Streams",
    text: "b.md › Streams\nJetStream streams store messages on disk.",
  },
  { id: 3, source: "c.md", title: "Dogs", text: "c.md › Dogs\nDogs like long walks." },
];

function clientsFor(urls: { embeddings: string; milvus: string; reranker: string }): RagClients {
  return {
    embeddings: createEmbeddingsClient({ baseUrl: urls.embeddings, timeoutMs: 10_000 }),
    milvus: createMilvusClient({ baseUrl: urls.milvus, timeoutMs: 10_000 }),
    reranker: createRerankerClient({ baseUrl: urls.reranker, timeoutMs: 10_000 }),
  };
}

Deno.test("embedText() gives deterministic unit vectors, closer for texts that share words", () => {
  const a = embedText("JetStream streams store messages");
  assert.equal(a.length, EMBEDDING_DIMENSIONS);
  assert.deepEqual(embedText("JetStream streams store messages"), a);
  assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-9);
  const dot = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * y[i]!, 0);
  assert.ok(
    dot(a, embedText("Where are stream messages stored?")) >
      dot(a, embedText("Dogs like long walks")),
  );
  assert.ok(embedText("the of and").every((v) => v === 0));
});

Deno.test("Milvus stand-in: search through the project's clients finds the closest passage", async () => {
  await using embeddings = startEmbeddingsStandIn();
  await using milvus = await startMilvusStandIn({ passages: PASSAGES });
  await using reranker = startRerankerStandIn();
  const clients = clientsFor({
    embeddings: embeddings.url,
    milvus: milvus.url,
    reranker: reranker.url,
  });
  const { sources, context } = await retrieve("How do streams store messages?", clients, {
    topK: 3,
  });
  assert.equal(sources.length, 3);
  assert.equal(sources[0]!.text, PASSAGES[1]!.text);
  assert.ok(sources[0]!.score > sources[1]!.score);
  assert.match(context, /^\[1\] b\.md › Streams\nJetStream streams store messages on disk\./);

  const reranked = await retrieve("Do dogs like walks?", clients, {
    topK: 3,
    rerank: true,
    keep: 1,
  });
  assert.deepEqual(reranked.sources.map((s) => s.text), [PASSAGES[2]!.text]);

  // Fields and filters as Milvus answers them.
  const milvusClient = createMilvusClient({
    baseUrl: milvus.url,
    outputFields: ["text", "source"],
  });
  const [hit] = await milvusClient.search(embedText("cats"), { filter: 'source == "a.md"' });
  assert.deepEqual(Object.keys(hit!.fields).sort(), ["id", "source", "text"]);
  assert.equal(hit!.fields.source, "a.md");
});

Deno.test("Milvus stand-in: failures are a 200 with Milvus's codes", async () => {
  await using milvus = await startMilvusStandIn({ passages: PASSAGES });
  const client = createMilvusClient({ baseUrl: milvus.url, timeoutMs: 10_000 });
  const vector = embedText("cats");
  await assert.rejects(
    client.search(vector, { collection: "other" }),
    (error: unknown) =>
      error instanceof BackendError && /code 100: collection not found/.test(error.message),
  );
  await assert.rejects(
    client.search([1, 2, 3]),
    (error: unknown) =>
      error instanceof BackendError && /code 1100: .*dim \(3\)/.test(error.message),
  );
  await assert.rejects(client.search(vector, { filter: "source ~ 1" }), /cannot parse expression/);
  const raw = await fetch(`${milvus.url}/v2/vectordb/entities/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ collectionName: "knowledge_base", data: "nope" }),
  });
  assert.deepEqual(await raw.json(), {
    code: 1100,
    message: "invalid parameter: data must be a list of float vectors",
  });
});

Deno.test("Local RAG: a question about the project gets passages of its docs and an answer citing them", async () => {
  await using embeddings = startEmbeddingsStandIn();
  // A fixed corpus laid out as a project: the repository's own docs change with every feature.
  await using milvus = await startMilvusStandIn({
    root: new URL("testdata/project/", import.meta.url),
  });
  await using reranker = startRerankerStandIn();
  await using llm = startLlmStandIn({ firstTokenDelayMs: 1, tokenIntervalMs: 1 });
  assert.ok(milvus.rows.some((row) => row.source === "README.md"));

  const question = "How do I start the local stack?";
  const clients = clientsFor({
    embeddings: embeddings.url,
    milvus: milvus.url,
    reranker: reranker.url,
  });
  const { context, sources } = await retrieve(question, clients, {
    topK: 5,
    rerank: true,
    keep: 3,
  });
  assert.equal(sources.length, 3);
  for (const source of sources) assert.match(source.text, /^(README\.md|docs\/[\w.-]+\.md) › /);
  assert.ok(sources.some((s) => /stack/i.test(s.text)), "a passage about the stack");

  const client = createLlmClient({ baseUrl: llm.url, timeoutMs: 10_000 });
  const answer = await client.generate(chatMessages(DEFAULT_SYSTEM_PROMPT, question, context));
  const [body, cited] = answer.text.split("\n\nSources: ");
  assert.match(body!, /stack/i);
  assert.match(cited!, /^\[\d\] (README\.md|docs\/[\w.-]+\.md) › /);
});
