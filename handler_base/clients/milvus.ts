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
 * ```ts ignore
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 *
 * const milvus = createMilvusClient({ baseUrl: "http://milvus:19530", token: "root:Milvus" });
 * const hits = await milvus.search([0.1, 0.2, 0.3], { limit: 5 });
 * for (const hit of hits) console.log(hit.score, hit.text);
 * ```
 *
 * @module
 */
import { BackendError, InvalidArgumentError, InvalidResponseError } from "../errors.ts";
import { type ClientOptions, createHttpClient } from "./http.ts";
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
 * ```ts ignore
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 *
 * const milvus = createMilvusClient({ baseUrl: "http://milvus:19530", metricType: "L2" });
 * const [best] = await milvus.search([0.5, 0.5], { collection: "docs", limit: 3 });
 * console.log(milvus.higherIsBetter, best?.distance, best?.score); // false 0.2 0.833…
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
        const message = typeof answer.message === "string" ? answer.message.slice(0, 200) : "";
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
