/**
 * Voice activity detection with libfvad (the WebRTC VAD) compiled to
 * WebAssembly (npm `@echogarden/fvad-wasm`): a Gaussian-mixture classifier
 * over six frequency bands, the detector WebRTC ships, not an energy
 * threshold.
 *
 * {@linkcode loadFvad} compiles the module once (about 20 KB of Wasm, loaded
 * as a bytes import so that no file read permission is needed) and
 * instantiates it directly: the package's Emscripten glue (`fvad.js`) is not
 * used, because under Deno it takes its Node.js branch (`process` exists) and
 * loads `node:module`, `node:fs` and `node:path` at start (about 50 ms of CPU
 * of stt-module's start, docs/PERFORMANCE.md). The module needs two imports,
 * an assertion failure and a heap growth;
 * {@linkcode createVad} makes a detector with its own state (one per
 * session) that classifies frames of 10, 20 or 30 ms of mono 16-bit PCM at
 * 8, 16, 32 or 48 kHz. Each detector owns a small buffer in the module's heap;
 * dispose it to free its state.
 *
 * Needs no permission (the root `deno.json` enables `raw-imports` for the
 * bytes import).
 *
 * @example Classify 20 ms of silence
 * ```ts
 * import { createVad, loadFvad } from "./vad.ts";
 *
 * const fvad = await loadFvad();
 * using vad = createVad(fvad, { mode: 2, sampleRate: 16000, frameMs: 20 });
 * console.log(vad.frameSamples, vad.isSpeech(new Int16Array(320))); // 320 false
 * ```
 *
 * @module
 */
import fvadWasm from "@echogarden/fvad-wasm/fvad.wasm" with { type: "bytes" };

/** The sample rates libfvad accepts. */
export const VAD_SAMPLE_RATES: readonly number[] = [8000, 16000, 32000, 48000];

/** The frame lengths libfvad accepts, in milliseconds. */
export const VAD_FRAME_MS: readonly number[] = [10, 20, 30];

/** The aggressiveness modes: 0 (calls the most frames speech) to 3 (the fewest: most aggressive). */
export type VadMode = 0 | 1 | 2 | 3;

/** The exports of the Emscripten module that this wrapper uses. */
interface FvadExports {
  _fvad_new(): number;
  _fvad_free(handle: number): void;
  _fvad_reset(handle: number): void;
  _fvad_set_mode(handle: number, mode: number): number;
  _fvad_set_sample_rate(handle: number, rate: number): number;
  _fvad_process(handle: number, frame: number, length: number): number;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAP16: Int16Array;
}

/** A compiled libfvad module; detectors made from one module share its heap. */
export interface FvadModule {
  /** The module's exports (opaque to callers). */
  readonly exports: unknown;
}

/**
 * The export names of the Emscripten build of `@echogarden/fvad-wasm` 0.2
 * (minified: `fvad.js` maps them the same way). A build that exports
 * anything else is refused by {@linkcode loadFvad}.
 */
const FVAD_EXPORTS = {
  memory: "c",
  ctors: "d",
  _fvad_new: "e",
  _malloc: "f",
  _fvad_reset: "g",
  _fvad_free: "h",
  _free: "i",
  _fvad_set_mode: "j",
  _fvad_set_sample_rate: "k",
  _fvad_process: "l",
} as const;

/**
 * Compiles and instantiates libfvad. Call it once per process and pass the
 * module to {@linkcode createVad}.
 *
 * @returns The module.
 * @throws {Error} When the Wasm is not the build this wrapper knows (its exports differ).
 *
 * @example
 * ```ts
 * import { loadFvad } from "./vad.ts";
 *
 * const fvad = await loadFvad();
 * console.log(typeof fvad.exports); // object
 * ```
 */
export async function loadFvad(): Promise<FvadModule> {
  // Set once instantiated; the heap-growth import needs it.
  const heap: { memory?: WebAssembly.Memory } = {};
  const { instance } = await WebAssembly.instantiate(fvadWasm, {
    a: {
      // ___assert_fail(condition, file, line, function): libfvad's assert().
      a: () => {
        throw new Error("Cannot run libfvad: an assertion failed in the WebAssembly module");
      },
      // _emscripten_resize_heap(bytes): grow to at least `bytes`, 1 on success, 0 on failure.
      b: (bytes: number) => {
        const pages = Math.ceil(((bytes >>> 0) - heap.memory!.buffer.byteLength) / 65536);
        try {
          heap.memory!.grow(Math.max(pages, 0));
          return 1;
        } catch {
          return 0;
        }
      },
    },
  });
  const raw = instance.exports;
  const missing = Object.entries(FVAD_EXPORTS).filter(([key, name]) =>
    key === "memory" ? !(raw[name] instanceof WebAssembly.Memory) : typeof raw[name] !== "function"
  );
  if (missing.length > 0) {
    throw new Error(
      `Cannot load libfvad: the WebAssembly module lacks ${missing.map(([k]) => k).join(", ")}`,
    );
  }
  const memory = raw[FVAD_EXPORTS.memory] as WebAssembly.Memory;
  heap.memory = memory;
  const fn = (key: Exclude<keyof typeof FVAD_EXPORTS, "memory">) =>
    raw[FVAD_EXPORTS[key]] as (...args: number[]) => number;
  fn("ctors")();
  let heap16 = new Int16Array(memory.buffer);
  const exports: FvadExports = {
    _fvad_new: fn("_fvad_new"),
    _fvad_free: fn("_fvad_free"),
    _fvad_reset: fn("_fvad_reset"),
    _fvad_set_mode: fn("_fvad_set_mode"),
    _fvad_set_sample_rate: fn("_fvad_set_sample_rate"),
    _fvad_process: fn("_fvad_process"),
    _malloc: fn("_malloc"),
    _free: fn("_free"),
    // A view of the current buffer: growing the memory detaches the old one.
    get HEAP16() {
      if (heap16.buffer !== memory.buffer) heap16 = new Int16Array(memory.buffer);
      return heap16;
    },
  };
  return { exports };
}

/** Options of {@linkcode createVad}. */
export interface VadOptions {
  /**
   * Aggressiveness, 0 to 3: higher modes call fewer frames speech.
   *
   * @default 2
   */
  mode?: VadMode;
  /**
   * The sample rate: 8000, 16000, 32000 or 48000.
   *
   * @default 16000
   */
  sampleRate?: number;
  /**
   * The frame length in milliseconds: 10, 20 or 30.
   *
   * @default 20
   */
  frameMs?: number;
}

/** A voice activity detector for one stream. */
export interface Vad extends Disposable {
  /** Samples per frame. */
  readonly frameSamples: number;
  /** The sample rate. */
  readonly sampleRate: number;
  /** The frame length in milliseconds. */
  readonly frameMs: number;
  /**
   * Classifies one frame.
   *
   * @param frame Exactly `frameSamples` mono 16-bit samples.
   * @returns Whether the frame holds speech.
   * @throws {RangeError} When the frame has another length, or the detector was disposed.
   */
  isSpeech(frame: Int16Array): boolean;
  /** Forgets the stream's history (the detector adapts its noise model over time). */
  reset(): void;
}

/**
 * Creates a detector with its own state.
 *
 * @param fvad The module from {@linkcode loadFvad}.
 * @param options Mode, sample rate and frame length.
 * @returns The detector; dispose it when the stream ends.
 * @throws {RangeError} When the mode, rate or frame length is not supported.
 *
 * @example A 30 ms frame at 8 kHz
 * ```ts
 * import { createVad, loadFvad } from "./vad.ts";
 *
 * using vad = createVad(await loadFvad(), { sampleRate: 8000, frameMs: 30 });
 * console.log(vad.frameSamples); // 240
 * ```
 */
export function createVad(fvad: FvadModule, options: VadOptions = {}): Vad {
  const { mode = 2, sampleRate = 16000, frameMs = 20 } = options;
  if (![0, 1, 2, 3].includes(mode)) {
    throw new RangeError(`Cannot create a VAD: mode ${mode} is not 0, 1, 2 or 3`);
  }
  if (!VAD_SAMPLE_RATES.includes(sampleRate)) {
    throw new RangeError(
      `Cannot create a VAD: sample rate ${sampleRate} is not one of ${VAD_SAMPLE_RATES.join(", ")}`,
    );
  }
  if (!VAD_FRAME_MS.includes(frameMs)) {
    throw new RangeError(`Cannot create a VAD: frame length ${frameMs} ms is not 10, 20 or 30`);
  }
  const m = fvad.exports as FvadExports;
  const frameSamples = (sampleRate / 1000) * frameMs;
  const handle = m._fvad_new();
  if (!handle) throw new RangeError("Cannot create a VAD: out of WebAssembly memory");
  m._fvad_set_mode(handle, mode);
  m._fvad_set_sample_rate(handle, sampleRate);
  const pointer = m._malloc(frameSamples * 2);
  let disposed = false;
  return {
    frameSamples,
    sampleRate,
    frameMs,
    isSpeech(frame) {
      if (disposed) throw new RangeError("Cannot classify a frame: the VAD was disposed");
      if (frame.length !== frameSamples) {
        throw new RangeError(
          `Cannot classify a frame: ${frame.length} samples, expected ${frameSamples}`,
        );
      }
      // HEAP16 is replaced when the heap grows: read it on every call.
      m.HEAP16.set(frame, pointer >> 1);
      const result = m._fvad_process(handle, pointer, frameSamples);
      if (result < 0) throw new RangeError("Cannot classify a frame: libfvad refused it");
      return result === 1;
    },
    reset() {
      if (disposed) return;
      m._fvad_reset(handle);
      m._fvad_set_mode(handle, mode);
      m._fvad_set_sample_rate(handle, sampleRate);
    },
    [Symbol.dispose]() {
      if (disposed) return;
      disposed = true;
      m._free(pointer);
      m._fvad_free(handle);
    },
  };
}
