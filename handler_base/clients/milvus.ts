/**
 * A client of the Milvus v2 REST API for vector search
 * (`POST /v2/vectordb/entities/search`), with an optional bearer token.
 *
 * Milvus reports failures in the body of a 200 (`{code, message}`); a
 * non-zero `code` becomes a {@linkcode BackendError} with Milvus's message.
 * Hits carry both the raw `distance` and a `score` where higher is always
 * better: for COSINE and IP the score is the distance itself, for L2 it is
 * `1 / (1 + distance)`. Search has no side effects, so calls are retried on
 * connection errors and 429/502/503/504.
 *
 * Requires `--allow-net` to the Milvus host.
 *
 * @example Search the knowledge base
 * ```ts
 * import assert from "node:assert/strict";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeMilvus({ token: "root:Milvus" }); // stands in for Milvus
 * const milvus = createMilvusClient({ baseUrl: server.url, token: "root:Milvus" });
 * const hits = await milvus.search([0.1, 0.2, 0.3], { limit: 2 });
 * assert.deepEqual(hits.map((hit) => [hit.score, hit.text]), [
 *   [0.9, "NATS is a messaging system."],
 *   [0.8, "JetStream adds persistence to NATS."],
 * ]);
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import { BackendError, InvalidArgumentError, InvalidResponseError } from "../errors.ts";
import { type ClientFromConfigOptions, type ClientOptions, createHttpClient } from "./http.ts";
import { truncateText } from "../text.ts";
import { isRecord } from "./_json.ts";

/** The metric of a vector index. */
export type MetricType = "COSINE" | "IP" | "L2";

/** Options of {@linkcode createMilvusClient}. */
export interface MilvusClientOptions extends ClientOptions {
  /**
   * The token sent as `Authorization: Bearer <token>` (`user:password` or an API key).
   *
   * @default unset: no Authorization header
   */
  token?: string;
  /**
   * The database (`dbName`).
   *
   * @default unset: Milvus's default database
   */
  dbName?: string;
  /**
   * The collection searched when a call names none.
   *
   * @default "knowledge_base"
   */
  collection?: string;
  /**
   * The vector field searched (`annsField`).
   *
   * @default "vector"
   */
  annsField?: string;
  /**
   * The field holding a hit's text.
   *
   * @default "text"
   */
  textField?: string;
  /**
   * The fields returned with each hit.
   *
   * @default [textField]
   */
  outputFields?: string[];
  /**
   * The metric of the index; it decides the score direction.
   *
   * @default "COSINE"
   */
  metricType?: MetricType;
  /**
   * Index search parameters (such as `{ ef: 64 }` or `{ nprobe: 16 }`).
   *
   * @default {}
   */
  searchParams?: Record<string, unknown>;
}

/** Options of one search. */
export interface MilvusSearchOptions {
  /**
   * The collection.
   *
   * @default the client's `collection`
   */
  collection?: string;
  /**
   * How many hits to return.
   *
   * @default 5
   */
  limit?: number;
  /**
   * A boolean filter expression (such as `source == "wiki"`).
   *
   * @default none
   */
  filter?: string;
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** One search hit. */
export interface SearchHit {
  /** The hit's text (the `textField`, or "" when absent). */
  text: string;
  /** Its relevance, higher is better whatever the metric. */
  score: number;
  /** The raw distance Milvus returned. */
  distance: number;
  /** Every returned field except `distance` (including `id` and the text). */
  fields: Record<string, unknown>;
}

/** A Milvus search client. */
export interface MilvusClient {
  /** The metric in use. */
  readonly metricType: MetricType;
  /** Whether a larger raw `distance` means a closer match (true for COSINE and IP). */
  readonly higherIsBetter: boolean;
  /**
   * Searches for the vectors nearest to a query vector.
   *
   * @param vector The query embedding.
   * @param options Collection, limit, filter and signal.
   * @returns The hits, best first.
   * @throws {InvalidArgumentError} When the vector is empty or the limit is not a positive integer.
   * @throws {BackendError} When Milvus answers a non-zero `code`.
   * @throws {InvalidResponseError | BackendUnavailableError | TimeoutError} When the call fails.
   */
  search(vector: readonly number[], options?: MilvusSearchOptions): Promise<SearchHit[]>;
}

const BACKEND = "milvus";

/**
 * Creates a Milvus search client.
 *
 * @param options The base URL, token, collection, fields, metric and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example An L2 index: hits are still sorted by a higher-is-better score
 * ```ts
 * import assert from "node:assert/strict";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeMilvus({
 *   hits: [{ text: "far", distance: 0.9 }, { text: "near", distance: 0.2 }],
 * });
 * const milvus = createMilvusClient({ baseUrl: server.url, metricType: "L2" });
 * const [best] = await milvus.search([0.5, 0.5], { collection: "docs", limit: 3 });
 * assert.deepEqual([milvus.higherIsBetter, best?.text, best?.distance], [false, "near", 0.2]);
 * assert.equal(best?.score.toFixed(3), "0.833"); // 1 / (1 + 0.2)
 * ```
 */
export function createMilvusClient(options: MilvusClientOptions): MilvusClient {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const http = createHttpClient(BACKEND, { ...options, headers });
  const metricType = options.metricType ?? "COSINE";
  const higherIsBetter = metricType !== "L2";
  const textField = options.textField ?? "text";
  const outputFields = options.outputFields ?? [textField];

  return {
    metricType,
    higherIsBetter,
    async search(vector, call = {}) {
      const limit = call.limit ?? 5;
      if (vector.length === 0) {
        throw new InvalidArgumentError("Cannot search Milvus: the vector is empty");
      }
      if (!Number.isInteger(limit) || limit < 1) {
        throw new InvalidArgumentError(
          `Cannot search Milvus: limit ${limit} is not a positive integer`,
        );
      }
      const json: Record<string, unknown> = {
        collectionName: call.collection ?? options.collection ?? "knowledge_base",
        data: [vector],
        annsField: options.annsField ?? "vector",
        limit,
        outputFields,
        searchParams: { metricType, params: options.searchParams ?? {} },
      };
      if (options.dbName) json.dbName = options.dbName;
      if (call.filter) json.filter = call.filter;
      const answer = await http.json("/v2/vectordb/entities/search", {
        json,
        idempotent: true,
        signal: call.signal,
      });
      if (!isRecord(answer)) throw new InvalidResponseError(BACKEND, "the body is not an object");
      if (typeof answer.code !== "number") {
        throw new InvalidResponseError(BACKEND, "code is missing");
      }
      if (answer.code !== 0) {
        const message = typeof answer.message === "string" ? truncateText(answer.message, 200) : "";
        throw new BackendError(BACKEND, {
          status: 0,
          excerpt: `code ${answer.code}${message ? `: ${message}` : ""}`,
        });
      }
      if (!Array.isArray(answer.data)) throw new InvalidResponseError(BACKEND, "data is missing");
      const hits = answer.data.map((row): SearchHit => {
        if (!isRecord(row) || typeof row.distance !== "number") {
          throw new InvalidResponseError(BACKEND, "a hit has no distance");
        }
        const { distance, ...fields } = row;
        const text = typeof fields[textField] === "string" ? fields[textField] as string : "";
        const score = higherIsBetter ? distance : 1 / (1 + distance);
        return { text, score, distance, fields };
      });
      return hits.sort((a, b) => b.score - a.score);
    },
  };
}

/** The type of {@linkcode milvusConfigSpec}. */
export type MilvusConfigSpec = {
  /** `MILVUS_HOST`: Milvus's host name (or a URL with its scheme). */
  readonly milvusHost: VarSpec<string>;
  /** `MILVUS_PORT`: Milvus's port (its REST API). */
  readonly milvusPort: VarSpec<number>;
  /** `MILVUS_TOKEN`: Milvus's token (secret). */
  readonly milvusToken: VarSpec<string | undefined>;
  /** `MILVUS_TIMEOUT_MS`: one search. */
  readonly milvusTimeoutMs: VarSpec<number>;
  /** `COLLECTION_NAME`: the collection of requests that name none. */
  readonly collection: VarSpec<string>;
};

/**
 * Milvus's variables, declared once for every service that uses it:
 * `MILVUS_HOST`, `MILVUS_PORT`, `MILVUS_TOKEN` (secret), `MILVUS_TIMEOUT_MS`
 * (10 s) and `COLLECTION_NAME` (`knowledge_base`), with the defaults of
 * SYSTEM.md section 6.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { milvusConfigSpec } from "@homelab/handler-base/clients/milvus";
 *
 * const config = loadConfig(milvusConfigSpec, {});
 * assert.deepEqual([config.milvusPort, config.collection], [19530, "knowledge_base"]);
 * ```
 */
export const milvusConfigSpec: MilvusConfigSpec = Object.freeze({
  milvusHost: envVar.string("MILVUS_HOST", { default: "milvus.ai-ml.svc.cluster.local" }),
  milvusPort: envVar.int("MILVUS_PORT", { default: 19530, min: 1, max: 65535 }),
  milvusToken: envVar.string("MILVUS_TOKEN", { secret: true }),
  milvusTimeoutMs: envVar.duration("MILVUS_TIMEOUT_MS", { default: 10_000 }),
  collection: envVar.string("COLLECTION_NAME", { default: "knowledge_base" }),
});

/**
 * The base URL of Milvus's REST API from `MILVUS_HOST` (a host name, or a URL
 * with its scheme) and `MILVUS_PORT`.
 *
 * @param host The host name or URL.
 * @param port The port.
 * @returns The origin, such as `http://milvus:19530`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { milvusBaseUrl } from "@homelab/handler-base/clients/milvus";
 *
 * assert.equal(milvusBaseUrl("127.0.0.1", 19530), "http://127.0.0.1:19530");
 * assert.equal(milvusBaseUrl("https://milvus.example.com", 443), "https://milvus.example.com");
 * ```
 */
export function milvusBaseUrl(host: string, port: number): string {
  const url = new URL(/^https?:\/\//.test(host) ? host : `http://${host}`);
  url.port = String(port);
  return url.origin;
}

/**
 * The Milvus client a loaded {@linkcode milvusConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @param options The logger.
 * @returns The client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { milvusClientFromConfig, milvusConfigSpec } from "@homelab/handler-base/clients/milvus";
 *
 * const milvus = milvusClientFromConfig(loadConfig(milvusConfigSpec, {}));
 * assert.equal(typeof milvus.search, "function");
 * ```
 */
export function milvusClientFromConfig(
  config: Config<MilvusConfigSpec>,
  options: ClientFromConfigOptions = {},
): MilvusClient {
  return createMilvusClient({
    ...options,
    baseUrl: milvusBaseUrl(config.milvusHost, config.milvusPort),
    timeoutMs: config.milvusTimeoutMs,
    collection: config.collection,
    ...(config.milvusToken ? { token: config.milvusToken } : {}),
  });
}
