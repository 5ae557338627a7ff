/**
 * A fake reranker server speaking the Cohere/Infinity shape (`/v1/rerank`)
 * and the TEI shape (`/rerank`), scoring by the share of the query's words
 * found in each document, or by a test's own score.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeReranker } from "@homelab/handler-base/testing";
 *
 * await using reranker = startFakeReranker();
 * const response = await fetch(`${reranker.url}/v1/rerank`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ query: "jetstream", documents: ["nats", "jetstream"], top_n: 1 }),
 * });
 * const { results } = await response.json();
 * assert.deepEqual(results, [{ index: 1, relevance_score: 1 }]);
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import { type FakeServer, notFound, startFakeHttpServer } from "./fake_http.ts";

/** The behaviour of {@linkcode startFakeReranker}. */
export interface FakeRerankerConfig {
  /**
   * Which request shapes are served: `"cohere"` (`/v1/rerank`), `"tei"`
   * (`/rerank`) or both; the other path answers 404.
   *
   * @default "both"
   */
  api?: "cohere" | "tei" | "both";
  /**
   * Scores a document against a query.
   *
   * @default the share of the query's words found in the document
   */
  score?: (query: string, document: string) => number;
}

/** A fake reranker server. */
export interface FakeReranker extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeRerankerConfig;
}

function wordOverlap(query: string, document: string): number {
  const words = query.toLowerCase().split(/\W+/).filter(Boolean);
  if (words.length === 0) return 0;
  const text = ` ${document.toLowerCase().split(/\W+/).join(" ")} `;
  return words.filter((w) => text.includes(` ${w} `)).length / words.length;
}

/**
 * Starts a fake reranker speaking the Cohere/Infinity shape
 * (`POST /v1/rerank {query, documents, top_n}`) and the TEI shape
 * (`POST /rerank {query, texts}`), both sorted by descending score.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example A TEI-only server, to test the automatic fallback
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
 * import { startFakeReranker } from "@homelab/handler-base/testing";
 *
 * await using reranker = startFakeReranker({ api: "tei" });
 * const client = createRerankerClient({ baseUrl: reranker.url });
 * const ranked = await client.rerank("nats streams", ["milvus", "nats streams"]);
 * assert.equal(ranked[0]?.index, 1);
 * assert.deepEqual(reranker.requests.map((r) => r.path), ["/v1/rerank", "/rerank"]);
 * ```
 */
export function startFakeReranker(config: FakeRerankerConfig = {}): FakeReranker {
  const fake: FakeReranker = Object.assign(
    startFakeHttpServer((request) => {
      const api = fake.config.api ?? "both";
      const score = fake.config.score ?? wordOverlap;
      const body = isRecord(request.json) ? request.json : {};
      const query = typeof body.query === "string" ? body.query : undefined;
      if (request.method === "POST" && request.path === "/v1/rerank" && api !== "tei") {
        const documents = body.documents;
        if (query === undefined || !Array.isArray(documents)) {
          return Response.json({ detail: "query and documents are required" }, { status: 422 });
        }
        const topN = typeof body.top_n === "number" ? body.top_n : documents.length;
        const results = documents
          .map((doc, index) => ({ index, relevance_score: score(query, String(doc)) }))
          .sort((a, b) => b.relevance_score - a.relevance_score)
          .slice(0, topN);
        return Response.json({ id: "rerank-fake", results });
      }
      if (request.method === "POST" && request.path === "/rerank" && api !== "cohere") {
        const texts = body.texts;
        if (query === undefined || !Array.isArray(texts)) {
          return Response.json({ error: "query and texts are required" }, { status: 422 });
        }
        const results = texts
          .map((text, index) => ({ index, score: score(query, String(text)) }))
          .sort((a, b) => b.score - a.score);
        return Response.json(results);
      }
      return notFound(request);
    }),
    { config },
  );
  return fake;
}
