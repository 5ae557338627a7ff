/**
 * Stand-in for the reranker service (the GPU cross-encoder), scoring by term
 * overlap: the Cohere/Infinity shape `POST /v1/rerank {query, documents,
 * top_n, return_documents}` answering `{results: [{index, relevance_score}]}`,
 * and TEI's `POST /rerank {query, texts, return_text}` answering
 * `[{index, score}]`, both best first.
 *
 * A document's score is the weighted share of the query's distinct terms it
 * contains (rarer terms among the candidates weigh more), plus a small bonus
 * for how densely they occur, so it lies in [0, 1.1) and a document with
 * every query term beats one with some.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Rerank through the project's client
 * ```ts ignore
 * import { startRerankerStandIn } from "./reranker.ts";
 * import { createRerankerClient } from "../../handler_base/clients/reranker.ts";
 *
 * await using server = startRerankerStandIn();
 * const client = createRerankerClient({ baseUrl: server.url });
 * const [best] = await client.rerank("streams in JetStream", ["NATS core", "JetStream streams"]);
 * console.log(best?.index); // 1
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { terms } from "./_text.ts";
import { HttpError, readJsonObject, serveStandIn, type StandIn } from "./_server.ts";

/** The most documents one request may rerank. */
const MAX_DOCUMENTS = 1000;

/**
 * Scores documents against a query by term overlap.
 *
 * @param query The query.
 * @param documents The documents.
 * @returns One score per document, in input order.
 */
export function overlapScores(query: string, documents: readonly string[]): number[] {
  const queryTerms = [...new Set(terms(query))];
  const docTerms = documents.map((d) => terms(d));
  const docSets = docTerms.map((t) => new Set(t));
  // Inverse document frequency among the candidates, smoothed so a term in every document still counts.
  const weight = new Map(queryTerms.map((term) => {
    const found = docSets.filter((set) => set.has(term)).length;
    return [term, Math.log(1 + (documents.length + 1) / (found + 1))];
  }));
  const total = [...weight.values()].reduce((a, b) => a + b, 0);
  return docTerms.map((words, i) => {
    if (total === 0 || words.length === 0) return 0;
    let covered = 0;
    let hits = 0;
    for (const term of queryTerms) if (docSets[i]!.has(term)) covered += weight.get(term)!;
    for (const word of words) if (weight.has(word)) hits++;
    return covered / total + 0.1 * (hits / words.length);
  });
}

function parse(body: Record<string, unknown>, field: string): { query: string; docs: string[] } {
  const query = body.query;
  const docs = body[field];
  if (typeof query !== "string" || !Array.isArray(docs)) {
    throw new HttpError(422, `Cannot rerank: query and ${field} are required`);
  }
  if (docs.length > MAX_DOCUMENTS) {
    throw new HttpError(422, `Cannot rerank: more than ${MAX_DOCUMENTS} ${field}`);
  }
  // Cohere accepts documents as {text} objects too.
  const texts = docs.map((d) => typeof d === "string" ? d : (d as { text?: unknown })?.text);
  if (!texts.every((t): t is string => typeof t === "string")) {
    throw new HttpError(422, `Cannot rerank: every item of ${field} must be a string`);
  }
  return { query, docs: texts };
}

/** Options of {@linkcode startRerankerStandIn}. */
export interface RerankerStandInOptions {
  /**
   * The port (0: a free one).
   *
   * @default 0
   */
  port?: number;
  /**
   * Where bad requests are logged.
   *
   * @default none
   */
  logger?: Logger;
}

/**
 * Starts the reranker stand-in.
 *
 * @param options Port and logger.
 * @returns The running stand-in.
 */
export function startRerankerStandIn(options: RerankerStandInOptions = {}): StandIn {
  const server = serveStandIn({
    name: "reranker",
    port: options.port,
    logger: options.logger,
    errorBody: (_status, message) => ({ error: message, detail: message }),
    routes: {
      async "POST /v1/rerank"(request) {
        const body = await readJsonObject(request);
        const { query, docs } = parse(body, "documents");
        const topN = body.top_n ?? docs.length;
        if (typeof topN !== "number" || !Number.isInteger(topN) || topN < 1) {
          throw new HttpError(422, "Cannot rerank: top_n must be a positive integer");
        }
        const scores = overlapScores(query, docs);
        const results = scores
          .map((score, index) => ({
            index,
            relevance_score: score,
            ...(body.return_documents === true ? { document: { text: docs[index] } } : {}),
          }))
          .sort((a, b) => b.relevance_score - a.relevance_score)
          .slice(0, topN);
        return Response.json({
          id: crypto.randomUUID(),
          model: typeof body.model === "string" ? body.model : "stand-in-term-overlap",
          results,
          usage: { total_tokens: terms(query).length * docs.length },
        });
      },
      async "POST /rerank"(request) {
        const body = await readJsonObject(request);
        const { query, docs } = parse(body, "texts");
        const scores = overlapScores(query, docs);
        return Response.json(
          scores
            .map((score, index) => ({
              index,
              score,
              ...(body.return_text === true ? { text: docs[index] } : {}),
            }))
            .sort((a, b) => b.score - a.score),
        );
      },
    },
  });
  return {
    url: server.url,
    readiness: {
      backend: "reranker",
      url: server.url,
      standIn: "term overlap (Cohere /v1/rerank and TEI /rerank)",
      ok: true,
    },
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
}
