/**
 * Stand-in for the embeddings service (the GPU embedding model): the OpenAI
 * `POST /v1/embeddings {model, input}` shape, answering
 * `{data: [{index, embedding}]}` with deterministic vectors. A vector is a
 * hashed bag of the text's terms (stop words dropped, lightly stemmed, with
 * sub-linear counts and a hashed sign per term), normalised to length 1, so
 * texts that share words are close under cosine similarity. The Milvus
 * stand-in seeds its collection with the same function.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Embed through the project's client
 * ```ts ignore
 * import { startEmbeddingsStandIn } from "./embeddings.ts";
 * import { createEmbeddingsClient } from "../../handler_base/clients/embeddings.ts";
 *
 * await using server = startEmbeddingsStandIn();
 * const client = createEmbeddingsClient({ baseUrl: server.url });
 * console.log((await client.embedOne("What is JetStream?")).length); // 384
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { terms } from "./_text.ts";
import { HttpError, openAiError, readJsonObject, serveStandIn, type StandIn } from "./_server.ts";

/** The vector length of the stand-in's embeddings (that of common small embedding models). */
export const EMBEDDING_DIMENSIONS = 384;

/** The most texts one request may embed. */
const MAX_INPUTS = 2048;

/**
 * The deterministic embedding of a text.
 *
 * @param text The text.
 * @param dimensions The vector length.
 * @returns A unit vector (all zeros for a text without terms).
 */
export function embedText(text: string, dimensions: number = EMBEDDING_DIMENSIONS): number[] {
  const counts = new Map<string, number>();
  for (const term of terms(text)) counts.set(term, (counts.get(term) ?? 0) + 1);
  const vector = new Array<number>(dimensions).fill(0);
  for (const [term, count] of counts) {
    const h = fnv1a(term);
    const sign = (h & 0x80000000) === 0 ? 1 : -1;
    vector[(h & 0x7fffffff) % dimensions]! += sign * (1 + Math.log(count));
  }
  const norm = Math.hypot(...vector);
  return norm === 0 ? vector : vector.map((v) => v / norm);
}

function fnv1a(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Options of {@linkcode startEmbeddingsStandIn}. */
export interface EmbeddingsStandInOptions {
  /**
   * The vector length.
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

/**
 * Starts the embeddings stand-in.
 *
 * @param options Vector length, port and logger.
 * @returns The running stand-in.
 */
export function startEmbeddingsStandIn(options: EmbeddingsStandInOptions = {}): StandIn {
  const dimensions = options.dimensions ?? EMBEDDING_DIMENSIONS;
  const server = serveStandIn({
    name: "embeddings",
    port: options.port,
    logger: options.logger,
    errorBody: openAiError,
    routes: {
      async "POST /v1/embeddings"(request) {
        const body = await readJsonObject(request);
        const input = typeof body.input === "string" ? [body.input] : body.input;
        if (!Array.isArray(input) || !input.every((t) => typeof t === "string")) {
          throw new HttpError(400, "Cannot embed: input must be a string or a list of strings");
        }
        if (input.length > MAX_INPUTS) {
          throw new HttpError(400, `Cannot embed: more than ${MAX_INPUTS} inputs`);
        }
        const tokens = input.reduce((n, text) => n + terms(text).length, 0);
        return Response.json({
          object: "list",
          model: typeof body.model === "string" ? body.model : "stand-in-hashed-bag-of-words",
          data: input.map((text, index) => ({
            object: "embedding",
            index,
            embedding: embedText(text, dimensions),
          })),
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        });
      },
    },
  });
  return {
    url: server.url,
    readiness: {
      backend: "embeddings",
      url: server.url,
      standIn: `hashed bag of words, ${dimensions} dimensions`,
      ok: true,
    },
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
}
