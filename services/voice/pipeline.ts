/**
 * One voice turn, as plain functions over the backend clients: speech to
 * text, optional retrieval, a streamed LLM answer cut into sentences, and
 * each sentence synthesized as soon as it is complete while the LLM goes on.
 *
 * Order and overlap:
 * - STT (Whisper) -> retrieval (when enabled; a failure degrades to no
 *   context, {@linkcode retrieveOrDegrade}) -> LLM stream.
 * - The LLM's deltas go through a {@linkcode SentenceChunker}; each sentence
 *   is made {@linkcode speakable} and queued for TTS at once. Up to
 *   `ttsParallelism` sentences are synthesized at the same time (streamed
 *   from the backend), and their audio is handed to `onAudio` strictly in
 *   sentence order, each piece as soon as it is its turn, cut at whole
 *   sample frames.
 * - An empty transcription is answered with `noSpeechReply`, spoken, without
 *   calling the LLM.
 *
 * Each stage runs in a child span of the caller's span (`voice.stt`,
 * `voice.rag`, `voice.llm`, one `voice.tts` per sentence) with its duration
 * as `voice.duration_ms`; the caller's span gets a `voice.first_audio` event.
 *
 * Failures never throw: the first failure of any stage (or the caller's
 * signal: a deadline, a shutdown) cancels every stage still running (the LLM
 * stream and the TTS calls in flight are closed) and is returned as
 * `error`, beside what was obtained before it. No audio is handed out after
 * the function returned.
 *
 * Requires `--allow-net` to the backends (through the clients).
 *
 * @example Run one turn
 * ```ts ignore
 * import { runVoicePipeline } from "./pipeline.ts";
 *
 * const outcome = await runVoicePipeline(
 *   { audio, language: "en", collection: "" },
 *   { stt, llm, tts, rag },
 *   { minSentenceChars: 20 },
 *   { signal, log, span, tracer, onAudio: (pcm, format) => play(pcm, format) },
 * );
 * console.log(outcome.transcription, outcome.response, outcome.error);
 * ```
 *
 * @module
 */
import { type Context, context, type Span, trace, type Tracer } from "@opentelemetry/api";
import { abortable } from "@homelab/handler-base/async";
import type { LlmClient } from "@homelab/handler-base/clients/llm";
import {
  type RagClients,
  type RetrievedSource,
  retrieveOrDegrade,
} from "@homelab/handler-base/clients/rag";
import type { SttClient } from "@homelab/handler-base/clients/stt";
import type { AudioFormat, TtsClient } from "@homelab/handler-base/clients/tts";
import { FrameAligner } from "@homelab/handler-base/clients/wav";
import type { Logger } from "@homelab/handler-base/log";
import { chatMessages } from "@homelab/handler-base/prompt";
import { recordError } from "@homelab/handler-base/telemetry";
import { languageCode, ttsLanguage } from "./audio.ts";
import { SentenceChunker, speakable } from "./sentences.ts";

/** The system prompt used when `VOICE_SYSTEM_PROMPT` gives none: answers meant to be heard. */
export const DEFAULT_VOICE_SYSTEM_PROMPT: string =
  "You are a friendly voice assistant. Your answer is read aloud: answer in a few short, " +
  "plain sentences, without lists, tables, Markdown, code or URLs. When context is provided, " +
  "base your answer on it, and say so when it does not contain the answer.";

/** The answer to a request in which no speech was recognised. */
export const DEFAULT_NO_SPEECH_REPLY = "Sorry, I didn't catch that. Could you say it again?";

/** The backend clients of a voice turn. */
export interface VoiceClients {
  /** Speech to text (Whisper). */
  stt: SttClient;
  /** The chat completions client; only its `stream` is used. */
  llm: LlmClient;
  /** Text to speech; only its `synthesizeStream` is used. */
  tts: TtsClient;
  /** Embeddings, Milvus and reranker; without them retrieval is skipped. */
  rag?: RagClients;
}

/** Options of {@linkcode runVoicePipeline}. */
export interface VoicePipelineOptions {
  /**
   * The system prompt.
   *
   * @default DEFAULT_VOICE_SYSTEM_PROMPT
   */
  systemPrompt?: string;
  /**
   * Retrieve context for the question (when RAG clients are given).
   *
   * @default true
   */
  enableRag?: boolean;
  /**
   * The collection of requests that name none.
   *
   * @default the Milvus client's collection
   */
  collection?: string;
  /**
   * How many hits retrieval fetches.
   *
   * @default 5
   */
  topK?: number;
  /**
   * Rerank the hits (when a reranker client is given).
   *
   * @default true
   */
  rerank?: boolean;
  /**
   * How many reranked hits the context keeps.
   *
   * @default 3
   */
  rerankKeep?: number;
  /**
   * The shortest sentence synthesized on its own, in characters.
   *
   * @default 20
   */
  minSentenceChars?: number;
  /**
   * The longest piece synthesized at once, in characters.
   *
   * @default 220
   */
  maxSentenceChars?: number;
  /**
   * How many sentences are synthesized at the same time (their audio still
   * goes out in order).
   *
   * @default 2
   */
  ttsParallelism?: number;
  /**
   * The most tokens of an answer.
   *
   * @default the LLM client's `maxTokens`
   */
  maxTokens?: number;
  /**
   * The TTS speaker.
   *
   * @default the TTS client's default speaker
   */
  speaker?: string;
  /**
   * The language of the speech when neither the request nor the STT backend
   * names one.
   *
   * @default "en"
   */
  defaultLanguage?: string;
  /**
   * What an empty transcription is answered with.
   *
   * @default DEFAULT_NO_SPEECH_REPLY
   */
  noSpeechReply?: string;
}

/** One voice turn's input, already checked. */
export interface VoiceTurn {
  /** WAV, or raw PCM 16 kHz mono s16le. */
  audio: Uint8Array;
  /** The spoken language (ISO 639-1), or "" to let the STT backend detect it. */
  language: string;
  /** The Milvus collection, or "" for the default. */
  collection: string;
}

/** Where a voice turn runs: its signal, its log and span, and where audio goes. */
export interface VoiceRun {
  /** Cancels every stage (the deadline or the shutdown). */
  signal: AbortSignal;
  /** Logs degradations. */
  log: Logger;
  /** The span the stage spans are children of. */
  span: Span;
  /** The tracer of the stage spans. */
  tracer: Tracer;
  /**
   * Receives the audio in order, in whole sample frames, as soon as each
   * piece is due. Never called after the pipeline returned.
   */
  onAudio(pcm: Uint8Array, format: AudioFormat): void;
}

/** What a voice turn obtained. */
export interface VoiceOutcome {
  /** What the STT backend heard ("" when it failed or heard nothing). */
  transcription: string;
  /** The answer's text, as far as it was written. */
  response: string;
  /** The retrieved sources, best first (none without RAG). */
  sources: RetrievedSource[];
  /** The audio handed to `onAudio`, in order. */
  pcm: Uint8Array[];
  /** The format of that audio, once there was some. */
  format: AudioFormat | undefined;
  /** How many sentences were queued for synthesis. */
  sentences: number;
  /** Whether the LLM was called (not for an empty transcription or an earlier failure). */
  usedLlm: boolean;
  /** The failure that stopped the turn, or undefined when it completed. */
  error: unknown;
}

/** Runs `fn` in a child span of `parent`, recording its duration and any failure. */
async function stage<T>(
  tracer: Tracer,
  parent: Context,
  name: string,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const span = tracer.startSpan(name, {}, parent);
  const started = performance.now();
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    recordError(span, error);
    throw error;
  } finally {
    span.setAttribute("voice.duration_ms", Math.round((performance.now() - started) * 100) / 100);
    span.end();
  }
}

/** A language the STT backend reported, as an ISO code, or "" when it is not one. */
function reportedLanguage(language: string | undefined): string {
  try {
    return languageCode(language ?? "");
  } catch {
    return "";
  }
}

/** One sentence on its way through TTS. */
interface SpeechJob {
  readonly index: number;
  readonly text: string;
  /** Whole-frame audio received and not yet handed out. */
  readonly pieces: Uint8Array[];
  format?: AudioFormat;
  finished: boolean;
  task?: Promise<void>;
}

interface SpeechQueueOptions {
  tts: TtsClient;
  language: string;
  speaker: string | undefined;
  parallelism: number;
  signal: AbortSignal;
  log: Logger;
  /** Runs one synthesis in its span. */
  inSpan(job: SpeechJob, fn: (span: Span) => Promise<void>): Promise<void>;
  onAudio(pcm: Uint8Array, format: AudioFormat): void;
  /** Called with the first failure of a synthesis. */
  onError(error: unknown): void;
}

/**
 * Sentences in, audio out in sentence order: up to `parallelism` syntheses
 * run at once, the head sentence's pieces go out as they arrive, later ones
 * wait in memory for their turn.
 */
class SpeechQueue {
  readonly #options: SpeechQueueOptions;
  readonly #jobs: SpeechJob[] = [];
  /** How many jobs were started. */
  #started = 0;
  /** The job whose audio goes out now. */
  #head = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  /** Resolves when every sentence's audio went out; rejects on the first failure. */
  readonly done: Promise<void>;

  constructor(options: SpeechQueueOptions) {
    this.#options = options;
    this.done = this.#emit();
    this.done.catch(() => {});
  }

  get count(): number {
    return this.#jobs.length;
  }

  add(sentence: string): void {
    const text = speakable(sentence);
    if (text === "" || this.#ended) return;
    this.#jobs.push({ index: this.#jobs.length, text, pieces: [], finished: false });
    this.#pump();
    this.#notify();
  }

  end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** Resolves once the emitter and every synthesis have stopped. */
  async settled(): Promise<void> {
    await this.done.catch(() => {});
    await Promise.allSettled(this.#jobs.map((job) => job.task));
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #pump(): void {
    const { parallelism, signal } = this.#options;
    while (
      !signal.aborted && this.#started < this.#jobs.length &&
      this.#started - this.#head < parallelism
    ) {
      const job = this.#jobs[this.#started++]!;
      job.task = this.#synthesize(job);
    }
  }

  async #synthesize(job: SpeechJob): Promise<void> {
    const { tts, language, speaker, signal, log } = this.#options;
    try {
      await this.#options.inSpan(job, async (span) => {
        const stream = tts.synthesizeStream(job.text, {
          language,
          signal,
          ...(speaker ? { speaker } : {}),
        });
        const { format } = stream;
        job.format = format;
        const aligner = new FrameAligner(format.channels * (format.bitDepth / 8));
        let bytes = 0;
        for await (const piece of stream) {
          const whole = aligner.push(piece);
          if (whole.length === 0) continue;
          bytes += whole.length;
          job.pieces.push(whole);
          this.#notify();
        }
        span.setAttribute("voice.audio_bytes", bytes);
        if (aligner.rest().length > 0) {
          log.warn("Dropping an incomplete sample frame at the end of a sentence", {
            bytes: aligner.rest().length,
          });
        }
      });
    } catch (error) {
      this.#options.onError(error);
    } finally {
      job.finished = true;
      this.#notify();
    }
  }

  async #emit(): Promise<void> {
    const { signal } = this.#options;
    for (;;) {
      signal.throwIfAborted();
      const job = this.#jobs[this.#head];
      if (job) {
        while (job.pieces.length > 0) {
          signal.throwIfAborted();
          this.#options.onAudio(job.pieces.shift()!, job.format!);
        }
        if (job.finished) {
          this.#head++;
          this.#pump();
          continue;
        }
      } else if (this.#ended) {
        return;
      }
      await abortable(new Promise<void>((resolve) => this.#wake = resolve), signal);
    }
  }
}

/**
 * Runs one voice turn: STT, optional retrieval, the streamed LLM answer and
 * its sentence-by-sentence synthesis (see the module doc).
 *
 * @param turn The checked audio, language and collection.
 * @param clients The backend clients.
 * @param options Prompt, retrieval, chunking and synthesis settings.
 * @param run The signal, log, span and tracer, and the audio sink.
 * @returns What was obtained, and the error that stopped the turn if one did.
 * @throws {RangeError} When the sentence bounds are invalid (a programming error).
 *
 * @example Collect the audio of one turn
 * ```ts ignore
 * import { runVoicePipeline } from "./pipeline.ts";
 *
 * const pieces: Uint8Array[] = [];
 * const outcome = await runVoicePipeline(turn, clients, {}, {
 *   signal: AbortSignal.timeout(30_000),
 *   log,
 *   span,
 *   tracer,
 *   onAudio: (pcm) => pieces.push(pcm),
 * });
 * ```
 */
export async function runVoicePipeline(
  turn: VoiceTurn,
  clients: VoiceClients,
  options: VoicePipelineOptions,
  run: VoiceRun,
): Promise<VoiceOutcome> {
  const {
    systemPrompt = DEFAULT_VOICE_SYSTEM_PROMPT,
    enableRag = true,
    topK = 5,
    rerank = true,
    rerankKeep = 3,
    ttsParallelism = 2,
    defaultLanguage = "en",
    noSpeechReply = DEFAULT_NO_SPEECH_REPLY,
  } = options;
  const chunker = new SentenceChunker({
    ...(options.minSentenceChars !== undefined ? { minChars: options.minSentenceChars } : {}),
    ...(options.maxSentenceChars !== undefined ? { maxChars: options.maxSentenceChars } : {}),
  });
  const started = performance.now();
  const controller = new AbortController();
  const signal = AbortSignal.any([run.signal, controller.signal]);
  const parent = trace.setSpan(context.active(), run.span);
  const outcome: VoiceOutcome = {
    transcription: "",
    response: "",
    sources: [],
    pcm: [],
    format: undefined,
    sentences: 0,
    usedLlm: false,
    error: undefined,
  };
  let speech: SpeechQueue | undefined;

  function onAudio(pcm: Uint8Array, format: AudioFormat): void {
    if (outcome.pcm.length === 0) {
      const ms = Math.round((performance.now() - started) * 100) / 100;
      run.span.addEvent("voice.first_audio", { "voice.first_audio_ms": ms });
      run.span.setAttribute("voice.first_audio_ms", ms);
    }
    outcome.pcm.push(pcm);
    outcome.format ??= format;
    run.onAudio(pcm, format);
  }

  try {
    const heard = await stage(run.tracer, parent, "voice.stt", async (span) => {
      const result = await clients.stt.transcribe(turn.audio, {
        ...(turn.language ? { language: turn.language } : {}),
        signal,
      });
      span.setAttribute("voice.transcript_chars", result.text.length);
      if (result.language) span.setAttribute("voice.language", result.language);
      return result;
    });
    outcome.transcription = heard.text;
    speech = new SpeechQueue({
      tts: clients.tts,
      language: ttsLanguage(turn.language || reportedLanguage(heard.language) || defaultLanguage),
      speaker: options.speaker,
      parallelism: ttsParallelism,
      signal,
      log: run.log,
      inSpan: (job, fn) =>
        stage(run.tracer, parent, "voice.tts", (span) => {
          span.setAttributes({ "voice.sentence_index": job.index, "voice.chars": job.text.length });
          return fn(span);
        }),
      onAudio,
      onError: (error) => controller.abort(error),
    });

    if (heard.text === "") {
      run.log.info("Answering without the LLM: no speech was recognised");
      run.span.addEvent("voice.no_speech");
      outcome.response = noSpeechReply;
      speech.add(noSpeechReply);
    } else {
      let contextBlock = "";
      const rag = clients.rag;
      if (enableRag && rag) {
        const retrieval = await stage(run.tracer, parent, "voice.rag", async (span) => {
          const found = await retrieveOrDegrade(heard.text, rag, {
            topK,
            keep: rerankKeep,
            rerank: rerank && rag.reranker !== undefined,
            ...(turn.collection || options.collection
              ? { collection: turn.collection || options.collection }
              : {}),
            signal,
            logger: run.log,
            span: run.span,
            eventPrefix: "voice",
          });
          span.setAttribute("voice.sources", found?.sources.length ?? 0);
          return found;
        });
        outcome.sources = retrieval?.sources ?? [];
        contextBlock = retrieval?.context ?? "";
      }
      run.span.setAttribute("voice.used_rag", outcome.sources.length > 0);
      const messages = chatMessages(systemPrompt, heard.text, contextBlock);
      outcome.usedLlm = true;
      await stage(run.tracer, parent, "voice.llm", async (span) => {
        let deltas = 0;
        const stream = clients.llm.stream(messages, {
          ...(options.maxTokens ? { maxTokens: options.maxTokens } : {}),
          signal,
        });
        for await (const delta of stream) {
          deltas++;
          outcome.response += delta;
          for (const sentence of chunker.push(delta)) speech!.add(sentence);
        }
        for (const sentence of chunker.flush()) speech!.add(sentence);
        span.setAttributes({
          "voice.deltas": deltas,
          "voice.response_chars": outcome.response.length,
          "voice.sentences": speech!.count,
        });
        if (stream.finishReason) span.setAttribute("llm.finish_reason", stream.finishReason);
      });
    }
    speech.end();
    await speech.done;
  } catch (error) {
    // The first failure wins: the caller's deadline or shutdown, then a TTS
    // failure that stopped the LLM, then whatever was thrown here.
    const cause = run.signal.aborted
      ? run.signal.reason
      : controller.signal.aborted
      ? controller.signal.reason
      : error;
    controller.abort(cause);
    outcome.error = cause;
    await speech?.settled();
  }
  outcome.sentences = speech?.count ?? 0;
  return outcome;
}
