/**
 * A client of a text-to-speech server: the XTTS streaming server API
 * (`POST /tts`, `POST /tts_stream`, `POST /clone_speaker`,
 * `GET /studio_speakers`) or, with `api: "openai"`, the OpenAI shape
 * (`POST /v1/audio/speech`).
 *
 * XTTS speaks with a speaker's latents. A call names a built-in speaker,
 * which resolves through `/studio_speakers` (cached in the client for
 * `speakersTtlMs`, see {@linkcode TtsClient.refreshSpeakers}), or passes
 * latents itself, such as those {@linkcode TtsClient.cloneSpeaker} computed
 * for a custom voice.
 *
 * Output formats, for filling `TTSAudioChunk` and `TTSFullResponse`:
 * `synthesize()` returns WAV and its format as read from the WAV header
 * (XTTS: 24 kHz, mono, 16-bit); `synthesizeStream()` yields raw
 * `pcm_s16le` at 24 kHz mono (XTTS and OpenAI `pcm`), or a WAV header first
 * when XTTS is asked for one. Synthesis has no side effects, so calls are
 * retried on connection errors and 429/502/503/504 (a stream only before its
 * first byte).
 *
 * Requires `--allow-net` to the TTS host.
 *
 * @example Stream speech as it is synthesized
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { concatBytes, startFakeXtts } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeXtts({ chunkBytes: 960 }); // stands in for XTTS
 * const tts = createTtsClient({ baseUrl: server.url });
 * const stream = tts.synthesizeStream("Hello there.", { speaker: "Ana Florence", language: "en" });
 * const chunks: Uint8Array[] = [];
 * for await (const pcm of stream) chunks.push(pcm); // play each as it comes
 * assert.ok(chunks.length > 1);
 * assert.equal(stream.format.sampleRate, 24000);
 * assert.deepEqual(concatBytes(chunks), server.pcmFor("Hello there."));
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import { InvalidArgumentError, InvalidResponseError } from "../errors.ts";
import {
  backendUrlVar,
  type ClientFromConfigOptions,
  type ClientOptions,
  createHttpClient,
} from "./http.ts";
import { isWav, parseWav, type PcmFormat } from "./wav.ts";
import { isNumberArray, isRecord } from "./_json.ts";

/** The request shapes a TTS server may speak. */
export type TtsApi = "xtts" | "openai";

/** How audio bytes are encoded (the names of the `AudioEncoding` wire enum). */
export type AudioEncodingName = "pcm_s16le" | "wav";

/** The format of synthesized audio. */
export interface AudioFormat extends PcmFormat {
  /** `"wav"` for a WAV file (header included), `"pcm_s16le"` for raw samples. */
  encoding: AudioEncodingName;
}

/** An XTTS speaker: the conditioning latents the model speaks with. */
export interface SpeakerLatents {
  /** The speaker embedding (512 numbers for XTTS v2). */
  speakerEmbedding: number[];
  /** The GPT conditioning latent (rows of 1024 numbers for XTTS v2). */
  gptCondLatent: number[][];
}

/** Options of {@linkcode createTtsClient}. */
export interface TtsClientOptions extends ClientOptions {
  /**
   * The request shape.
   *
   * @default "xtts"
   */
  api?: TtsApi;
  /**
   * The speaker of calls that name none: an XTTS studio speaker, or an OpenAI voice.
   *
   * @default XTTS: the first studio speaker; OpenAI: "alloy"
   */
  defaultSpeaker?: string;
  /**
   * The language of calls that name none.
   *
   * @default "en"
   */
  language?: string;
  /**
   * How long the studio speakers are cached, in milliseconds.
   *
   * @default 600000
   */
  speakersTtlMs?: number;
  /**
   * The XTTS `stream_chunk_size` (tokens per streamed chunk; smaller starts sooner).
   *
   * @default 20
   */
  streamChunkSize?: number;
  /**
   * The `model` of OpenAI-shaped requests.
   *
   * @default "tts-1"
   */
  model?: string;
}

/** Options of one synthesis. */
export interface SynthesizeOptions {
  /**
   * A studio speaker's name (an OpenAI voice), or XTTS latents.
   *
   * @default the client's `defaultSpeaker`
   */
  speaker?: string | SpeakerLatents;
  /**
   * The language of the text.
   *
   * @default the client's `language`
   */
  language?: string;
  /**
   * Cancels the call (the request is closed).
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** Options of one streamed synthesis. */
export interface SynthesizeStreamOptions extends SynthesizeOptions {
  /**
   * Ask XTTS to send a WAV header (with a length of 0) before the samples.
   *
   * @default false
   */
  addWavHeader?: boolean;
  /**
   * The XTTS `stream_chunk_size` of this call.
   *
   * @default the client's `streamChunkSize`
   */
  streamChunkSize?: number;
}

/** Synthesized audio. */
export interface SynthesizedAudio {
  /** The audio bytes. */
  audio: Uint8Array;
  /** Their format. */
  format: AudioFormat;
}

/**
 * Streamed audio: iterate it for the chunks as the server sends them. It can
 * be iterated once; leaving the loop early or disposing it closes the request.
 */
export interface TtsStream extends AsyncIterable<Uint8Array>, AsyncDisposable {
  /** The format of the concatenated chunks. */
  readonly format: AudioFormat;
}

/** Options of calls that only wait. */
export interface TtsCallOptions {
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** A text-to-speech client. */
export interface TtsClient {
  /** The request shape in use. */
  readonly api: TtsApi;
  /**
   * Synthesizes the whole text into one WAV file.
   *
   * @param text The text to speak.
   * @param options Speaker, language and signal.
   * @returns The audio and its format.
   * @throws {InvalidArgumentError} When the text is empty or the speaker unknown.
   * @throws {InvalidResponseError} When the answer is not a WAV file.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  synthesize(text: string, options?: SynthesizeOptions): Promise<SynthesizedAudio>;
  /**
   * Synthesizes the text as a stream of audio chunks. The request starts when
   * iteration starts; iteration throws the errors of
   * {@linkcode TtsClient.synthesize}, and {@linkcode BackendUnavailableError}
   * when the stream is cut.
   *
   * @param text The text to speak.
   * @param options Speaker, language, WAV header, chunk size and signal.
   * @returns The stream.
   * @throws {InvalidArgumentError} When the text is empty.
   */
  synthesizeStream(text: string, options?: SynthesizeStreamOptions): TtsStream;
  /**
   * Computes the latents of a custom voice from a reference recording (XTTS only).
   *
   * @param wav The reference recording as a WAV file.
   * @param options The signal.
   * @returns The latents to pass as `speaker`.
   * @throws {InvalidArgumentError} When the input is not WAV or the API is not XTTS.
   * @throws {InvalidResponseError | BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  cloneSpeaker(wav: Uint8Array, options?: TtsCallOptions): Promise<SpeakerLatents>;
  /**
   * The built-in speakers, from the cache while it is fresh (XTTS only).
   *
   * @param options The signal.
   * @returns The speakers by name.
   * @throws {InvalidArgumentError} When the API is not XTTS.
   * @throws {InvalidResponseError | BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  studioSpeakers(options?: TtsCallOptions): Promise<ReadonlyMap<string, SpeakerLatents>>;
  /**
   * Fetches the built-in speakers again and refreshes the cache (XTTS only).
   *
   * @param options The signal.
   * @returns The speakers by name.
   * @throws {InvalidArgumentError | InvalidResponseError | BackendUnavailableError | BackendError | TimeoutError} As {@linkcode TtsClient.studioSpeakers}.
   */
  refreshSpeakers(options?: TtsCallOptions): Promise<ReadonlyMap<string, SpeakerLatents>>;
}

const BACKEND = "tts";
/** XTTS v2 writes 24 kHz mono 16-bit; the OpenAI `pcm` format is the same. */
const PCM_24K: AudioFormat = {
  sampleRate: 24000,
  channels: 1,
  bitDepth: 16,
  encoding: "pcm_s16le",
};

/**
 * Creates a text-to-speech client.
 *
 * @param options The base URL, API shape, defaults, cache TTL and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Speak with a cloned voice
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { isWav, wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 * import { startFakeXtts } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeXtts();
 * const tts = createTtsClient({ baseUrl: server.url, timeoutMs: 60000 });
 * const reference = wrapPcmAsWav(new Uint8Array(48000)); // or Deno.readFile("voices/ada/reference.wav")
 * const speaker = await tts.cloneSpeaker(reference);
 * const { audio, format } = await tts.synthesize("Hello.", { speaker });
 * assert.ok(isWav(audio));
 * assert.equal(format.sampleRate, 24000);
 * ```
 */
export function createTtsClient(options: TtsClientOptions): TtsClient {
  const http = createHttpClient(BACKEND, options);
  const api = options.api ?? "xtts";
  const ttlMs = options.speakersTtlMs ?? 600_000;
  let speakers: { value: ReadonlyMap<string, SpeakerLatents>; fetchedAt: number } | undefined;

  function requireXtts(what: string): void {
    if (api !== "xtts") {
      throw new InvalidArgumentError(`Cannot ${what}: the "${api}" TTS API does not support it`);
    }
  }

  function checkText(text: string): void {
    if (text.trim() === "") {
      throw new InvalidArgumentError("Cannot synthesize speech: the text is empty");
    }
  }

  async function refreshSpeakers(call: TtsCallOptions = {}) {
    requireXtts("list studio speakers");
    const answer = await http.json("/studio_speakers", { signal: call.signal });
    if (!isRecord(answer)) {
      throw new InvalidResponseError(BACKEND, "the speakers are not an object");
    }
    const value = new Map<string, SpeakerLatents>();
    for (const [name, latents] of Object.entries(answer)) value.set(name, toLatents(latents));
    speakers = { value, fetchedAt: Date.now() };
    return value;
  }

  async function studioSpeakers(call: TtsCallOptions = {}) {
    if (speakers && Date.now() - speakers.fetchedAt < ttlMs) return speakers.value;
    return await refreshSpeakers(call);
  }

  async function resolveSpeaker(
    speaker: string | SpeakerLatents | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SpeakerLatents> {
    if (typeof speaker === "object") return speaker;
    const cachedBefore = speakers !== undefined;
    let known = await studioSpeakers({ signal });
    const name = speaker ?? options.defaultSpeaker ?? known.keys().next().value;
    if (name === undefined) {
      throw new InvalidArgumentError("Cannot synthesize speech: the server has no studio speakers");
    }
    // A speaker added since the cache was filled is found after one refresh.
    if (!known.has(name) && cachedBefore) known = await refreshSpeakers({ signal });
    const latents = known.get(name);
    if (!latents) {
      throw new InvalidArgumentError(`Cannot synthesize speech: unknown speaker "${name}"`);
    }
    return latents;
  }

  async function xttsBody(
    text: string,
    call: SynthesizeOptions,
  ): Promise<Record<string, unknown>> {
    const latents = await resolveSpeaker(call.speaker, call.signal);
    return {
      text,
      language: call.language ?? options.language ?? "en",
      speaker_embedding: latents.speakerEmbedding,
      gpt_cond_latent: latents.gptCondLatent,
    };
  }

  function openaiBody(text: string, call: SynthesizeOptions, format: string) {
    if (typeof call.speaker === "object") {
      throw new InvalidArgumentError(
        'Cannot synthesize speech: the "openai" TTS API takes a voice name, not latents',
      );
    }
    return {
      model: options.model ?? "tts-1",
      input: text,
      voice: call.speaker ?? options.defaultSpeaker ?? "alloy",
      response_format: format,
    };
  }

  async function synthesize(text: string, call: SynthesizeOptions = {}): Promise<SynthesizedAudio> {
    checkText(text);
    let audio: Uint8Array;
    if (api === "xtts") {
      const json = await xttsBody(text, call);
      const answer = await http.json("/tts", { json, idempotent: true, signal: call.signal });
      if (typeof answer !== "string") {
        throw new InvalidResponseError(BACKEND, "the body is not a base64 string");
      }
      audio = decodeBase64(answer);
    } else {
      const json = openaiBody(text, call, "wav");
      ({ body: audio } = await http.bytes("/v1/audio/speech", {
        json,
        idempotent: true,
        signal: call.signal,
      }));
    }
    return { audio, format: wavFormat(audio) };
  }

  function synthesizeStream(text: string, call: SynthesizeStreamOptions = {}): TtsStream {
    checkText(text);
    const withHeader = api === "xtts" && (call.addWavHeader ?? false);
    const format: AudioFormat = { ...PCM_24K, encoding: withHeader ? "wav" : "pcm_s16le" };
    async function* chunks(): AsyncGenerator<Uint8Array, void, undefined> {
      let path = "/v1/audio/speech";
      let json: Record<string, unknown>;
      if (api === "xtts") {
        path = "/tts_stream";
        json = await xttsBody(text, call);
        json.add_wav_header = withHeader;
        // The server declares this field as a string.
        json.stream_chunk_size = String(call.streamChunkSize ?? options.streamChunkSize ?? 20);
      } else {
        json = openaiBody(text, call, "pcm");
      }
      await using body = await http.stream(path, { json, idempotent: true, signal: call.signal });
      for await (const chunk of body) if (chunk.byteLength > 0) yield chunk;
    }
    return new AudioStream(chunks, format);
  }

  async function cloneSpeaker(wav: Uint8Array, call: TtsCallOptions = {}) {
    requireXtts("clone a speaker");
    parseWav(wav);
    const form = new FormData();
    form.append(
      "wav_file",
      new Blob([new Uint8Array(wav)], { type: "audio/wav" }),
      "reference.wav",
    );
    const answer = await http.json("/clone_speaker", {
      body: form,
      idempotent: true,
      signal: call.signal,
    });
    return toLatents(answer);
  }

  return {
    api,
    synthesize,
    synthesizeStream,
    cloneSpeaker,
    studioSpeakers,
    refreshSpeakers,
  };
}

class AudioStream implements TtsStream {
  readonly format: AudioFormat;
  readonly #open: () => AsyncGenerator<Uint8Array, void, undefined>;
  #iterator: AsyncGenerator<Uint8Array, void, undefined> | undefined;

  constructor(open: () => AsyncGenerator<Uint8Array, void, undefined>, format: AudioFormat) {
    this.#open = open;
    this.format = format;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.#iterator) throw new TypeError("Cannot iterate a TTS stream twice");
    this.#iterator = this.#open();
    return this.#iterator;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#iterator?.return();
  }
}

function toLatents(value: unknown): SpeakerLatents {
  const embedding = isRecord(value) ? value.speaker_embedding : undefined;
  const latent = isRecord(value) ? value.gpt_cond_latent : undefined;
  if (!isNumberArray(embedding) || !Array.isArray(latent) || !latent.every(isNumberArray)) {
    throw new InvalidResponseError(BACKEND, "speaker latents are not lists of numbers");
  }
  return { speakerEmbedding: embedding, gptCondLatent: latent };
}

function decodeBase64(text: string): Uint8Array {
  let binary: string;
  try {
    binary = atob(text);
  } catch (error) {
    throw new InvalidResponseError(BACKEND, "the audio is not valid base64", { cause: error });
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function wavFormat(audio: Uint8Array): AudioFormat {
  if (!isWav(audio)) throw new InvalidResponseError(BACKEND, "the audio is not a WAV file");
  try {
    const { format } = parseWav(audio);
    return {
      sampleRate: format.sampleRate,
      channels: format.channels,
      bitDepth: format.bitDepth,
      encoding: "wav",
    };
  } catch (error) {
    throw new InvalidResponseError(BACKEND, "the audio is not a valid WAV file", { cause: error });
  }
}

/** The type of {@linkcode ttsConfigSpec}. */
export type TtsConfigSpec = {
  /** `TTS_URL`: the TTS server. */
  readonly ttsUrl: VarSpec<string>;
  /** `TTS_API`: `xtts` (the XTTS streaming server) or `openai` (`/v1/audio/speech`). */
  readonly ttsApi: VarSpec<TtsApi>;
  /** `TTS_TIMEOUT_MS`: one synthesis (for streams: the head and each wait for a chunk). */
  readonly ttsTimeoutMs: VarSpec<number>;
};

/**
 * The TTS backend's variables, declared once for every service that uses it:
 * `TTS_URL` (SYSTEM.md section 6), `TTS_API` (`xtts`) and `TTS_TIMEOUT_MS`
 * (60 s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { ttsConfigSpec } from "@homelab/handler-base/clients/tts";
 *
 * assert.equal(loadConfig(ttsConfigSpec, { TTS_API: "openai" }).ttsApi, "openai");
 * ```
 */
export const ttsConfigSpec: TtsConfigSpec = Object.freeze({
  ttsUrl: backendUrlVar("TTS_URL", "http://tts-predictor.ai-ml.svc.cluster.local"),
  ttsApi: envVar.oneOf("TTS_API", ["xtts", "openai"], { default: "xtts" }),
  ttsTimeoutMs: envVar.duration("TTS_TIMEOUT_MS", { default: 60_000 }),
});

/** Options of {@linkcode ttsClientFromConfig}. */
export interface TtsClientFromConfigOptions extends ClientFromConfigOptions {
  /**
   * The built-in speaker of calls that name none.
   *
   * @default the backend's first studio speaker (XTTS) or "alloy" (OpenAI)
   */
  defaultSpeaker?: string | undefined;
}

/**
 * The TTS client a loaded {@linkcode ttsConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @param options The logger and the default speaker.
 * @returns The client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { ttsClientFromConfig, ttsConfigSpec } from "@homelab/handler-base/clients/tts";
 *
 * const tts = ttsClientFromConfig(loadConfig(ttsConfigSpec, {}));
 * assert.equal(tts.api, "xtts");
 * ```
 */
export function ttsClientFromConfig(
  config: Config<TtsConfigSpec>,
  options: TtsClientFromConfigOptions = {},
): TtsClient {
  const { defaultSpeaker, logger, breakers } = options;
  return createTtsClient({
    ...(logger ? { logger } : {}),
    ...(breakers ? { breakers } : {}),
    baseUrl: config.ttsUrl,
    api: config.ttsApi,
    timeoutMs: config.ttsTimeoutMs,
    ...(defaultSpeaker ? { defaultSpeaker } : {}),
  });
}
