/**
 * Cuts a stream of classified frames into speech segments: speech starts
 * when most frames of a short window are voiced, and ends after a run of
 * unvoiced frames (`silenceMs`). A segment starts `prerollMs` before the
 * trigger (the first syllable is quiet and the detector is late), keeps a
 * short tail after the last voiced frame, and is cut at `maxSegmentMs` so
 * that memory and the backend's window stay bounded. Segments with less
 * than `minSpeechMs` of voiced frames are dropped (clicks, coughs, noise
 * bursts). Time is stream time: frames counted, never the wall clock.
 *
 * Needs no permission.
 *
 * @example Two voiced frames are not enough to start
 * ```ts
 * import { SpeechSegmenter } from "./segmenter.ts";
 *
 * const segmenter = new SpeechSegmenter({ frameSamples: 320, frameMs: 20 });
 * const frame = new Int16Array(320);
 * console.log(segmenter.push(frame, true), segmenter.push(frame, true), segmenter.inSpeech); // undefined undefined false
 * ```
 *
 * @module
 */

/** Options of {@linkcode SpeechSegmenter}. */
export interface SegmenterOptions {
  /** Samples per frame. */
  frameSamples: number;
  /** Milliseconds per frame. */
  frameMs: number;
  /**
   * Audio kept before the trigger point.
   *
   * @default 300
   */
  prerollMs?: number;
  /**
   * Unvoiced audio that ends a segment.
   *
   * @default 600
   */
  silenceMs?: number;
  /**
   * The window that decides a start: speech starts when 80 % of its frames
   * are voiced.
   *
   * @default 100
   */
  triggerMs?: number;
  /**
   * Segments with less voiced audio than this are dropped.
   *
   * @default 200
   */
  minSpeechMs?: number;
  /**
   * A segment this long is cut (ended with reason `"max"`); the next one
   * starts at once if the speech goes on.
   *
   * @default 30000
   */
  maxSegmentMs?: number;
}

/** A finished segment. */
export interface Segment {
  /** The samples (pre-roll, speech, a short tail), mono 16-bit. */
  readonly samples: Int16Array;
  /** Stream time of its first sample, in milliseconds. */
  readonly startMs: number;
  /** Stream time just after its last sample, in milliseconds. */
  readonly endMs: number;
  /** Voiced audio in it, in milliseconds. */
  readonly speechMs: number;
  /** Why it ended. */
  readonly reason: "silence" | "max" | "flush";
}

/** What one frame changed. */
export type SegmentEvent =
  | { readonly type: "start"; readonly startMs: number }
  | { readonly type: "end"; readonly segment: Segment }
  | { readonly type: "drop"; readonly startMs: number; readonly speechMs: number };

/** Frames in, segment events out; see the module doc. */
export class SpeechSegmenter {
  readonly #frameSamples: number;
  readonly #frameMs: number;
  readonly #prerollFrames: number;
  readonly #silenceFrames: number;
  readonly #tailFrames: number;
  readonly #window: boolean[] = [];
  readonly #windowFrames: number;
  readonly #triggerVoiced: number;
  readonly #minSpeechFrames: number;
  readonly #maxFrames: number;
  #ring: Int16Array[] = [];
  #segment: Int16Array[] = [];
  #segmentStart = 0;
  #voiced = 0;
  #trailing = 0;
  #frames = 0;
  #inSpeech = false;

  /**
   * @param options Frame size and the timing of segments.
   */
  constructor(options: SegmenterOptions) {
    const { frameSamples, frameMs } = options;
    const frames = (ms: number) => Math.max(1, Math.round(ms / frameMs));
    this.#frameSamples = frameSamples;
    this.#frameMs = frameMs;
    this.#prerollFrames = Math.round((options.prerollMs ?? 300) / frameMs);
    this.#silenceFrames = frames(options.silenceMs ?? 600);
    this.#tailFrames = Math.min(this.#silenceFrames, frames(200));
    this.#windowFrames = frames(options.triggerMs ?? 100);
    this.#triggerVoiced = Math.ceil(this.#windowFrames * 0.8);
    this.#minSpeechFrames = Math.round((options.minSpeechMs ?? 200) / frameMs);
    this.#maxFrames = frames(options.maxSegmentMs ?? 30_000);
  }

  /** Whether a segment is open. */
  get inSpeech(): boolean {
    return this.#inSpeech;
  }

  /** Stream time of the next frame, in milliseconds. */
  get nowMs(): number {
    return this.#frames * this.#frameMs;
  }

  /** Length of the open segment so far, in milliseconds (0 when none). */
  get segmentMs(): number {
    return this.#inSpeech ? this.#segment.length * this.#frameMs : 0;
  }

  /** Samples the segmenter holds (open segment and pre-roll). */
  get bufferedSamples(): number {
    return (this.#segment.length + this.#ring.length) * this.#frameSamples;
  }

  /** The open segment so far (for interim results), or undefined. */
  segmentSoFar(): Int16Array | undefined {
    return this.#inSpeech ? join(this.#segment, this.#segment.length) : undefined;
  }

  /**
   * Takes one classified frame.
   *
   * @param frame The samples (kept, not copied: pass a frame you no longer change).
   * @param speech Whether the detector called it speech.
   * @returns What the frame changed, if anything.
   */
  push(frame: Int16Array, speech: boolean): SegmentEvent | undefined {
    this.#frames++;
    this.#window.push(speech);
    if (this.#window.length > this.#windowFrames) this.#window.shift();
    if (!this.#inSpeech) {
      this.#ring.push(frame);
      const voicedInWindow = this.#window.filter(Boolean).length;
      if (voicedInWindow >= this.#triggerVoiced) {
        // The trigger window itself plus the pre-roll before it.
        const keep = Math.min(this.#ring.length, this.#window.length + this.#prerollFrames);
        this.#segment = this.#ring.slice(this.#ring.length - keep);
        this.#ring = [];
        this.#inSpeech = true;
        this.#voiced = voicedInWindow;
        this.#trailing = 0;
        this.#segmentStart = this.#frames - keep;
        return { type: "start", startMs: this.#segmentStart * this.#frameMs };
      }
      const maxRing = this.#prerollFrames + this.#windowFrames;
      if (this.#ring.length > maxRing) this.#ring.splice(0, this.#ring.length - maxRing);
      return undefined;
    }
    this.#segment.push(frame);
    if (speech) {
      this.#voiced++;
      this.#trailing = 0;
    } else {
      this.#trailing++;
    }
    if (this.#trailing >= this.#silenceFrames) return this.#close("silence");
    if (this.#segment.length >= this.#maxFrames) return this.#close("max");
    return undefined;
  }

  /**
   * Ends the open segment, if any (the end of the stream).
   *
   * @returns The end (or drop) of the open segment, or undefined when none is open.
   */
  flush(): SegmentEvent | undefined {
    return this.#inSpeech ? this.#close("flush") : undefined;
  }

  #close(reason: Segment["reason"]): SegmentEvent {
    const keep = this.#segment.length - Math.max(0, this.#trailing - this.#tailFrames);
    const startMs = this.#segmentStart * this.#frameMs;
    const speechMs = this.#voiced * this.#frameMs;
    const enough = this.#voiced >= this.#minSpeechFrames;
    const samples = enough ? join(this.#segment, keep) : undefined;
    this.#segment = [];
    this.#inSpeech = false;
    this.#window.length = 0;
    this.#ring = [];
    if (!samples) return { type: "drop", startMs, speechMs };
    return {
      type: "end",
      segment: {
        samples,
        startMs,
        endMs: startMs + keep * this.#frameMs,
        speechMs,
        reason,
      },
    };
  }
}

function join(frames: readonly Int16Array[], count: number): Int16Array {
  let length = 0;
  for (let i = 0; i < count; i++) length += frames[i]!.length;
  const out = new Int16Array(length);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    out.set(frames[i]!, offset);
    offset += frames[i]!.length;
  }
  return out;
}
