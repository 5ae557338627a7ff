import assert from "node:assert/strict";
import {
  BackendError,
  InvalidArgumentError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { startFakeMilvus } from "../testing/fake_milvus.ts";
import { createMilvusClient, type MilvusClientOptions } from "./milvus.ts";

function milvus(url: string, options: Partial<MilvusClientOptions> = {}) {
  return createMilvusClient({ baseUrl: url, sleep: () => Promise.resolve(), ...options });
}

Deno.test("MilvusClient.search() sends the v2 search and maps hits, best first", async () => {
  await using fake = startFakeMilvus({
    token: "root:Milvus",
    hits: [
      { id: 2, text: "second", source: "wiki", distance: 0.5 },
      { id: 1, text: "first", source: "faq", distance: 0.9 },
    ],
  });
  const client = milvus(fake.url, {
    token: "root:Milvus",
    dbName: "homelab",
    outputFields: ["text", "source"],
    searchParams: { ef: 64 },
  });
  const hits = await client.search([0.1, 0.2], { limit: 2, filter: 'source != "x"' });
  assert.deepEqual(hits, [
    { text: "first", score: 0.9, distance: 0.9, fields: { id: 1, text: "first", source: "faq" } },
    {
      text: "second",
      score: 0.5,
      distance: 0.5,
      fields: { id: 2, text: "second", source: "wiki" },
    },
  ]);
  assert.ok(client.higherIsBetter);
  const request = fake.requests[0]!;
  assert.equal(request.path, "/v2/vectordb/entities/search");
  assert.equal(request.headers.get("authorization"), "Bearer root:Milvus");
  assert.deepEqual(request.json, {
    collectionName: "knowledge_base",
    data: [[0.1, 0.2]],
    annsField: "vector",
    limit: 2,
    outputFields: ["text", "source"],
    searchParams: { metricType: "COSINE", params: { ef: 64 } },
    dbName: "homelab",
    filter: 'source != "x"',
  });
});

Deno.test("MilvusClient makes the L2 score higher-is-better", async () => {
  await using fake = startFakeMilvus({
    hits: [{ id: 1, text: "far", distance: 3 }, { id: 2, text: "near", distance: 0.25 }],
  });
  const client = milvus(fake.url, { metricType: "L2" });
  assert.equal(client.higherIsBetter, false);
  const hits = await client.search([1], { collection: "docs" });
  assert.deepEqual(hits.map((h) => [h.text, h.distance, h.score]), [["near", 0.25, 0.8], [
    "far",
    3,
    0.25,
  ]]);
  assert.equal((fake.requests[0]?.json as { collectionName: string }).collectionName, "docs");
  assert.equal(fake.requests[0]?.headers.get("authorization"), null);
});

Deno.test("MilvusClient reports a non-zero code as BackendError with Milvus's message", async () => {
  await using fake = startFakeMilvus({ collections: ["knowledge_base"], token: "secret-token" });
  const missing = await milvus(fake.url, { token: "secret-token" })
    .search([1], { collection: "nope" }).catch((e) => e);
  assert.ok(missing instanceof BackendError && !(missing instanceof InvalidResponseError));
  assert.equal(
    missing.message,
    'Backend "milvus" failed: code 100: collection not found[collection=nope]',
  );
  assert.equal(missing.retryable, false);
  const denied = await milvus(fake.url, { token: "wrong-token" }).search([1]).catch((e) => e);
  assert.ok(denied instanceof BackendError);
  assert.match(denied.message, /code 1800: user hasn't authenticated/);
  assert.doesNotMatch(denied.message, /token/);
});

Deno.test("MilvusClient rejects bad answers and arguments", async () => {
  await using fake = startFakeMilvus();
  for (
    const body of [[], { code: 0 }, { data: [] }, { code: 0, data: [{ text: "no distance" }] }]
  ) {
    fake.override(() => Response.json(body));
    await assert.rejects(milvus(fake.url).search([1]), InvalidResponseError, JSON.stringify(body));
  }
  await assert.rejects(milvus(fake.url).search([]), InvalidArgumentError);
  await assert.rejects(milvus(fake.url).search([1], { limit: 0 }), InvalidArgumentError);
});

Deno.test("MilvusClient retries a 503, not a 500, and times out", async () => {
  await using fake = startFakeMilvus();
  fake.failNext(503);
  assert.equal((await milvus(fake.url).search([1], { limit: 1 })).length, 1);
  assert.equal(fake.requests.length, 2);
  fake.failNext(500);
  await assert.rejects(milvus(fake.url).search([1]), BackendError);
  assert.equal(fake.requests.length, 3);
  fake.hangNext();
  await assert.rejects(milvus(fake.url, { timeoutMs: 200 }).search([1]), TimeoutError);
});
