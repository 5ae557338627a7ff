/**
 * Stand-in for Milvus: an in-memory collection behind the Milvus v2 REST
 * search, `POST /v2/vectordb/entities/search {collectionName, data: [[...]],
 * annsField, limit, outputFields, searchParams, filter}` answering
 * `{code: 0, data: [{...fields, distance}]}`. Like Milvus, failures are a
 * 200 with a non-zero `code` (100: no such collection, 1100: bad parameter).
 *
 * The collection (`knowledge_base` by default, as `COLLECTION_NAME`) is
 * seeded with the project's own documentation ({@linkcode loadDocPassages}),
 * embedded with the embeddings stand-in's function, so a RAG question about
 * the project finds real passages. Rows have the fields `id`, `text` (label
 * line, then the passage), `source`, `title` and `vector`. Metrics: COSINE
 * (default) and IP give the dot product, higher is better; L2 gives the
 * squared distance, lower is better. Filters: `field == value` and
 * `field in [values]`, joined by `and`.
 *
 * Requires `--allow-net=127.0.0.1` and `--allow-read` of the project root.
 *
 * @example Search the project's docs through the project's clients
 * ```ts ignore
 * import { startMilvusStandIn } from "./milvus.ts";
 * import { embedText } from "./embeddings.ts";
 * import { createMilvusClient } from "../../handler_base/clients/milvus.ts";
 *
 * await using milvus = await startMilvusStandIn();
 * const client = createMilvusClient({ baseUrl: milvus.url });
 * const [best] = await client.search(embedText("How do I run the stack?"));
 * console.log(best?.text.split("\n")[0]); // "README.md › Two commands"
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { isNumberArray, isRecord } from "../../handler_base/clients/_json.ts";
import { type DocPassage, loadDocPassages } from "./docs_corpus.ts";
import { EMBEDDING_DIMENSIONS, embedText } from "./embeddings.ts";
import { readJsonObject, serveStandIn, type StandIn } from "./_server.ts";

/** One row of the in-memory collection. */
export type MilvusRow = Record<string, unknown> & { id: number; vector: number[] };

/** Options of {@linkcode startMilvusStandIn}. */
export interface MilvusStandInOptions {
  /**
   * The collection's name.
   *
   * @default "knowledge_base"
   */
  collection?: string;
  /**
   * The passages to seed it with.
   *
   * @default the project's README.md and docs/*.md
   */
  passages?: DocPassage[];
  /**
   * The project root the default passages are read from.
   *
   * @default the root of this repository
   */
  root?: URL;
  /**
   * The vector length (must match the embeddings stand-in).
   *
   * @default 384
   */
  dimensions?: number;
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

/** A running Milvus stand-in. */
export interface MilvusStandIn extends StandIn {
  /** The collection's name. */
  readonly collection: string;
  /** Its rows (read-only use; the vectors are the stand-in's embeddings). */
  readonly rows: readonly MilvusRow[];
}

/** A Milvus parameter error (answered as a 200 with code 1100). */
class ParameterError extends Error {}

/**
 * Starts the Milvus stand-in, seeded with the documentation.
 *
 * @param options Collection, passages, root, vector length, port and logger.
 * @returns The running stand-in.
 */
export async function startMilvusStandIn(
  options: MilvusStandInOptions = {},
): Promise<MilvusStandIn> {
  const collection = options.collection ?? "knowledge_base";
  const dimensions = options.dimensions ?? EMBEDDING_DIMENSIONS;
  const passages = options.passages ??
    await loadDocPassages(options.root ?? new URL("../../", import.meta.url));
  const rows: MilvusRow[] = passages.map((p) => ({
    id: p.id,
    text: p.text,
    source: p.source,
    title: p.title,
    vector: embedText(p.text, dimensions),
  }));
  const logger = options.logger;

  function search(body: Record<string, unknown>): Record<string, unknown>[] {
    const annsField = body.annsField ?? "vector";
    if (annsField !== "vector") throw new ParameterError(`field ${annsField} not exist`);
    const data = body.data;
    if (!Array.isArray(data) || data.length === 0 || !data.every(isNumberArray)) {
      throw new ParameterError("data must be a list of float vectors");
    }
    for (const vector of data) {
      if (vector.length !== dimensions) {
        throw new ParameterError(
          `the dim (${vector.length}) of field data(vector) is not equal to schema dim (${dimensions})`,
        );
      }
    }
    const limit = body.limit ?? 100;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 16384) {
      throw new ParameterError(`limit ${String(limit)} is not an integer in [1, 16384]`);
    }
    const params = isRecord(body.searchParams) ? body.searchParams : {};
    const metric = params.metricType ?? "COSINE";
    if (metric !== "COSINE" && metric !== "IP" && metric !== "L2") {
      throw new ParameterError(`metric type ${String(metric)} does not match the index (COSINE)`);
    }
    const fields = Array.isArray(body.outputFields) ? body.outputFields.map(String) : [];
    const matches = parseFilter(body.filter);
    const candidates = rows.filter(matches);
    const hits: Record<string, unknown>[] = [];
    for (const query of data) {
      const scored = candidates.map((row) => ({
        row,
        distance: distance(metric, query, row.vector),
      }));
      scored.sort((a, b) => metric === "L2" ? a.distance - b.distance : b.distance - a.distance);
      for (const { row, distance } of scored.slice(0, limit)) {
        hits.push({ ...pick(row, fields), distance });
      }
    }
    return hits;
  }

  const server = serveStandIn({
    name: "milvus",
    port: options.port,
    logger,
    errorBody: (_status, message) => ({ code: 1100, message }),
    routes: {
      async "POST /v2/vectordb/entities/search"(request) {
        const body = await readJsonObject(request);
        if (typeof body.collectionName !== "string" || body.collectionName === "") {
          logger?.warn("Rejected a search", { reason: "no collectionName" });
          return Response.json({ code: 1100, message: "invalid parameter: collectionName" });
        }
        if (body.collectionName !== collection) {
          logger?.warn("Rejected a search", { collection: body.collectionName });
          return Response.json({
            code: 100,
            message: `collection not found[collection=${body.collectionName}]`,
          });
        }
        try {
          return Response.json({ code: 0, cost: 0, data: search(body) });
        } catch (error) {
          if (!(error instanceof ParameterError)) throw error;
          logger?.warn("Rejected a search", { reason: error.message });
          return Response.json({ code: 1100, message: `invalid parameter: ${error.message}` });
        }
      },
    },
  });
  const sources = new Set(passages.map((p) => p.source));
  return {
    url: server.url,
    collection,
    rows,
    readiness: {
      backend: "milvus",
      url: server.url,
      standIn: `in-memory "${collection}", ${rows.length} passages of ${
        [...sources].join(", ") || "no documents"
      }`,
      ok: rows.length > 0,
      ...(rows.length === 0 ? { hint: "no README.md or docs/*.md found to seed it" } : {}),
    },
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
}

function distance(metric: string, a: readonly number[], b: readonly number[]): number {
  let sum = 0;
  if (metric === "L2") {
    for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
    return sum;
  }
  // COSINE over unit vectors is the dot product; a query that is not unit is normalised.
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    sum += a[i]! * b[i]!;
    norm += a[i]! * a[i]!;
  }
  return metric === "COSINE" && norm > 0 ? sum / Math.sqrt(norm) : sum;
}

function pick(row: MilvusRow, fields: readonly string[]): Record<string, unknown> {
  const wanted = fields.includes("*")
    ? Object.keys(row).filter((k) => k !== "vector")
    : ["id", ...fields.filter((f) => f !== "id")];
  const out: Record<string, unknown> = {};
  for (const field of wanted) if (field in row) out[field] = row[field];
  return out;
}

/** Parses `a == "x" and b in [1, 2]`; anything else is a parameter error. */
function parseFilter(filter: unknown): (row: MilvusRow) => boolean {
  if (filter === undefined || filter === "") return () => true;
  if (typeof filter !== "string") throw new ParameterError("filter must be a string");
  const clauses = filter.split(/\s+and\s+/i).map((clause) => {
    const match = /^\s*(\w+)\s*(==|in)\s*(.+?)\s*$/.exec(clause);
    if (!match) throw new ParameterError(`cannot parse expression: ${filter}`);
    const [, field, op, raw] = match;
    let value: unknown;
    try {
      value = JSON.parse(raw!);
    } catch {
      throw new ParameterError(`cannot parse expression: ${filter}`);
    }
    if (op === "in" && !Array.isArray(value)) {
      throw new ParameterError(`cannot parse expression: ${filter}`);
    }
    const values = op === "in" ? value as unknown[] : [value];
    return (row: MilvusRow) => values.includes(row[field!]);
  });
  return (row) => clauses.every((clause) => clause(row));
}
