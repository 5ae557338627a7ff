/**
 * One transcription session of stt-module: audio chunks in, results out.
 *
 * Chunks are converted to mono 16-bit PCM at a VAD rate (`audio.ts`), cut
 * into frames, classified by the WebRTC VAD (`vad.ts`) and grouped into
 * speech segments (`segmenter.ts`). Only segments reach the backend:
 * - while a segment grows, an interim result (`is_partial`) of the segment
 *   so far every `partialMs` of segment audio (stream time), at most one in
 *   flight (a partial that would wait is skipped);
 * - at the segment's end, the final result (`is_final`).
 *
 * Results are published in the order their requests were made, whatever
 * order the backend answers in, each with the next `sequence` (from 0, one
 * counter per session); empty transcripts are not published. A backend
 * failure publishes an ErrorResponse on the same subject and the session
 * goes on. Speech that starts while the session is `responding` publishes
 * an STTInterrupt at once (before any result of that speech) and the
 * session is `listening` again.
 *
 * Memory is bounded: at most one frame of unconverted bytes, the pre-roll,
 * one open segment of at most `maxSegmentMs`, and `maxPending` segments
 * waiting for the backend (when they are all taken, {@linkcode SttSession.chunk}
 * waits, which holds back only this session).
 *
 * The session is not safe for concurrent calls: run its calls one at a time
 * (the service does so through a `SessionTable`).
 *
 * Needs what the STT client needs (`--allow-net=<whisper>`).
 *
 * @example
 * ```ts ignore
 * const session = new SttSession({ sessionId: "s1", fvad, stt, sink, settings, log });
 * session.start({ sampleRate: 16000 });
 * await session.chunk(pcm);
 * await session.finish("end"); // final result, then every result is out
 * ```
 *
 * @module
 */
import type { SttClient } from "@homelab/handler-base/clients/stt";
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { InvalidArgumentError } from "@homelab/handler-base/errors";
import type { Logger } from "@homelab/handler-base/log";
import type { SessionCloseReason } from "@homelab/handler-base/sessions";
import { type DeclaredFormat, PcmConverter, resolveFormat } from "./audio.ts";
import { type Segment, type SegmentEvent, SpeechSegmenter } from "./segmenter.ts";
import { createVad, type FvadModule, type Vad, type VadMode } from "./vad.ts";

/** The session states of the contract. */
export type SessionState = "listening" | "responding";

/** The timing and limits of sessions (from the `STT_*` variables). */
export interface SttSettings {
  /** VAD aggressiveness, 0-3. */
  vadMode: VadMode;
  /** VAD frame length: 10, 20 or 30 ms. */
  frameMs: number;
  /** Audio kept before the speech trigger. */
  prerollMs: number;
  /** Trailing silence that ends a segment. */
  silenceMs: number;
  /** Segments with less voiced audio are dropped. */
  minSpeechMs: number;
  /** Interim result interval in segment audio; 0 disables interim results. */
  partialMs: number;
  /** Longest segment (then a final is forced). */
  maxSegmentMs: number;
  /** Segments waiting for the backend per session. */
  maxPending: number;
  /** Language passed to the backend, if any. */
  language?: string;
}

/** Where a session's results go. */
export interface SttSink {
  /** A transcription (sequence assigned). */
  transcription(result: TranscriptionResult): void;
  /** Barge-in. */
  interrupt(speakerId: string): void;
  /** A failure the client should see (unsupported format, backend down). */
  error(error: unknown): void;
}

/** What the sink gets for one transcription. */
export interface TranscriptionResult {
  /** The text, non-empty. */
  readonly transcript: string;
  /** Strictly increasing per session, from 0. */
  readonly sequence: number;
  /** An interim result of a segment still growing. */
  readonly isPartial: boolean;
  /** The result of a finished segment. */
  readonly isFinal: boolean;
  /** The session state when it was published. */
  readonly state: SessionState;
  /** The last speaker id the client named. */
  readonly speakerId: string;
}

/** What a session is made of. */
export interface SttSessionOptions {
  /** The session id. */
  sessionId: string;
  /** The compiled VAD module. */
  fvad: FvadModule;
  /** The backend. */
  stt: SttClient;
  /** Where results go. */
  sink: SttSink;
  /** Timing and limits. */
  settings: SttSettings;
  /** The logger (with the session id). */
  log: Logger;
}

interface Pipeline {
  readonly converter: PcmConverter;
  vad: Vad | undefined;
  segmenter: SpeechSegmenter | undefined;
  rest: Int16Array;
  rate: number;
}

/** One session; see the module doc. */
export class SttSession {
  readonly sessionId: string;
  #state: SessionState = "listening";
  #speakerId = "";
  #pipeline: Pipeline | undefined;
  #refused = false;
  #sequence = 0;
  #outputs: Promise<void> = Promise.resolve();
  #pending = 0;
  #partialInFlight = false;
  #lastPartialMs = 0;
  #room: Array<() => void> = [];
  readonly #options: SttSessionOptions;
  readonly #abort = new AbortController();

  /**
   * Creates a session in state `listening`, with the default format
   * (16 kHz mono s16le) until a `start` names another.
   *
   * @param options The VAD, backend, sink, settings and logger.
   */
  constructor(options: SttSessionOptions) {
    this.sessionId = options.sessionId;
    this.#options = options;
  }

  /** The session state. */
  get state(): SessionState {
    return this.#state;
  }

  /** Segments sent to the backend and not yet published. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Applies the fields every message may carry (speaker id).
   *
   * @param speakerId The message's `speaker_id` ("" keeps the last one).
   */
  noteSpeaker(speakerId: string): void {
    if (speakerId) this.#speakerId = speakerId;
  }

  /**
   * (Re)starts the stream with a format. An open segment of an earlier
   * format is finished first. An unsupported format is reported through the
   * sink and the session drops audio until a `start` with a good format.
   *
   * @param format The declared format (defaults: 16 kHz, mono, 16-bit PCM).
   */
  async start(format: DeclaredFormat): Promise<void> {
    await this.#flushSegment();
    this.#disposePipeline();
    try {
      const resolved = resolveFormat(format);
      this.#pipeline = {
        converter: new PcmConverter(resolved),
        vad: undefined,
        segmenter: undefined,
        rest: new Int16Array(0),
        rate: 0,
      };
      this.#refused = false;
    } catch (error) {
      this.#refuse(error);
    }
  }

  /**
   * Sets `listening` or `responding`.
   *
   * @param state The new state.
   * @throws {InvalidArgumentError} For any other state.
   */
  setState(state: string): void {
    if (state !== "listening" && state !== "responding") {
      throw new InvalidArgumentError(
        `Cannot change the session state: "${state}" is not listening or responding`,
      );
    }
    this.#state = state;
  }

  /**
   * Takes a chunk of audio: converts, classifies, segments; may start
   * backend calls. Waits when `maxPending` segments already wait for the
   * backend.
   *
   * @param audio Any number of bytes of the stream.
   * @param format The format when no `start` came first (a client that sends chunks only).
   */
  async chunk(audio: Uint8Array, format: DeclaredFormat = {}): Promise<void> {
    if (this.#refused) return;
    if (!this.#pipeline) await this.start(format);
    if (!this.#pipeline) return;
    const pipeline = this.#pipeline!;
    let samples: Int16Array;
    try {
      samples = pipeline.converter.push(audio);
    } catch (error) {
      this.#refuse(error);
      return;
    }
    if (samples.length === 0) return;
    if (!pipeline.vad || pipeline.rate !== pipeline.converter.outputRate) this.#makeVad(pipeline);
    const vad = pipeline.vad!;
    const segmenter = pipeline.segmenter!;
    const frame = vad.frameSamples;
    let all = samples;
    if (pipeline.rest.length > 0) {
      all = new Int16Array(pipeline.rest.length + samples.length);
      all.set(pipeline.rest);
      all.set(samples, pipeline.rest.length);
    }
    let offset = 0;
    for (; offset + frame <= all.length; offset += frame) {
      const piece = all.slice(offset, offset + frame);
      const event = segmenter.push(piece, vad.isSpeech(piece));
      if (event) await this.#onEvent(event);
      if (
        this.#options.settings.partialMs > 0 && segmenter.inSpeech &&
        segmenter.segmentMs - this.#lastPartialMs >= this.#options.settings.partialMs
      ) {
        this.#lastPartialMs = segmenter.segmentMs;
        this.#partial(segmenter, pipeline.rate);
      }
    }
    pipeline.rest = all.slice(offset);
  }

  /**
   * Ends the session: the open segment gets its final result (unless the
   * session was lost to another replica), every result is published, and
   * the VAD is freed.
   *
   * @param reason Why the session closes.
   */
  async finish(reason: SessionCloseReason): Promise<void> {
    if (reason === "lost") {
      this.#abort.abort(new Error("Session moved to another replica"));
    } else {
      await this.#flushSegment();
    }
    await this.#outputs;
    this.#disposePipeline();
  }

  #makeVad(pipeline: Pipeline): void {
    const { settings, fvad } = this.#options;
    pipeline.vad?.[Symbol.dispose]();
    pipeline.rate = pipeline.converter.outputRate;
    pipeline.vad = createVad(fvad, {
      mode: settings.vadMode,
      sampleRate: pipeline.rate,
      frameMs: settings.frameMs,
    });
    pipeline.segmenter = new SpeechSegmenter({
      frameSamples: pipeline.vad.frameSamples,
      frameMs: settings.frameMs,
      prerollMs: settings.prerollMs,
      silenceMs: settings.silenceMs,
      minSpeechMs: settings.minSpeechMs,
      maxSegmentMs: settings.maxSegmentMs,
    });
  }

  async #onEvent(event: SegmentEvent): Promise<void> {
    if (event.type === "start") {
      this.#lastPartialMs = 0;
      if (this.#state === "responding") {
        this.#state = "listening";
        this.#options.sink.interrupt(this.#speakerId);
      }
    } else if (event.type === "end") {
      await this.#final(event.segment, this.#pipeline!.rate);
    } else {
      this.#options.log.debug("Speech too short: dropped", { speech_ms: event.speechMs });
    }
  }

  async #flushSegment(): Promise<void> {
    const event = this.#pipeline?.segmenter?.flush();
    if (event) await this.#onEvent(event);
  }

  #partial(segmenter: SpeechSegmenter, rate: number): void {
    if (this.#partialInFlight || this.#pending >= this.#options.settings.maxPending) return;
    const samples = segmenter.segmentSoFar();
    if (!samples) return;
    this.#partialInFlight = true;
    this.#enqueue(samples, rate, true).finally(() => (this.#partialInFlight = false));
  }

  async #final(segment: Segment, rate: number): Promise<void> {
    while (this.#pending >= this.#options.settings.maxPending) {
      await new Promise<void>((resolve) => this.#room.push(resolve));
    }
    this.#lastPartialMs = 0;
    void this.#enqueue(segment.samples, rate, false);
  }

  /** Starts a backend call now; publishes its result after every earlier one. */
  #enqueue(samples: Int16Array, rate: number, partial: boolean): Promise<void> {
    this.#pending++;
    const { stt, settings, sink, log } = this.#options;
    const wav = wrapPcmAsWav(
      new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength),
      {
        sampleRate: rate,
      },
    );
    const call = stt.transcribe(wav, {
      signal: this.#abort.signal,
      ...(settings.language ? { language: settings.language } : {}),
    }).then(
      (result) => ({ ok: true as const, text: result.text }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const published = this.#outputs.then(async () => {
      const outcome = await call;
      this.#pending--;
      this.#room.shift()?.();
      if (this.#abort.signal.aborted) return;
      if (!outcome.ok) {
        log.warn("Transcription failed", { partial, error: outcome.error });
        sink.error(outcome.error);
        return;
      }
      if (!outcome.text) return;
      sink.transcription({
        transcript: outcome.text,
        sequence: this.#sequence++,
        isPartial: partial,
        isFinal: !partial,
        state: this.#state,
        speakerId: this.#speakerId,
      });
    }).catch((error) => log.error("Cannot publish a result", { error }));
    this.#outputs = published;
    return published;
  }

  #refuse(error: unknown): void {
    this.#refused = true;
    this.#disposePipeline();
    this.#options.log.warn("Refusing the stream", { error });
    this.#options.sink.error(error);
  }

  #disposePipeline(): void {
    this.#pipeline?.vad?.[Symbol.dispose]();
    this.#pipeline = undefined;
  }
}
