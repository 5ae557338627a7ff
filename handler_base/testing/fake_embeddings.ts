/**
 * A fake OpenAI embeddings server: deterministic vectors derived from the
 * words of each text (similar texts get similar vectors), or vectors a test
 * computes.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeEmbeddings } from "@homelab/handler-base/testing";
 *
 * await using embeddings = startFakeEmbeddings({ embed: (text) => [text.length, 0] });
 * const response = await fetch(`${embeddings.url}/v1/embeddings`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ input: ["hi", "hello"] }),
 * });
 * const { data } = await response.json();
 * assert.deepEqual(data.map((d: { embedding: number[] }) => d.embedding), [[2, 0], [5, 0]]);
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import { type FakeServer, notFound, startFakeHttpServer } from "./fake_http.ts";

/** The behaviour of {@linkcode startFakeEmbeddings}. */
export interface FakeEmbeddingsConfig {
  /**
   * The vector length of the default embedding.
   *
   * @default 8
   */
  dimensions?: number;
  /**
   * Computes a text's vector.
   *
   * @default a deterministic unit vector derived from the text's characters
   */
  embed?: (text: string) => number[];
  /**
   * Return the items in reverse order (their `index` fields stay right).
   *
   * @default false
   */
  reverse?: boolean;
}

/** A fake embeddings server. */
export interface FakeEmbeddings extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeEmbeddingsConfig;
  /**
   * The vector the fake returns for a text.
   *
   * @param text The input.
   * @returns Its vector.
   */
  vectorOf(text: string): number[];
}

/**
 * Deterministic unit vector of a text: similar texts get similar vectors.
 *
 * @param text The input.
 * @param dimensions The vector length.
 */
function hashEmbedding(text: string, dimensions: number): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  for (const word of text.toLowerCase().split(/\W+/).filter(Boolean)) {
    let h = 2166136261;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619);
    vector[(h >>> 0) % dimensions]! += 1;
  }
  const norm = Math.hypot(...vector) || 1;
  return vector.map((v) => v / norm);
}

/**
 * Starts a fake OpenAI embeddings server (`POST /v1/embeddings`).
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Check the batches a client sent
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { startFakeEmbeddings } from "@homelab/handler-base/testing";
 *
 * await using embeddings = startFakeEmbeddings({ dimensions: 4 });
 * const client = createEmbeddingsClient({ baseUrl: embeddings.url, batchSize: 2 });
 * const vectors = await client.embed(["a", "b", "c"]);
 * assert.deepEqual(vectors[2], embeddings.vectorOf("c"));
 * assert.deepEqual(embeddings.requests.map((r) => (r.json as { input: string[] }).input.length), [2, 1]);
 * ```
 */
export function startFakeEmbeddings(config: FakeEmbeddingsConfig = {}): FakeEmbeddings {
  const vectorOf = (text: string) =>
    fake.config.embed?.(text) ?? hashEmbedding(text, fake.config.dimensions ?? 8);
  const fake: FakeEmbeddings = Object.assign(
    startFakeHttpServer((request) => {
      if (request.method !== "POST" || request.path !== "/v1/embeddings") return notFound(request);
      const body = request.json;
      const input = isRecord(body) ? body.input : undefined;
      const texts = typeof input === "string" ? [input] : input;
      if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
        return Response.json({ detail: "input must be a string or a list of strings" }, {
          status: 422,
        });
      }
      const data = texts.map((text, index) => ({
        object: "embedding",
        index,
        embedding: vectorOf(text),
      }));
      if (fake.config.reverse) data.reverse();
      return Response.json({
        object: "list",
        model: isRecord(body) && typeof body.model === "string" ? body.model : "fake-embedder",
        data,
      });
    }),
    { config, vectorOf },
  );
  return fake;
}
