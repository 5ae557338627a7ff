/**
 * The input side of voice-assistant: which audio a VoiceRequest may carry,
 * and the language codes the backends get.
 *
 * Accepted audio: a WAV file (any PCM or float layout Whisper reads; its
 * header must be consistent), or raw PCM 16 kHz mono signed 16-bit
 * little-endian (the contract's default, SYSTEM.md section 2). Anything else
 * is refused with an InvalidArgument naming what it looks like: empty,
 * larger than the limit, a broken WAV, a known compressed container (Ogg,
 * MP3, FLAC, WebM, MP4, AIFF, another RIFF), or raw bytes that are not whole
 * 16-bit samples.
 *
 * Needs no permission.
 *
 * @example Check a request's audio
 * ```ts
 * import { checkVoiceAudio } from "./audio.ts";
 *
 * const pcm = new Uint8Array(32000); // one second of silence
 * console.log(checkVoiceAudio(pcm, 1 << 20)); // { kind: "pcm", durationMs: 1000 }
 * ```
 *
 * @module
 */
import { isWav, parseWav } from "@homelab/handler-base/clients/wav";
import { InvalidArgumentError } from "@homelab/handler-base/errors";
import { truncateText } from "@homelab/handler-base/text";

/** What {@linkcode checkVoiceAudio} found. */
export interface CheckedAudio {
  /** `"wav"` for a WAV file, `"pcm"` for raw 16 kHz mono s16le. */
  kind: "wav" | "pcm";
  /** How long the audio lasts, in milliseconds. */
  durationMs: number;
}

/** The layout of raw PCM input. */
const PCM_BYTES_PER_SECOND = 16000 * 2;
const EXPECTED = "send WAV, or raw PCM 16 kHz mono signed 16-bit little-endian";

/** Leading bytes of containers that are not accepted, and their names. */
const CONTAINERS: readonly { name: string; magic: string; offset?: number }[] = [
  { name: "Ogg", magic: "OggS" },
  { name: "FLAC", magic: "fLaC" },
  { name: "MP3", magic: "ID3" },
  { name: "WebM/Matroska", magic: "\x1a\x45\xdf\xa3" },
  { name: "MP4/M4A", magic: "ftyp", offset: 4 },
  { name: "AIFF", magic: "FORM" },
  { name: "AMR", magic: "#!AMR" },
  { name: "CAF", magic: "caff" },
  { name: "a RIFF file that is not WAVE", magic: "RIFF" },
];

function startsWith(bytes: Uint8Array, magic: string, offset = 0): boolean {
  if (bytes.length < offset + magic.length) return false;
  for (let i = 0; i < magic.length; i++) {
    if (bytes[offset + i] !== magic.charCodeAt(i)) return false;
  }
  return true;
}

function refuse(detail: string): InvalidArgumentError {
  return new InvalidArgumentError(`Cannot transcribe the request: ${detail}`);
}

/**
 * Checks the audio of a VoiceRequest.
 *
 * @param audio The request's `audio` bytes.
 * @param maxBytes The largest accepted size (`VOICE_MAX_AUDIO_BYTES`).
 * @returns Whether it is WAV or raw PCM, and its duration.
 * @throws {InvalidArgumentError} When the audio is empty, too large, or not WAV or raw 16-bit PCM.
 *
 * @example An MP3 is refused with a clear message
 * ```ts
 * import { checkVoiceAudio } from "./audio.ts";
 *
 * try {
 *   checkVoiceAudio(new TextEncoder().encode("ID3\x04\x00 and the rest"), 1 << 20);
 * } catch (error) {
 *   console.log((error as Error).message);
 *   // Cannot transcribe the request: the audio is MP3; send WAV, or raw PCM 16 kHz mono signed 16-bit little-endian
 * }
 * ```
 */
export function checkVoiceAudio(audio: Uint8Array, maxBytes: number): CheckedAudio {
  if (audio.length === 0) throw refuse("the audio is empty");
  if (audio.length > maxBytes) {
    throw refuse(`the audio has ${audio.length} bytes, more than the limit of ${maxBytes}`);
  }
  if (isWav(audio)) {
    let parsed;
    try {
      parsed = parseWav(audio);
    } catch (error) {
      throw refuse(`the WAV file is invalid (${(error as Error).message})`);
    }
    const { data, format } = parsed;
    if (data.length === 0) throw refuse("the WAV file holds no samples");
    const bytesPerSecond = format.sampleRate * format.channels * (format.bitDepth / 8);
    return { kind: "wav", durationMs: Math.round((data.length / bytesPerSecond) * 1000) };
  }
  for (const { name, magic, offset } of CONTAINERS) {
    if (startsWith(audio, magic, offset)) throw refuse(`the audio is ${name}; ${EXPECTED}`);
  }
  if (audio.length % 2 !== 0) {
    throw refuse(`${audio.length} bytes are not whole 16-bit samples; ${EXPECTED}`);
  }
  return { kind: "pcm", durationMs: Math.round((audio.length / PCM_BYTES_PER_SECOND) * 1000) };
}

/**
 * The ISO 639-1 code of a request's `language` ("en-US" becomes "en"), or ""
 * when it names none.
 *
 * @param language The request's `language`.
 * @returns The lower-case primary language code, or "".
 * @throws {InvalidArgumentError} When it is not a language code.
 *
 * @example
 * ```ts
 * import { languageCode } from "./audio.ts";
 *
 * console.log(languageCode(" en-US ")); // "en"
 * console.log(languageCode("")); // ""
 * ```
 */
export function languageCode(language: string): string {
  const trimmed = language.trim().toLowerCase();
  if (trimmed === "") return "";
  const primary = trimmed.split(/[-_]/)[0]!;
  if (!/^[a-z]{2,3}$/.test(primary) || !/^[a-z0-9_-]{2,16}$/.test(trimmed)) {
    throw new InvalidArgumentError(
      `Cannot transcribe the request: language "${
        truncateText(language, 32)
      }" is not a language code such as "en"`,
    );
  }
  return primary;
}

/**
 * The language code XTTS expects for an ISO 639-1 code: the same, except
 * Chinese, which XTTS names `zh-cn`.
 *
 * @param code An ISO 639-1 code.
 * @returns The code to send to the TTS backend.
 *
 * @example
 * ```ts
 * import { ttsLanguage } from "./audio.ts";
 *
 * console.log(ttsLanguage("zh"), ttsLanguage("de")); // "zh-cn" "de"
 * ```
 */
export function ttsLanguage(code: string): string {
  return code === "zh" ? "zh-cn" : code;
}
