/**
 * RIFF/WAVE helpers: wrap raw PCM in the canonical 44-byte header, and parse a
 * WAV file into its format and a view of its samples, skipping chunks such as
 * `LIST` and `fact`.
 *
 * Needs no permission.
 *
 * @example Wrap 16 kHz mono PCM and read it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWav, wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 *
 * const wav = wrapPcmAsWav(new Uint8Array(3200), { sampleRate: 16000 });
 * const { format, data } = parseWav(wav);
 * assert.deepEqual([wav.length, format.sampleRate, data.length], [3244, 16000, 3200]);
 * ```
 *
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";

/** The sample layout of PCM audio. */
export interface PcmFormat {
  /** Samples per second per channel. */
  sampleRate: number;
  /** Interleaved channels. */
  channels: number;
  /** Bits per sample: 8 (unsigned), 16, 24 or 32 (signed little-endian). */
  bitDepth: number;
}

/** The format of a parsed WAV file. */
export interface WavFormat extends PcmFormat {
  /** `"pcm"` for integer samples, `"float"` for IEEE float samples. */
  sampleFormat: "pcm" | "float";
}

/** Options of {@linkcode wrapPcmAsWav} and {@linkcode wavHeader}. */
export interface WavHeaderOptions {
  /**
   * Samples per second.
   *
   * @default 16000
   */
  sampleRate?: number;
  /**
   * Interleaved channels.
   *
   * @default 1
   */
  channels?: number;
  /**
   * Bits per sample (8, 16, 24 or 32).
   *
   * @default 16
   */
  bitDepth?: number;
}

/** Options of {@linkcode parseWav}. */
export interface ParseWavOptions {
  /**
   * Accept a header written before the length was known, as streaming servers
   * write it: a `data` size of 0 or 0xFFFFFFFF, or one past the end of the
   * input, then means "up to the end of the input".
   *
   * @default false
   */
  streaming?: boolean;
}

/** A parsed WAV file. */
export interface ParsedWav {
  /** The sample format from the `fmt ` chunk. */
  format: WavFormat;
  /** The samples of the `data` chunk: a view into the input, not a copy. */
  data: Uint8Array;
}

/** The size of the canonical PCM WAV header. */
export const WAV_HEADER_BYTES = 44;

const RIFF = 0x52494646; // "RIFF"
const WAVE = 0x57415645; // "WAVE"
const FMT = 0x666d7420; // "fmt "
const DATA = 0x64617461; // "data"
const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_EXTENSIBLE = 0xfffe;
const BIT_DEPTHS: ReadonlySet<number> = new Set([8, 16, 24, 32]);

function checkFormat(format: PcmFormat): void {
  const { sampleRate, channels, bitDepth } = format;
  if (!Number.isInteger(sampleRate) || sampleRate <= 0 || sampleRate > 0xffffffff) {
    throw new RangeError(`Cannot write a WAV header: sample rate ${sampleRate} is invalid`);
  }
  if (!Number.isInteger(channels) || channels < 1 || channels > 0xffff) {
    throw new RangeError(`Cannot write a WAV header: channel count ${channels} is invalid`);
  }
  if (!BIT_DEPTHS.has(bitDepth)) {
    throw new RangeError(`Cannot write a WAV header: bit depth ${bitDepth} is not 8, 16, 24 or 32`);
  }
}

/**
 * The canonical 44-byte header of a PCM WAV file (format tag 1, a 16-byte
 * `fmt ` chunk, then the `data` chunk header).
 *
 * @param dataBytes The length of the PCM data that follows.
 * @param options The sample rate, channels and bit depth.
 * @returns The 44 header bytes.
 * @throws {RangeError} When the format is invalid or the data is too long for a WAV file.
 *
 * @example Header of one second of 24 kHz mono 16-bit audio
 * ```ts
 * import assert from "node:assert/strict";
 * import { wavHeader } from "@homelab/handler-base/clients/wav";
 *
 * const header = wavHeader(48000, { sampleRate: 24000 });
 * assert.equal(new TextDecoder().decode(header.subarray(0, 4)), "RIFF");
 * assert.equal(header.length, 44);
 * ```
 */
export function wavHeader(dataBytes: number, options: WavHeaderOptions = {}): Uint8Array {
  const format = {
    sampleRate: options.sampleRate ?? 16000,
    channels: options.channels ?? 1,
    bitDepth: options.bitDepth ?? 16,
  };
  checkFormat(format);
  if (!Number.isInteger(dataBytes) || dataBytes < 0 || dataBytes > 0xffffffff - 36) {
    throw new RangeError(`Cannot write a WAV header: ${dataBytes} data bytes do not fit`);
  }
  const blockAlign = format.channels * (format.bitDepth / 8);
  const header = new Uint8Array(WAV_HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(0, RIFF);
  view.setUint32(4, 36 + dataBytes, true);
  view.setUint32(8, WAVE);
  view.setUint32(12, FMT);
  view.setUint32(16, 16, true);
  view.setUint16(20, FORMAT_PCM, true);
  view.setUint16(22, format.channels, true);
  view.setUint32(24, format.sampleRate, true);
  view.setUint32(28, format.sampleRate * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, format.bitDepth, true);
  view.setUint32(36, DATA);
  view.setUint32(40, dataBytes, true);
  return header;
}

/**
 * Wraps raw PCM samples in a WAV file (the 44-byte header followed by a copy
 * of the samples).
 *
 * @param pcm The interleaved little-endian samples.
 * @param options The sample rate, channels and bit depth.
 * @returns The WAV file bytes.
 * @throws {RangeError} When the format is invalid.
 * @throws {InvalidArgumentError} When `pcm` is not a whole number of frames.
 *
 * @example The default is 16 kHz mono 16-bit, the platform's PCM format
 * ```ts
 * import assert from "node:assert/strict";
 * import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 *
 * const wav = wrapPcmAsWav(new Uint8Array([1, 0, 2, 0]));
 * assert.equal(wav.length, 48);
 * ```
 */
export function wrapPcmAsWav(
  pcm: Uint8Array,
  options: WavHeaderOptions = {},
): Uint8Array<ArrayBuffer> {
  const header = wavHeader(pcm.byteLength, options);
  const frameBytes = (options.channels ?? 1) * ((options.bitDepth ?? 16) / 8);
  if (pcm.byteLength % frameBytes !== 0) {
    throw new InvalidArgumentError(
      `Cannot wrap PCM as WAV: ${pcm.byteLength} bytes are not a whole number of ${frameBytes}-byte frames`,
    );
  }
  const wav = new Uint8Array(WAV_HEADER_BYTES + pcm.byteLength);
  wav.set(header);
  wav.set(pcm, WAV_HEADER_BYTES);
  return wav;
}

/**
 * Whether the bytes start like a WAV file (`RIFF....WAVE`).
 *
 * @param bytes Any bytes.
 * @returns True when the RIFF/WAVE magic is present.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isWav, wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 *
 * assert.deepEqual([isWav(wrapPcmAsWav(new Uint8Array(2))), isWav(new Uint8Array(2))], [true, false]);
 * ```
 */
export function isWav(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 12) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 12);
  return view.getUint32(0) === RIFF && view.getUint32(8) === WAVE;
}

function invalid(detail: string): InvalidArgumentError {
  return new InvalidArgumentError(`Cannot parse WAV: ${detail}`);
}

/**
 * Parses a WAV file: checks the RIFF/WAVE magic, reads the `fmt ` chunk (PCM,
 * IEEE float or WAVE_FORMAT_EXTENSIBLE of either), skips other chunks
 * (`LIST`, `fact`, ...) and returns a view of the `data` chunk.
 *
 * @param bytes The file.
 * @param options Whether to accept a streaming header.
 * @returns The format and the samples.
 * @throws {InvalidArgumentError} When the input is not a well-formed PCM or float WAV file.
 *
 * @example Reject bytes that are not WAV
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWav } from "@homelab/handler-base/clients/wav";
 *
 * assert.throws(() => parseWav(new Uint8Array(10)), {
 *   message: "Cannot parse WAV: the RIFF/WAVE header is missing",
 * });
 * ```
 */
export function parseWav(bytes: Uint8Array, options: ParseWavOptions = {}): ParsedWav {
  if (!isWav(bytes)) throw invalid("the RIFF/WAVE header is missing");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let format: WavFormat | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.byteLength) {
    const id = view.getUint32(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === FMT) {
      if (body + size > bytes.byteLength) throw invalid("the fmt chunk is truncated");
      format = parseFmt(view, body, size);
    } else if (id === DATA) {
      if (!format) throw invalid("the data chunk comes before the fmt chunk");
      const remaining = bytes.byteLength - body;
      let length = size;
      if (size > remaining || (options.streaming && (size === 0 || size === 0xffffffff))) {
        if (!options.streaming) {
          throw invalid(`the data chunk is truncated (${remaining} of ${size} bytes)`);
        }
        length = remaining;
      }
      return { format, data: bytes.subarray(body, body + length) };
    }
    // Chunks are padded to an even length.
    offset = body + size + (size % 2);
  }
  throw invalid(format ? "the data chunk is missing" : "the fmt chunk is missing");
}

function parseFmt(view: DataView, offset: number, size: number): WavFormat {
  if (size < 16) throw invalid(`the fmt chunk is ${size} bytes, less than 16`);
  let tag = view.getUint16(offset, true);
  const channels = view.getUint16(offset + 2, true);
  const sampleRate = view.getUint32(offset + 4, true);
  const byteRate = view.getUint32(offset + 8, true);
  const blockAlign = view.getUint16(offset + 12, true);
  const bitDepth = view.getUint16(offset + 14, true);
  if (tag === FORMAT_EXTENSIBLE) {
    if (size < 40) throw invalid("the extensible fmt chunk is shorter than 40 bytes");
    // The sub-format GUID starts with the plain format tag.
    tag = view.getUint16(offset + 24, true);
  }
  if (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT) {
    throw invalid(`format tag ${tag} is neither PCM nor IEEE float`);
  }
  if (channels < 1) throw invalid("the channel count is 0");
  if (sampleRate < 1) throw invalid("the sample rate is 0");
  if (!BIT_DEPTHS.has(bitDepth) || (tag === FORMAT_FLOAT && bitDepth !== 32)) {
    throw invalid(`bit depth ${bitDepth} is not supported`);
  }
  if (blockAlign !== channels * (bitDepth / 8) || byteRate !== sampleRate * blockAlign) {
    throw invalid("the block align or byte rate does not match the format");
  }
  return { sampleRate, channels, bitDepth, sampleFormat: tag === FORMAT_FLOAT ? "float" : "pcm" };
}

/**
 * Cuts a stream of byte pieces at whole sample frames, so that a player can
 * play each piece on its own: a network read can end in the middle of a
 * sample, and the bytes of an incomplete frame are carried to the next piece.
 *
 * @example Forward streamed PCM in whole 16-bit frames
 * ```ts
 * import { FrameAligner } from "@homelab/handler-base/clients/wav";
 *
 * const aligner = new FrameAligner(2);
 * console.log(aligner.push(new Uint8Array([1, 2, 3])).length); // 2
 * console.log(aligner.push(new Uint8Array([4, 5])).length); // 2
 * console.log(aligner.rest().length); // 1
 * ```
 */
export class FrameAligner {
  readonly #frameBytes: number;
  #carry: Uint8Array = new Uint8Array(0);

  /**
   * Creates an aligner.
   *
   * @param frameBytes The bytes of one frame: channels times bytes per sample.
   * @throws {RangeError} When `frameBytes` is not a positive integer.
   */
  constructor(frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes < 1) {
      throw new RangeError(`Cannot align frames: frame size ${frameBytes} is invalid`);
    }
    this.#frameBytes = frameBytes;
  }

  /**
   * Adds a piece.
   *
   * @param piece The next bytes of the stream.
   * @returns The whole frames available now (possibly none), in order.
   */
  push(piece: Uint8Array): Uint8Array {
    let bytes = piece;
    if (this.#carry.length > 0) {
      bytes = new Uint8Array(this.#carry.length + piece.length);
      bytes.set(this.#carry);
      bytes.set(piece, this.#carry.length);
    }
    const whole = bytes.length - (bytes.length % this.#frameBytes);
    this.#carry = bytes.slice(whole);
    return bytes.subarray(0, whole);
  }

  /**
   * The bytes of an incomplete last frame, held back so far.
   *
   * @returns Fewer bytes than one frame (usually none).
   */
  rest(): Uint8Array {
    return this.#carry;
  }
}
