/**
 * Local stand-ins for the GPU services, for the local stack and the
 * end-to-end tests: each speaks exactly the HTTP API of SYSTEM.md section 7
 * that the project's clients speak, on a free loopback port, and is named
 * as a stand-in wherever it reports itself.
 *
 * | Backend    | Stand-in                                                   | File            |
 * | ---------- | ---------------------------------------------------------- | --------------- |
 * | LLM        | extractive answers from the retrieved context, paced       | `llm.ts`        |
 * | Embeddings | hashed bag of words, 384 dimensions                        | `embeddings.ts` |
 * | Milvus     | in-memory search over README.md and docs/*.md              | `milvus.ts`     |
 * | Reranker   | term overlap (Cohere and TEI shapes)                       | `reranker.ts`   |
 * | TTS        | flite (and espeak-ng), XTTS and OpenAI shapes              | `tts.ts`        |
 * | STT        | pocketsphinx, general English model, OpenAI shape          | `stt.ts`        |
 *
 * {@linkcode startLocalBackends} starts them all and returns their URLs, the
 * environment variables that point the services at them, and a readiness
 * line per backend that names the stand-in and, when a program is missing,
 * what to install (the speech stand-ins then fall back to a tone and a
 * placeholder text, so the stack still runs).
 *
 * Requires `--allow-net=127.0.0.1`, `--allow-read` (the docs, the speech
 * model, temporary files), `--allow-write` (temporary files), `--allow-run`
 * (flite, espeak-ng, sox, pocketsphinx_continuous) and `--allow-env=PATH`.
 *
 * @example Start everything, print the summary, stop
 * ```ts ignore
 * import { startLocalBackends } from "./scripts/local_backends/mod.ts";
 *
 * await using backends = await startLocalBackends();
 * for (const line of backends.summary()) console.log(line);
 * console.log(backends.env.VLLM_URL); // http://127.0.0.1:<port>
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { startEmbeddingsStandIn } from "./embeddings.ts";
import { type LlmStandIn, type LlmStandInOptions, startLlmStandIn } from "./llm.ts";
import { type MilvusStandIn, startMilvusStandIn } from "./milvus.ts";
import { startRerankerStandIn } from "./reranker.ts";
import type { Readiness, StandIn } from "./_server.ts";
import { startSttStandIn } from "./stt.ts";
import { startTtsStandIn, type TtsStandIn } from "./tts.ts";

export type { Readiness, StandIn } from "./_server.ts";
export { type LlmStandIn, type LlmStandInOptions, startLlmStandIn } from "./llm.ts";
export { startEmbeddingsStandIn } from "./embeddings.ts";
export { type MilvusStandIn, startMilvusStandIn } from "./milvus.ts";
export { startRerankerStandIn } from "./reranker.ts";
export { startTtsStandIn, type TtsStandIn } from "./tts.ts";
export { startSttStandIn } from "./stt.ts";

/** The backends, by the name the summary uses. */
export type BackendName = "llm" | "embeddings" | "reranker" | "milvus" | "tts" | "stt";

/** Options of {@linkcode startLocalBackends}. */
export interface LocalBackendsOptions {
  /**
   * A logger per backend (for bad requests and failures).
   *
   * @default none: the stand-ins log nothing
   */
  logger?: (backend: BackendName) => Logger | undefined;
  /**
   * The LLM's pace and model name.
   *
   * @default 150 ms to the first token, then one every 30 ms
   */
  llm?: Pick<LlmStandInOptions, "firstTokenDelayMs" | "tokenIntervalMs" | "model">;
  /**
   * The collection the docs are seeded into (chat-handler's `COLLECTION_NAME`).
   *
   * @default "knowledge_base"
   */
  collection?: string;
  /**
   * The project root whose README.md and docs/*.md seed the collection.
   *
   * @default this repository
   */
  root?: URL;
}

/** The running stand-ins. */
export interface LocalBackends extends AsyncDisposable {
  /** The base URL of each. */
  readonly urls: Readonly<Record<BackendName, string>>;
  /**
   * The environment that points the services at them: `VLLM_URL`,
   * `EMBEDDINGS_URL`, `RERANKER_URL`, `MILVUS_HOST`, `MILVUS_PORT`,
   * `COLLECTION_NAME`, `TTS_URL`, `WHISPER_URL`.
   */
  readonly env: Readonly<Record<string, string>>;
  /** One entry per backend, in the order of `urls`. */
  readonly readiness: readonly Readiness[];
  /** The LLM stand-in (its recent generations). */
  readonly llm: LlmStandIn;
  /** The Milvus stand-in (its collection). */
  readonly milvus: MilvusStandIn;
  /** The TTS stand-in (its voices). */
  readonly tts: TtsStandIn;
  /**
   * The readiness as printable lines, one per backend.
   *
   * @returns The lines.
   */
  summary(): string[];
  /** Stops every stand-in. */
  close(): Promise<void>;
}

/**
 * One printable readiness line: backend, URL, stand-in, and what to install when something is missing.
 *
 * @param readiness The readiness.
 * @returns The line.
 */
export function formatReadiness(readiness: Readiness): string {
  const state = readiness.ok ? "stand-in" : "FALLBACK";
  const hint = readiness.hint ? ` (missing: ${readiness.hint})` : "";
  return `${readiness.backend.padEnd(10)} ${
    readiness.url.padEnd(22)
  } ${state}: ${readiness.standIn}${hint}`;
}

/**
 * Starts every stand-in on a free loopback port.
 *
 * @param options Loggers, LLM pace, collection and docs root.
 * @returns The running stand-ins.
 */
export async function startLocalBackends(
  options: LocalBackendsOptions = {},
): Promise<LocalBackends> {
  const logger = (name: BackendName) => options.logger?.(name);
  const started: StandIn[] = [];
  const keep = <T extends StandIn>(standIn: T): T => (started.push(standIn), standIn);
  const closeAll = async () => {
    await Promise.all(started.map((s) => s.close()));
  };
  try {
    const llm = keep(startLlmStandIn({ ...options.llm, logger: logger("llm") }));
    const embeddings = keep(startEmbeddingsStandIn({ logger: logger("embeddings") }));
    const reranker = keep(startRerankerStandIn({ logger: logger("reranker") }));
    const milvus = keep(
      await startMilvusStandIn({
        logger: logger("milvus"),
        ...(options.collection ? { collection: options.collection } : {}),
        ...(options.root ? { root: options.root } : {}),
      }),
    );
    const tts = keep(startTtsStandIn({ logger: logger("tts") }));
    const stt = keep(startSttStandIn({ logger: logger("stt") }));
    const urls = {
      llm: llm.url,
      embeddings: embeddings.url,
      reranker: reranker.url,
      milvus: milvus.url,
      tts: tts.url,
      stt: stt.url,
    };
    const milvusUrl = new URL(milvus.url);
    const env = {
      VLLM_URL: llm.url,
      EMBEDDINGS_URL: embeddings.url,
      RERANKER_URL: reranker.url,
      MILVUS_HOST: milvusUrl.hostname,
      MILVUS_PORT: milvusUrl.port,
      COLLECTION_NAME: milvus.collection,
      TTS_URL: tts.url,
      WHISPER_URL: stt.url,
    };
    const readiness = [llm, embeddings, reranker, milvus, tts, stt].map((s) => s.readiness);
    return {
      urls,
      env,
      readiness,
      llm,
      milvus,
      tts,
      summary: () => readiness.map(formatReadiness),
      close: closeAll,
      [Symbol.asyncDispose]: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
