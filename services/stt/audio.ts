/**
 * The audio formats stt-module takes, and a streaming converter from any of
 * them to what the VAD needs: mono 16-bit PCM at 8, 16, 32 or 48 kHz.
 *
 * Only what is needed is converted: channels are averaged into one, 8, 24
 * and 32-bit samples become 16-bit, and a rate the VAD does not take
 * (22.05, 24, 44.1 kHz ...) is resampled to 16 kHz by linear interpolation.
 * Chunks may split a sample anywhere (1-byte chunks work): the converter
 * keeps the partial frame, at most one frame of bytes. A WAV stream
 * (`AUDIO_ENCODING_WAV`) is read from its header, which must arrive within
 * its first 64 KiB. Compressed formats (Opus, MP3) are refused.
 *
 * Needs no permission.
 *
 * @example 48 kHz stereo stays at 48 kHz, in one channel
 * ```ts
 * import { PcmConverter, resolveFormat } from "./audio.ts";
 *
 * const format = resolveFormat({ sampleRate: 48000, channels: 2 });
 * const converter = new PcmConverter(format);
 * const mono = converter.push(new Uint8Array(8)); // two stereo frames
 * console.log(converter.outputRate, mono.length); // 48000 2
 * ```
 *
 * @module
 */
import { parseWav } from "@homelab/handler-base/clients/wav";
import { InvalidArgumentError } from "@homelab/handler-base/errors";
import { AudioEncoding } from "@homelab/handler-base/messages";
import { VAD_SAMPLE_RATES } from "./vad.ts";

/** A stream's declared format, as STTStreamMessage fields carry it (0 = unset). */
export interface DeclaredFormat {
  /** `audio_encoding`. @default AUDIO_ENCODING_UNSPECIFIED (raw s16le) */
  audioEncoding?: AudioEncoding;
  /** `sample_rate`. @default 16000 */
  sampleRate?: number;
  /** `channels`. @default 1 */
  channels?: number;
  /** `bit_depth`. @default 16 */
  bitDepth?: number;
}

/** A format the converter takes. */
export interface StreamFormat {
  /** Raw PCM, or a WAV stream whose header gives the layout. */
  readonly container: "pcm" | "wav";
  /** Samples per second (for WAV: until the header is read). */
  readonly sampleRate: number;
  /** Interleaved channels. */
  readonly channels: number;
  /** Bits per sample: 8 (unsigned), 16, 24 or 32 (signed little-endian). */
  readonly bitDepth: number;
}

/** The lowest sample rate taken. */
export const MIN_SAMPLE_RATE = 8000;
/** The highest sample rate taken. */
export const MAX_SAMPLE_RATE = 192000;
/** The most channels taken. */
export const MAX_CHANNELS = 8;
/** How many bytes of a WAV stream may come before its header is complete. */
export const MAX_WAV_HEADER_BYTES = 64 * 1024;

function refuse(detail: string): InvalidArgumentError {
  return new InvalidArgumentError(`Cannot take the audio format: ${detail}`);
}

function checkLayout(sampleRate: number, channels: number, bitDepth: number): void {
  if (
    !Number.isInteger(sampleRate) || sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE
  ) {
    throw refuse(`sample rate ${sampleRate} is outside ${MIN_SAMPLE_RATE}..${MAX_SAMPLE_RATE}`);
  }
  if (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS) {
    throw refuse(`channel count ${channels} is outside 1..${MAX_CHANNELS}`);
  }
  if (![8, 16, 24, 32].includes(bitDepth)) {
    throw refuse(`bit depth ${bitDepth} is not 8, 16, 24 or 32`);
  }
}

/**
 * Checks a declared format and fills in the defaults (16 kHz, mono, 16-bit).
 *
 * @param declared The fields of a `start` (or first) message.
 * @returns The format.
 * @throws {InvalidArgumentError} For Opus, MP3, an unknown encoding, `PCM_S16LE`
 * with another bit depth, or a rate, channel count or bit depth out of range.
 *
 * @example MP3 is refused
 * ```ts
 * import { resolveFormat } from "./audio.ts";
 * import { AudioEncoding } from "@homelab/handler-base/messages";
 *
 * try {
 *   resolveFormat({ audioEncoding: AudioEncoding.MP3 });
 * } catch (error) {
 *   console.log((error as Error).message); // Cannot take the audio format: MP3 is compressed; send PCM s16le or WAV
 * }
 * ```
 */
export function resolveFormat(declared: DeclaredFormat): StreamFormat {
  const encoding = declared.audioEncoding ?? AudioEncoding.UNSPECIFIED;
  const sampleRate = declared.sampleRate || 16000;
  const channels = declared.channels || 1;
  const bitDepth = declared.bitDepth || 16;
  switch (encoding) {
    case AudioEncoding.UNSPECIFIED:
      checkLayout(sampleRate, channels, bitDepth);
      return { container: "pcm", sampleRate, channels, bitDepth };
    case AudioEncoding.PCM_S16LE:
      if (bitDepth !== 16) throw refuse(`PCM_S16LE with bit depth ${bitDepth}`);
      checkLayout(sampleRate, channels, bitDepth);
      return { container: "pcm", sampleRate, channels, bitDepth };
    case AudioEncoding.WAV:
      return { container: "wav", sampleRate, channels, bitDepth };
    case AudioEncoding.OGG_OPUS:
      throw refuse("OGG_OPUS is compressed; send PCM s16le or WAV");
    case AudioEncoding.MP3:
      throw refuse("MP3 is compressed; send PCM s16le or WAV");
    default:
      throw refuse(`audio encoding ${encoding} is unknown`);
  }
}

/** Turns chunks of a stream into mono 16-bit samples at a VAD rate; see the module doc. */
export class PcmConverter {
  #format: StreamFormat;
  #header: Uint8Array | undefined;
  #pending = new Uint8Array(0);
  #outputRate: number;
  #step = 1;
  #position = 0;
  #previous: number | undefined;

  /**
   * @param format The stream's format, from {@linkcode resolveFormat}.
   */
  constructor(format: StreamFormat) {
    this.#format = format;
    this.#outputRate = outputRateFor(format.sampleRate);
    this.#step = format.sampleRate / this.#outputRate;
    if (format.container === "wav") this.#header = new Uint8Array(0);
  }

  /** The rate of the samples {@linkcode PcmConverter.push} returns. */
  get outputRate(): number {
    return this.#outputRate;
  }

  /** Whether the stream is WAV and its header has not been read yet. */
  get awaitingHeader(): boolean {
    return this.#header !== undefined;
  }

  /** Bytes held between chunks (a partial frame, or a WAV header being read). */
  get bufferedBytes(): number {
    return this.#pending.length + (this.#header?.length ?? 0);
  }

  /**
   * Converts one chunk.
   *
   * @param chunk Any number of bytes, split anywhere.
   * @returns The mono 16-bit samples it completes (possibly none).
   * @throws {InvalidArgumentError} When a WAV header is malformed, unsupported or too long.
   */
  push(chunk: Uint8Array): Int16Array {
    if (this.#header !== undefined) {
      const data = this.#readHeader(chunk);
      if (!data) return new Int16Array(0);
      chunk = data;
    }
    const frameBytes = this.#format.channels * (this.#format.bitDepth / 8);
    let bytes = chunk;
    if (this.#pending.length > 0) {
      bytes = new Uint8Array(this.#pending.length + chunk.length);
      bytes.set(this.#pending);
      bytes.set(chunk, this.#pending.length);
    }
    const whole = bytes.length - (bytes.length % frameBytes);
    this.#pending = new Uint8Array(bytes.subarray(whole));
    const mono = toMono16(bytes.subarray(0, whole), this.#format);
    return this.#step === 1 ? mono : this.#resample(mono);
  }

  #readHeader(chunk: Uint8Array): Uint8Array | undefined {
    const seen = new Uint8Array(this.#header!.length + chunk.length);
    seen.set(this.#header!);
    seen.set(chunk, this.#header!.length);
    let parsed;
    try {
      parsed = parseWav(seen, { streaming: true });
    } catch (error) {
      const message = (error as Error).message;
      // A header split across chunks parses as "missing" or "truncated" until it is whole.
      const incomplete = seen.length < 12 || /missing|truncated/.test(message);
      if (!incomplete || seen.length > MAX_WAV_HEADER_BYTES) {
        throw new InvalidArgumentError(
          `Cannot take the audio format: ${
            seen.length > MAX_WAV_HEADER_BYTES ? "no WAV header in the first 64 KiB" : message
          }`,
        );
      }
      this.#header = seen;
      return undefined;
    }
    const { format, data } = parsed;
    if (format.sampleFormat !== "pcm") {
      throw refuse("WAV with float samples; send integer PCM");
    }
    checkLayout(format.sampleRate, format.channels, format.bitDepth);
    this.#format = { container: "wav", ...format };
    this.#outputRate = outputRateFor(format.sampleRate);
    this.#step = format.sampleRate / this.#outputRate;
    this.#header = undefined;
    return data;
  }

  #resample(input: Int16Array): Int16Array {
    if (input.length === 0) return input;
    // Position of the next output sample, in input samples, where index -1 is
    // the last sample of the previous chunk.
    const previous = this.#previous;
    const at = (i: number) => (i < 0 ? previous! : input[i]!);
    let t = previous === undefined ? Math.max(0, this.#position) : this.#position;
    const out: number[] = [];
    while (Math.floor(t) + 1 <= input.length - 1) {
      const i = Math.floor(t);
      const frac = t - i;
      out.push(Math.round(at(i) * (1 - frac) + at(i + 1) * frac));
      t += this.#step;
    }
    this.#position = t - input.length;
    this.#previous = input[input.length - 1];
    return Int16Array.from(out);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function outputRateFor(rate: number): number {
  return VAD_SAMPLE_RATES.includes(rate) ? rate : 16000;
}

function toMono16(bytes: Uint8Array, format: StreamFormat): Int16Array {
  const { channels, bitDepth } = format;
  const sampleBytes = bitDepth / 8;
  const frames = bytes.length / (channels * sampleBytes);
  const out = new Int16Array(frames);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (channels === 1 && bitDepth === 16) {
    // A copy into a fresh buffer (`slice` of a Node Buffer would be a view of its pool).
    if (LITTLE_ENDIAN) return new Int16Array(new Uint8Array(bytes).buffer, 0, frames);
    for (let i = 0; i < frames; i++) out[i] = view.getInt16(i * 2, true);
    return out;
  }
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) {
      const offset = (f * channels + c) * sampleBytes;
      switch (bitDepth) {
        case 8:
          sum += (view.getUint8(offset) - 128) << 8;
          break;
        case 16:
          sum += view.getInt16(offset, true);
          break;
        case 24:
          sum += view.getInt16(offset + 1, true);
          break;
        default:
          sum += view.getInt16(offset + 2, true);
      }
    }
    out[f] = Math.round(sum / channels);
  }
  return out;
}
