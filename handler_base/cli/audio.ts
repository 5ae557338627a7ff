/**
 * Audio for the client: TTSAudioChunk messages assembled into one WAV file,
 * and a WAV file read for streaming as 16-bit PCM.
 *
 * @example
 * ```ts
 * import { create, TTSAudioChunkSchema, AudioEncoding } from "../messages.ts";
 * import { chunksToWav } from "./audio.ts";
 *
 * const chunk = create(TTSAudioChunkSchema, {
 *   audio: new Uint8Array(4), sampleRate: 16000, channels: 1, bitDepth: 16,
 *   audioEncoding: AudioEncoding.PCM_S16LE, isLast: true,
 * });
 * console.log(chunksToWav([chunk]).length); // 48
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { isWav, parseWav, type PcmFormat, wrapPcmAsWav } from "../clients/wav.ts";
import type { TTSAudioChunk } from "../messages.ts";
import { UsageError } from "./exit_codes.ts";

/**
 * Joins the chunks of one stream, in `chunk_index` order, into a WAV file:
 * raw PCM chunks are wrapped with the format they announce (16 kHz mono
 * 16-bit when they announce none); chunks that are one streamed WAV file are
 * re-wrapped with the right lengths.
 *
 * @param chunks The chunks received.
 * @returns The WAV file bytes.
 *
 * @example
 * ```ts ignore
 * await Deno.writeFile("out.wav", chunksToWav(chunks));
 * ```
 */
export function chunksToWav(chunks: readonly TTSAudioChunk[]): Uint8Array {
  const ordered = [...chunks].sort((a, b) => a.chunkIndex - b.chunkIndex);
  const bytes = new Uint8Array(Buffer.concat(ordered.map((c) => c.audio)));
  if (isWav(bytes)) {
    const { format, data } = parseWav(bytes, { streaming: true });
    return wrapPcmAsWav(data, format);
  }
  const first = ordered[0];
  return wrapPcmAsWav(bytes, {
    sampleRate: first?.sampleRate || 16000,
    channels: first?.channels || 1,
    bitDepth: first?.bitDepth || 16,
  });
}

/** A WAV file's 16-bit PCM samples and their format. */
export interface PcmFile {
  /** Sample rate, channels, bit depth (always 16). */
  readonly format: PcmFormat;
  /** The samples. */
  readonly pcm: Uint8Array;
}

/**
 * Reads a WAV file of 16-bit integer PCM, the platform's streaming format.
 *
 * @param path The file.
 * @returns Its format and samples.
 * @throws {UsageError} When it cannot be read or is not 16-bit PCM WAV.
 *
 * @example
 * ```ts ignore
 * const { format, pcm } = await readPcmWav("in.wav");
 * ```
 */
export async function readPcmWav(path: string): Promise<PcmFile> {
  const bytes = await readInput(path);
  let parsed;
  try {
    parsed = parseWav(bytes);
  } catch (error) {
    throw new UsageError(`Cannot read ${path}: ${(error as Error).message}`);
  }
  const { format, data } = parsed;
  if (format.sampleFormat !== "pcm" || format.bitDepth !== 16) {
    throw new UsageError(
      `Cannot stream ${path}: it is ${format.bitDepth}-bit ${format.sampleFormat}, not 16-bit PCM ` +
        `(convert it: sox ${path} -b 16 -e signed -r 16000 -c 1 out.wav)`,
    );
  }
  const { sampleRate, channels, bitDepth } = format;
  return { format: { sampleRate, channels, bitDepth }, pcm: data };
}

/**
 * Reads an input file, turning a missing or unreadable file into a usage error.
 *
 * @param path The file.
 * @returns Its bytes.
 * @throws {UsageError} When it cannot be read.
 *
 * @example
 * ```ts ignore
 * const audio = await readInput("question.wav");
 * ```
 */
export async function readInput(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw new UsageError(`Cannot read ${path}: ${(error as Error).message}`);
  }
}
