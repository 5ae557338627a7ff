/**
 * A client of a reranker that speaks the Cohere/Infinity shape
 * (`POST /v1/rerank {query, documents, top_n}` -> `{results:[{index,
 * relevance_score}]}`) or the TEI shape (`POST /rerank {query, texts}` ->
 * `[{index, score}]`). With `api: "auto"` it tries the Cohere shape first and,
 * when the server answers 404, uses the TEI shape from then on.
 *
 * Reranking has no side effects, so calls are retried on connection errors
 * and 429/502/503/504.
 *
 * Requires `--allow-net` to the reranker host.
 *
 * @example Keep the best two documents
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
 * import { startFakeReranker } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeReranker(); // scores by the query's words found
 * const reranker = createRerankerClient({ baseUrl: server.url });
 * const documents = ["A cake.", "NATS is a bus.", "What is a queue?"];
 * const best = await reranker.rerank("What is NATS?", documents, { topN: 2 });
 * assert.deepEqual(best.map((r) => r.index), [1, 2]);
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import { BackendError, InvalidResponseError } from "../errors.ts";
import {
  backendUrlVar,
  type ClientFromConfigOptions,
  type ClientOptions,
  createHttpClient,
} from "./http.ts";
import { isRecord } from "./_json.ts";

/** The request shapes a reranker may speak. */
export type RerankApi = "cohere" | "tei" | "auto";

/** Options of {@linkcode createRerankerClient}. */
export interface RerankerClientOptions extends ClientOptions {
  /**
   * The request shape: `"cohere"` (`/v1/rerank`), `"tei"` (`/rerank`), or
   * `"auto"` (Cohere, falling back to TEI on 404 and remembering it).
   *
   * @default "auto"
   */
  api?: RerankApi;
  /**
   * The model the Cohere-shaped requests ask for.
   *
   * @default unset: no `model` field is sent
   */
  model?: string;
}

/** Options of one rerank call. */
export interface RerankOptions {
  /**
   * How many of the best documents to return.
   *
   * @default all of them
   */
  topN?: number;
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** The relevance of one document. */
export interface RerankResult {
  /** The document's position in the input list. */
  index: number;
  /** Its relevance to the query; higher is more relevant. */
  score: number;
}

/** A reranker client. */
export interface RerankerClient {
  /** The shape in use: the configured one, or for `"auto"` the one found (`"auto"` until known). */
  readonly api: RerankApi;
  /**
   * Scores documents against a query.
   *
   * @param query The query.
   * @param documents The candidate texts; an empty list gives an empty result without a request.
   * @param options How many to keep, and the signal.
   * @returns The best documents, most relevant first.
   * @throws {InvalidResponseError} When the answer is not a valid ranking of the documents.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  rerank(
    query: string,
    documents: readonly string[],
    options?: RerankOptions,
  ): Promise<RerankResult[]>;
}

const BACKEND = "reranker";

/**
 * Creates a reranker client.
 *
 * @param options The base URL, request shape, model and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Talk to Hugging Face TEI
 * ```ts
 * import assert from "node:assert/strict";
 * import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
 * import { startFakeReranker } from "@homelab/handler-base/testing";
 *
 * await using tei = startFakeReranker({ api: "tei" });
 * const reranker = createRerankerClient({ baseUrl: tei.url, api: "tei" });
 * const ranked = await reranker.rerank("query b", ["a", "b"]);
 * assert.deepEqual(ranked.map((r) => r.index), [1, 0]);
 * assert.deepEqual(tei.requests.map((r) => r.path), ["/rerank"]);
 * ```
 */
export function createRerankerClient(options: RerankerClientOptions): RerankerClient {
  const http = createHttpClient(BACKEND, options);
  let api: RerankApi = options.api ?? "auto";

  async function cohere(
    query: string,
    documents: readonly string[],
    topN: number,
    signal: AbortSignal | undefined,
  ): Promise<RerankResult[]> {
    const json: Record<string, unknown> = { query, documents, top_n: topN };
    if (options.model) json.model = options.model;
    const answer = await http.json("/v1/rerank", { json, idempotent: true, signal });
    const results = isRecord(answer) ? answer.results : undefined;
    if (!Array.isArray(results)) throw new InvalidResponseError(BACKEND, "results is missing");
    return results.map((item) => toResult(item, "relevance_score", documents.length));
  }

  async function tei(
    query: string,
    documents: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<RerankResult[]> {
    const answer = await http.json("/rerank", {
      json: { query, texts: documents },
      idempotent: true,
      signal,
    });
    if (!Array.isArray(answer)) throw new InvalidResponseError(BACKEND, "the body is not a list");
    return answer.map((item) => toResult(item, "score", documents.length));
  }

  async function ranked(
    query: string,
    documents: readonly string[],
    topN: number,
    signal: AbortSignal | undefined,
  ): Promise<RerankResult[]> {
    if (api === "tei") return await tei(query, documents, signal);
    if (api === "cohere") return await cohere(query, documents, topN, signal);
    try {
      const results = await cohere(query, documents, topN, signal);
      api = "cohere";
      return results;
    } catch (error) {
      if (!(error instanceof BackendError) || error.status !== 404) throw error;
      const results = await tei(query, documents, signal);
      api = "tei";
      return results;
    }
  }

  return {
    get api() {
      return api;
    },
    async rerank(query, documents, call = {}) {
      if (documents.length === 0) return [];
      const topN = Math.min(call.topN ?? documents.length, documents.length);
      const results = await ranked(query, documents, topN, call.signal);
      const seen = new Set<number>();
      for (const { index } of results) {
        if (seen.has(index)) {
          throw new InvalidResponseError(BACKEND, `document ${index} is ranked twice`);
        }
        seen.add(index);
      }
      return results.sort((a, b) => b.score - a.score).slice(0, topN);
    },
  };
}

function toResult(item: unknown, scoreField: string, count: number): RerankResult {
  const index = isRecord(item) ? item.index : undefined;
  const score = isRecord(item) ? item[scoreField] : undefined;
  if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new InvalidResponseError(BACKEND, `document index ${String(index)} is out of range`);
  }
  if (typeof score !== "number" || !Number.isFinite(score)) {
    throw new InvalidResponseError(
      BACKEND,
      `the ${scoreField} of document ${index} is not a number`,
    );
  }
  return { index, score };
}

/** The type of {@linkcode rerankerConfigSpec}. */
export type RerankerConfigSpec = {
  /** `RERANKER_URL`: the reranker server. */
  readonly rerankerUrl: VarSpec<string>;
  /** `RERANKER_TIMEOUT_MS`: one call. */
  readonly rerankerTimeoutMs: VarSpec<number>;
};

/**
 * The reranker's variables, declared once for every service that uses it:
 * `RERANKER_URL` (SYSTEM.md section 6) and `RERANKER_TIMEOUT_MS` (10 s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { rerankerConfigSpec } from "@homelab/handler-base/clients/reranker";
 *
 * assert.equal(loadConfig(rerankerConfigSpec, {}).rerankerTimeoutMs, 10000);
 * ```
 */
export const rerankerConfigSpec: RerankerConfigSpec = Object.freeze({
  rerankerUrl: backendUrlVar("RERANKER_URL", "http://reranker-predictor.ai-ml.svc.cluster.local"),
  rerankerTimeoutMs: envVar.duration("RERANKER_TIMEOUT_MS", { default: 10_000 }),
});

/**
 * The reranker client a loaded {@linkcode rerankerConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @param options The logger.
 * @returns The client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import {
 *   rerankerClientFromConfig,
 *   rerankerConfigSpec,
 * } from "@homelab/handler-base/clients/reranker";
 *
 * const reranker = rerankerClientFromConfig(loadConfig(rerankerConfigSpec, {}));
 * assert.equal(typeof reranker.rerank, "function");
 * ```
 */
export function rerankerClientFromConfig(
  config: Config<RerankerConfigSpec>,
  options: ClientFromConfigOptions = {},
): RerankerClient {
  return createRerankerClient({
    ...options,
    baseUrl: config.rerankerUrl,
    timeoutMs: config.rerankerTimeoutMs,
  });
}
