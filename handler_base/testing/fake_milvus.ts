/**
 * A fake Milvus v2 REST server (`POST /v2/vectordb/entities/search`) that,
 * like Milvus, answers failures with HTTP 200 and a non-zero `code`: a
 * missing token (1800), an unknown collection (100), a bad body (1100).
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using milvus = startFakeMilvus({ collections: ["docs"] });
 * const response = await fetch(`${milvus.url}/v2/vectordb/entities/search`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ collectionName: "other", data: [[0.1]] }),
 * });
 * assert.equal(response.status, 200);
 * assert.equal((await response.json()).code, 100);
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import { type FakeServer, notFound, startFakeHttpServer } from "./fake_http.ts";

/** The behaviour of {@linkcode startFakeMilvus}. */
export interface FakeMilvusConfig {
  /**
   * The rows a search returns (the first `limit` of them), each with a
   * `distance`, or a function of the parsed request body.
   *
   * @default three rows `{id, text, distance}` with distances 0.9, 0.8, 0.7
   */
  hits?:
    | Record<string, unknown>[]
    | ((request: Record<string, unknown>) => Record<string, unknown>[]);
  /**
   * The token the fake requires as `Authorization: Bearer <token>`; others
   * get Milvus's code 1800.
   *
   * @default none required
   */
  token?: string;
  /**
   * The collections that exist; others get Milvus's code 100.
   *
   * @default any collection exists
   */
  collections?: string[];
}

/** A fake Milvus server. */
export interface FakeMilvus extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeMilvusConfig;
}

const DEFAULT_MILVUS_HITS = [
  { id: 1, text: "NATS is a messaging system.", distance: 0.9 },
  { id: 2, text: "JetStream adds persistence to NATS.", distance: 0.8 },
  { id: 3, text: "Milvus is a vector database.", distance: 0.7 },
];

/**
 * Starts a fake Milvus v2 REST server (`POST /v2/vectordb/entities/search`).
 * Like Milvus, it answers failures with HTTP 200 and a non-zero `code`.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Require a token
 * ```ts
 * import assert from "node:assert/strict";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using milvus = startFakeMilvus({ token: "root:Milvus", hits: [{ id: 7, text: "x", distance: 0.5 }] });
 * const client = createMilvusClient({ baseUrl: milvus.url, token: "root:Milvus" });
 * const hits = await client.search([0.1, 0.2], { collection: "docs" });
 * assert.deepEqual(hits.map((h) => h.text), ["x"]);
 * ```
 */
export function startFakeMilvus(config: FakeMilvusConfig = {}): FakeMilvus {
  const fake: FakeMilvus = Object.assign(
    startFakeHttpServer((request) => {
      if (request.method !== "POST" || request.path !== "/v2/vectordb/entities/search") {
        return notFound(request);
      }
      const c = fake.config;
      if (c.token && request.headers.get("authorization") !== `Bearer ${c.token}`) {
        return Response.json({ code: 1800, message: "user hasn't authenticated" });
      }
      const body = isRecord(request.json) ? request.json : undefined;
      const data = body?.data;
      if (
        !body || typeof body.collectionName !== "string" || !Array.isArray(data) ||
        !Array.isArray(data[0])
      ) {
        return Response.json({ code: 1100, message: "invalid parameter: data and collectionName" });
      }
      if (c.collections && !c.collections.includes(body.collectionName)) {
        return Response.json({
          code: 100,
          message: `collection not found[collection=${body.collectionName}]`,
        });
      }
      const limit = typeof body.limit === "number" ? body.limit : 100;
      const rows = typeof c.hits === "function" ? c.hits(body) : c.hits ?? DEFAULT_MILVUS_HITS;
      return Response.json({ code: 0, cost: 0, data: rows.slice(0, limit) });
    }),
    { config },
  );
  return fake;
}
