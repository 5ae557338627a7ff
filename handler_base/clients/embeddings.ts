/**
 * A client of an OpenAI-compatible embeddings server (`POST /v1/embeddings`),
 * with batching of large inputs and checks of the answer: one vector per
 * input, in input order (by `index`), all of the same length.
 *
 * Embedding has no side effects, so every call is retried on connection
 * errors and 429/502/503/504.
 *
 * Requires `--allow-net` to the embeddings host.
 *
 * @example Embed a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { startFakeEmbeddings } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeEmbeddings({ dimensions: 4 }); // stands in for the embeddings server
 * const embeddings = createEmbeddingsClient({ baseUrl: server.url, model: "bge-large" });
 * const vector = await embeddings.embedOne("What is NATS?");
 * assert.equal(vector.length, 4);
 * assert.equal((server.requests[0]?.json as { model: string }).model, "bge-large");
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import { InvalidResponseError } from "../errors.ts";
import {
  backendUrlVar,
  type ClientFromConfigOptions,
  type ClientOptions,
  createHttpClient,
} from "./http.ts";
import { isNumberArray, isRecord } from "./_json.ts";

/** Options of {@linkcode createEmbeddingsClient}. */
export interface EmbeddingsClientOptions extends ClientOptions {
  /**
   * The model requests ask for.
   *
   * @default unset: no `model` field is sent and the server picks its model
   */
  model?: string;
  /**
   * The most inputs sent in one request; longer lists are sent in batches.
   *
   * @default 32
   */
  batchSize?: number;
  /**
   * The vector length every answer must have.
   *
   * @default unset: any length, as long as all vectors of one call agree
   */
  dimensions?: number;
}

/** Options of one embeddings call. */
export interface EmbedOptions {
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** An embeddings client. */
export interface EmbeddingsClient {
  /**
   * Embeds texts, in batches of `batchSize`.
   *
   * @param texts The inputs; an empty list gives an empty result without a request.
   * @param options The signal.
   * @returns One vector per input, in input order.
   * @throws {InvalidResponseError} When the answer is not one vector per input of the same length.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  embed(texts: readonly string[], options?: EmbedOptions): Promise<number[][]>;
  /**
   * Embeds one text.
   *
   * @param text The input.
   * @param options The signal.
   * @returns Its vector.
   * @throws {InvalidResponseError | BackendUnavailableError | BackendError | TimeoutError} As {@linkcode EmbeddingsClient.embed}.
   */
  embedOne(text: string, options?: EmbedOptions): Promise<number[]>;
}

const BACKEND = "embeddings";

/**
 * Creates an embeddings client.
 *
 * @param options The base URL, model, batch size, expected dimensions and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 * @throws {RangeError} When `batchSize` is not a positive integer.
 *
 * @example Embed documents in batches of 16
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { startFakeEmbeddings } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeEmbeddings();
 * const embeddings = createEmbeddingsClient({ baseUrl: server.url, batchSize: 16 });
 * const vectors = await embeddings.embed(["first", "second"], { signal: AbortSignal.timeout(5000) });
 * assert.deepEqual(vectors, [server.vectorOf("first"), server.vectorOf("second")]);
 * ```
 */
export function createEmbeddingsClient(options: EmbeddingsClientOptions): EmbeddingsClient {
  const http = createHttpClient(BACKEND, options);
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`Cannot create the embeddings client: batch size ${batchSize} is invalid`);
  }

  /** Embeds one batch; every vector must have `dimensions` entries (or as many as the first). */
  async function embedBatch(
    texts: readonly string[],
    signal: AbortSignal | undefined,
    expectedDimensions: number | undefined,
  ): Promise<number[][]> {
    let dimensions = expectedDimensions;
    const json: Record<string, unknown> = { input: texts };
    if (options.model) json.model = options.model;
    const answer = await http.json("/v1/embeddings", { json, idempotent: true, signal });
    const data = isRecord(answer) ? answer.data : undefined;
    if (!Array.isArray(data) || data.length !== texts.length) {
      throw new InvalidResponseError(BACKEND, `expected ${texts.length} embeddings in data`);
    }
    const vectors: number[][] = new Array(texts.length);
    data.forEach((item, position) => {
      const index = isRecord(item) && item.index !== undefined ? item.index : position;
      const embedding = isRecord(item) ? item.embedding : undefined;
      if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= texts.length) {
        throw new InvalidResponseError(BACKEND, `embedding index ${String(index)} is out of range`);
      }
      if (vectors[index as number]) {
        throw new InvalidResponseError(BACKEND, `embedding index ${index} appears twice`);
      }
      if (!isNumberArray(embedding) || embedding.length === 0) {
        throw new InvalidResponseError(BACKEND, `embedding ${index} is not a list of numbers`);
      }
      dimensions ??= embedding.length;
      if (embedding.length !== dimensions) {
        throw new InvalidResponseError(
          BACKEND,
          `embedding ${index} has ${embedding.length} dimensions, expected ${dimensions}`,
        );
      }
      vectors[index as number] = embedding;
    });
    return vectors;
  }

  async function embed(texts: readonly string[], call: EmbedOptions = {}): Promise<number[][]> {
    const vectors: number[][] = [];
    for (let start = 0; start < texts.length; start += batchSize) {
      const batch = texts.slice(start, start + batchSize);
      const dimensions = options.dimensions ?? vectors[0]?.length;
      vectors.push(...await embedBatch(batch, call.signal, dimensions));
    }
    return vectors;
  }

  return {
    embed,
    async embedOne(text, call = {}) {
      const [vector] = await embedBatch([text], call.signal, options.dimensions);
      return vector!;
    },
  };
}

/** The type of {@linkcode embeddingsConfigSpec}. */
export type EmbeddingsConfigSpec = {
  /** `EMBEDDINGS_URL`: the embeddings server. */
  readonly embeddingsUrl: VarSpec<string>;
  /** `EMBEDDINGS_MODEL`: the model requests ask for; unset lets the server pick. */
  readonly embeddingsModel: VarSpec<string | undefined>;
  /** `EMBEDDINGS_TIMEOUT_MS`: one call. */
  readonly embeddingsTimeoutMs: VarSpec<number>;
};

/**
 * The embedder's variables, declared once for every service that uses it:
 * `EMBEDDINGS_URL` (SYSTEM.md section 6), `EMBEDDINGS_MODEL` and
 * `EMBEDDINGS_TIMEOUT_MS` (10 s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { embeddingsConfigSpec } from "@homelab/handler-base/clients/embeddings";
 *
 * const config = loadConfig(embeddingsConfigSpec, {});
 * assert.equal(config.embeddingsUrl, "http://embeddings-predictor.ai-ml.svc.cluster.local");
 * ```
 */
export const embeddingsConfigSpec: EmbeddingsConfigSpec = Object.freeze({
  embeddingsUrl: backendUrlVar(
    "EMBEDDINGS_URL",
    "http://embeddings-predictor.ai-ml.svc.cluster.local",
  ),
  embeddingsModel: envVar.string("EMBEDDINGS_MODEL"),
  embeddingsTimeoutMs: envVar.duration("EMBEDDINGS_TIMEOUT_MS", { default: 10_000 }),
});

/**
 * The embeddings client a loaded {@linkcode embeddingsConfigSpec} describes.
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
 *   embeddingsClientFromConfig,
 *   embeddingsConfigSpec,
 * } from "@homelab/handler-base/clients/embeddings";
 *
 * const embeddings = embeddingsClientFromConfig(loadConfig(embeddingsConfigSpec, {}));
 * assert.equal(typeof embeddings.embed, "function");
 * ```
 */
export function embeddingsClientFromConfig(
  config: Config<EmbeddingsConfigSpec>,
  options: ClientFromConfigOptions = {},
): EmbeddingsClient {
  return createEmbeddingsClient({
    ...options,
    baseUrl: config.embeddingsUrl,
    timeoutMs: config.embeddingsTimeoutMs,
    ...(config.embeddingsModel ? { model: config.embeddingsModel } : {}),
  });
}
