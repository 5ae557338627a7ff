/**
 * Retrieval for RAG, shared by chat and voice: embed the query, search
 * Milvus, optionally rerank the hits against the query and keep the best,
 * and build the context block the LLM reads.
 *
 * Each step runs in its own span (`rag.embed`, `rag.search`, `rag.rerank`)
 * under a `rag.retrieve` span of the tracer `@homelab/handler-base`, with its
 * duration as the `rag.duration_ms` attribute. {@linkcode retrieve} throws
 * the clients' typed errors; {@linkcode retrieveOrDegrade} is the policy chat
 * and voice share: a failed retrieval answers without context (a warning log
 * and a span event), only a cancellation is thrown.
 *
 * Requires `--allow-net` to the embeddings, Milvus and reranker hosts.
 *
 * @example Retrieve context for a question
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { createRerankerClient } from "@homelab/handler-base/clients/reranker";
 * import { retrieve } from "@homelab/handler-base/clients/rag";
 * import {
 *   startFakeEmbeddings,
 *   startFakeMilvus,
 *   startFakeReranker,
 * } from "@homelab/handler-base/testing";
 *
 * await using embeddingsServer = startFakeEmbeddings();
 * await using milvusServer = startFakeMilvus(); // three documents about NATS and Milvus
 * await using rerankerServer = startFakeReranker();
 * const clients = {
 *   embeddings: createEmbeddingsClient({ baseUrl: embeddingsServer.url }),
 *   milvus: createMilvusClient({ baseUrl: milvusServer.url }),
 *   reranker: createRerankerClient({ baseUrl: rerankerServer.url }),
 * };
 * const { context, sources } = await retrieve("What is Milvus?", clients, {
 *   topK: 5,
 *   keep: 2,
 *   rerank: true,
 * });
 * assert.equal(sources[0]?.text, "Milvus is a vector database.");
 * assert.ok(context.startsWith("[1] Milvus is a vector database.\n\n[2] "));
 * ```
 *
 * @module
 */
import {
  type Context,
  context,
  type Span,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { Config } from "../config.ts";
import { errorType, InvalidArgumentError, toErrorResponse } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  type EmbeddingsClient,
  embeddingsClientFromConfig,
  type EmbeddingsConfigSpec,
  embeddingsConfigSpec,
} from "./embeddings.ts";
import type { ClientFromConfigOptions } from "./http.ts";
import {
  type MilvusClient,
  milvusClientFromConfig,
  type MilvusConfigSpec,
  milvusConfigSpec,
} from "./milvus.ts";
import {
  type RerankerClient,
  rerankerClientFromConfig,
  type RerankerConfigSpec,
  rerankerConfigSpec,
} from "./reranker.ts";

/** The clients {@linkcode retrieve} uses. */
export interface RagClients {
  /** Embeds the query. */
  embeddings: EmbeddingsClient;
  /** Searches the knowledge base. */
  milvus: MilvusClient;
  /** Reranks the hits (needed only with `rerank: true`). */
  reranker?: RerankerClient;
}

/** Options of {@linkcode retrieve}. */
export interface RetrieveOptions {
  /**
   * How many hits to fetch from Milvus.
   *
   * @default 5
   */
  topK?: number;
  /**
   * The collection to search.
   *
   * @default the Milvus client's collection
   */
  collection?: string;
  /**
   * Rerank the hits against the query and keep the best `keep`.
   *
   * @default false
   */
  rerank?: boolean;
  /**
   * How many reranked hits to keep.
   *
   * @default 3
   */
  keep?: number;
  /**
   * Cancels every step.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** A document the context was built from. */
export interface RetrievedSource {
  /** Its text. */
  text: string;
  /** The reranker's score when reranked, else Milvus's (higher is better either way). */
  score: number;
}

/** The result of {@linkcode retrieve}. */
export interface Retrieval {
  /** The sources as numbered blocks (`[1] text`), separated by blank lines; "" when none. */
  context: string;
  /** The sources, best first. */
  sources: RetrievedSource[];
}

/**
 * Retrieves the documents relevant to a query and formats them as context.
 *
 * @param query The user's question.
 * @param clients The embeddings, Milvus and (for reranking) reranker clients.
 * @param options How many hits, which collection, whether to rerank, the signal.
 * @returns The context block and its sources.
 * @throws {InvalidArgumentError} When the query is empty, `topK` or `keep` is not a positive integer, or reranking is asked without a reranker.
 * @throws {BackendUnavailableError | BackendError | InvalidResponseError | TimeoutError} When a step fails.
 *
 * @example Without reranking
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEmbeddingsClient } from "@homelab/handler-base/clients/embeddings";
 * import { createMilvusClient } from "@homelab/handler-base/clients/milvus";
 * import { retrieve } from "@homelab/handler-base/clients/rag";
 * import { startFakeEmbeddings, startFakeMilvus } from "@homelab/handler-base/testing";
 *
 * await using embeddingsServer = startFakeEmbeddings();
 * await using milvusServer = startFakeMilvus();
 * const clients = {
 *   embeddings: createEmbeddingsClient({ baseUrl: embeddingsServer.url }),
 *   milvus: createMilvusClient({ baseUrl: milvusServer.url }),
 * };
 * const { sources } = await retrieve("How do I reset my password?", clients, { topK: 3 });
 * assert.deepEqual(sources.map((s) => s.score), [0.9, 0.8, 0.7]); // Milvus's, in its order
 * ```
 */
export async function retrieve(
  query: string,
  clients: RagClients,
  options: RetrieveOptions = {},
): Promise<Retrieval> {
  const { topK = 5, keep = 3, rerank = false, collection, signal } = options;
  if (query.trim() === "") {
    throw new InvalidArgumentError("Cannot retrieve context: the query is empty");
  }
  for (const [name, value] of [["topK", topK], ["keep", keep]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new InvalidArgumentError(
        `Cannot retrieve context: ${name} ${value} is not a positive integer`,
      );
    }
  }
  const reranker = clients.reranker;
  if (rerank && !reranker) {
    throw new InvalidArgumentError("Cannot retrieve context: reranking needs a reranker client");
  }
  const tracer = trace.getTracer("@homelab/handler-base");

  return await inSpan(tracer, "rag.retrieve", context.active(), async (root, rootContext) => {
    root.setAttributes({ "rag.top_k": topK, "rag.rerank": rerank });
    if (collection) root.setAttribute("rag.collection", collection);

    const vector = await inSpan(tracer, "rag.embed", rootContext, async (span) => {
      const vector = await clients.embeddings.embedOne(query, { signal });
      span.setAttribute("rag.dimensions", vector.length);
      return vector;
    });

    const hits = await inSpan(tracer, "rag.search", rootContext, async (span) => {
      const found = await clients.milvus.search(vector, { limit: topK, collection, signal });
      const withText = found.filter((hit) => hit.text.trim() !== "");
      span.setAttribute("rag.hits", withText.length);
      return withText;
    });

    let sources: RetrievedSource[] = hits.map(({ text, score }) => ({ text, score }));
    if (rerank && reranker && sources.length > 0) {
      sources = await inSpan(tracer, "rag.rerank", rootContext, async (span) => {
        const texts = sources.map((source) => source.text);
        const ranked = await reranker.rerank(query, texts, { topN: keep, signal });
        span.setAttributes({ "rag.candidates": texts.length, "rag.kept": ranked.length });
        return ranked.map(({ index, score }) => ({ text: texts[index]!, score }));
      });
    }

    root.setAttribute("rag.sources", sources.length);
    const block = sources.map((source, i) => `[${i + 1}] ${source.text.trim()}`).join("\n\n");
    return { context: block, sources };
  });
}

/** Options of {@linkcode retrieveOrDegrade}. */
export interface RetrieveOrDegradeOptions extends RetrieveOptions {
  /**
   * Where a degradation is logged, as the warning "Answering without RAG:
   * retrieval failed" with the error and its `error_type`.
   *
   * @default none
   */
  logger?: Logger;
  /**
   * The span that records a degradation: an event `<eventPrefix>.rag_degraded`
   * (with `error.type` and the error's wire message) and the attribute
   * `<eventPrefix>.rag_degraded = true`.
   *
   * @default none
   */
  span?: Span;
  /**
   * The prefix of the event and attribute names (the service's own, such as `"chat"`).
   *
   * @default "rag"
   */
  eventPrefix?: string;
}

/**
 * Retrieves context as {@linkcode retrieve} does, or degrades to none: any
 * failure of a step (embedder, Milvus, reranker, bad options) is logged and
 * recorded on the span, and the caller answers without context. A
 * cancellation (the signal fired) is thrown, since the caller is stopping.
 *
 * @param query The user's question.
 * @param clients The embeddings, Milvus and (for reranking) reranker clients.
 * @param options The options of {@linkcode retrieve}, plus where to report a degradation.
 * @returns The context and sources, or undefined when retrieval failed.
 * @throws {unknown} The signal's reason, when the signal fired.
 *
 * @example Degrade inside a handler
 * ```ts ignore
 * import { retrieveOrDegrade } from "@homelab/handler-base/clients/rag";
 *
 * const retrieval = await retrieveOrDegrade(query, clients, {
 *   topK: 5,
 *   signal: ctx.signal,
 *   logger: ctx.log,
 *   span: ctx.span,
 *   eventPrefix: "chat",
 * });
 * const context = retrieval?.context ?? "";
 * ```
 */
export async function retrieveOrDegrade(
  query: string,
  clients: RagClients,
  options: RetrieveOrDegradeOptions = {},
): Promise<Retrieval | undefined> {
  const { logger, span, eventPrefix = "rag", ...retrieveOptions } = options;
  try {
    return await retrieve(query, clients, retrieveOptions);
  } catch (error) {
    if (retrieveOptions.signal?.aborted) throw error;
    const type = errorType(error);
    logger?.warn("Answering without RAG: retrieval failed", { error, error_type: type });
    span?.addEvent(`${eventPrefix}.rag_degraded`, {
      "error.type": type,
      "exception.message": toErrorResponse(error).message,
    });
    span?.setAttribute(`${eventPrefix}.rag_degraded`, true);
    return undefined;
  }
}

/**
 * Runs `fn` in a span that is a child of `parent` (passed explicitly, so the
 * steps nest even without a context manager), recording its duration and any
 * failure.
 */
async function inSpan<T>(
  tracer: Tracer,
  name: string,
  parent: Context,
  fn: (span: Span, spanContext: Context) => Promise<T>,
): Promise<T> {
  const span = tracer.startSpan(name, {}, parent);
  const spanContext = trace.setSpan(parent, span);
  const started = performance.now();
  try {
    return await context.with(spanContext, () => fn(span, spanContext));
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.name : "",
    });
    throw error;
  } finally {
    span.setAttribute("rag.duration_ms", Math.round((performance.now() - started) * 100) / 100);
    span.end();
  }
}

/** The type of {@linkcode ragConfigSpec}. */
export type RagConfigSpec = EmbeddingsConfigSpec & MilvusConfigSpec & RerankerConfigSpec;

/**
 * The variables of retrieval, for a service that does RAG: the embedder's,
 * Milvus's (with `COLLECTION_NAME`) and the reranker's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configVarNames } from "@homelab/handler-base/config";
 * import { ragConfigSpec } from "@homelab/handler-base/clients/rag";
 *
 * assert.equal(configVarNames(ragConfigSpec).includes("COLLECTION_NAME"), true);
 * ```
 */
export const ragConfigSpec: RagConfigSpec = Object.freeze({
  ...embeddingsConfigSpec,
  ...milvusConfigSpec,
  ...rerankerConfigSpec,
});

/**
 * The clients {@linkcode retrieve} uses, as a loaded {@linkcode ragConfigSpec} describes them.
 *
 * @param config The loaded variables.
 * @param options The logger.
 * @returns The embeddings, Milvus and reranker clients.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { ragClientsFromConfig, ragConfigSpec } from "@homelab/handler-base/clients/rag";
 *
 * const clients = ragClientsFromConfig(loadConfig(ragConfigSpec, {}));
 * assert.equal(Object.keys(clients).join(","), "embeddings,milvus,reranker");
 * ```
 */
export function ragClientsFromConfig(
  config: Config<RagConfigSpec>,
  options: ClientFromConfigOptions = {},
): Required<RagClients> {
  return {
    embeddings: embeddingsClientFromConfig(config, options),
    milvus: milvusClientFromConfig(config, options),
    reranker: rerankerClientFromConfig(config, options),
  };
}
