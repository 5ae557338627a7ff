/**
 * A client of an OpenAI-compatible transcription server (Whisper):
 * `POST /v1/audio/transcriptions` with a multipart `file`, `model`,
 * `language` and `response_format=json`, answering `{text}`.
 *
 * Raw PCM is wrapped in a WAV header first (16 kHz mono 16-bit unless said
 * otherwise); WAV input is checked and passed through. Transcription has no
 * side effects, so calls are retried on connection errors and
 * 429/502/503/504.
 *
 * Requires `--allow-net` to the Whisper host.
 *
 * @example Transcribe one second of PCM
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSttClient } from "@homelab/handler-base/clients/stt";
 * import { startFakeWhisper } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeWhisper({ transcript: "hello world" }); // stands in for Whisper
 * const stt = createSttClient({ baseUrl: server.url });
 * const { text } = await stt.transcribe(new Uint8Array(32000), { language: "en" });
 * assert.equal(text, "hello world");
 * assert.equal(server.requests[0]?.form?.get("language"), "en");
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
import { isWav, parseWav, type WavHeaderOptions, wrapPcmAsWav } from "./wav.ts";
import { isRecord } from "./_json.ts";

/** Options of {@linkcode createSttClient}. */
export interface SttClientOptions extends ClientOptions {
  /**
   * The `model` form field.
   *
   * @default "whisper-1"
   */
  model?: string;
  /**
   * The language of calls that name none (ISO 639-1, such as `"en"`).
   *
   * @default unset: the server detects the language
   */
  language?: string;
}

/** Options of one transcription. */
export interface TranscribeOptions {
  /**
   * The spoken language (ISO 639-1).
   *
   * @default the client's `language`
   */
  language?: string;
  /**
   * The layout of raw PCM input (ignored for WAV input).
   *
   * @default 16 kHz, mono, 16-bit
   */
  format?: WavHeaderOptions;
  /**
   * Text that guides the transcription (the `prompt` field).
   *
   * @default none
   */
  prompt?: string;
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** The result of a transcription. */
export interface Transcription {
  /** The recognised text, trimmed. */
  text: string;
  /** The language the server reports, when it does. */
  language?: string;
}

/** A speech-to-text client. */
export interface SttClient {
  /**
   * Transcribes audio.
   *
   * @param audio Raw PCM, or a whole WAV file.
   * @param options Language, PCM layout, prompt and signal.
   * @returns The transcription.
   * @throws {InvalidArgumentError} When the audio is empty or not valid PCM/WAV.
   * @throws {InvalidResponseError} When the answer has no `text`.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} When the call fails.
   */
  transcribe(audio: Uint8Array, options?: TranscribeOptions): Promise<Transcription>;
}

const BACKEND = "stt";

/**
 * Creates a speech-to-text client.
 *
 * @param options The base URL, model, default language and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Transcribe a WAV file
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSttClient } from "@homelab/handler-base/clients/stt";
 * import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 * import { startFakeWhisper } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeWhisper({ transcript: ({ model }) => `heard by ${model}` });
 * const stt = createSttClient({ baseUrl: server.url, model: "large-v3", timeoutMs: 20000 });
 * const wav = wrapPcmAsWav(new Uint8Array(3200), { sampleRate: 16000 }); // or Deno.readFile("hello.wav")
 * const { text } = await stt.transcribe(wav);
 * assert.equal(text, "heard by large-v3");
 * ```
 */
export function createSttClient(options: SttClientOptions): SttClient {
  const http = createHttpClient(BACKEND, options);
  const model = options.model ?? "whisper-1";

  return {
    async transcribe(audio, call = {}) {
      if (audio.byteLength === 0) {
        throw new InvalidArgumentError("Cannot transcribe audio: the audio is empty");
      }
      let wav: Uint8Array<ArrayBuffer>;
      if (isWav(audio)) {
        parseWav(audio);
        wav = new Uint8Array(audio);
      } else {
        wav = wrapPcmAsWav(audio, call.format);
      }
      const form = new FormData();
      form.append("file", new Blob([wav], { type: "audio/wav" }), "audio.wav");
      form.append("model", model);
      form.append("response_format", "json");
      const language = call.language ?? options.language;
      if (language) form.append("language", language);
      if (call.prompt) form.append("prompt", call.prompt);
      const answer = await http.json("/v1/audio/transcriptions", {
        body: form,
        idempotent: true,
        signal: call.signal,
      });
      if (!isRecord(answer) || typeof answer.text !== "string") {
        throw new InvalidResponseError(BACKEND, "text is missing");
      }
      const result: Transcription = { text: answer.text.trim() };
      if (typeof answer.language === "string") result.language = answer.language;
      return result;
    },
  };
}

/** The type of {@linkcode sttConfigSpec}. */
export type SttConfigSpec = {
  /** `WHISPER_URL`: the OpenAI-compatible transcription server. */
  readonly whisperUrl: VarSpec<string>;
  /** `WHISPER_MODEL`: the `model` form field. */
  readonly whisperModel: VarSpec<string>;
  /** `WHISPER_TIMEOUT_MS`: one transcription. */
  readonly whisperTimeoutMs: VarSpec<number>;
};

/**
 * The STT backend's variables, declared once for every service that uses
 * it: `WHISPER_URL` (SYSTEM.md section 6), `WHISPER_MODEL` (`whisper-1`) and
 * `WHISPER_TIMEOUT_MS` (60 s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { sttConfigSpec } from "@homelab/handler-base/clients/stt";
 *
 * assert.equal(loadConfig(sttConfigSpec, {}).whisperUrl, "http://whisper-predictor.ai-ml.svc.cluster.local");
 * ```
 */
export const sttConfigSpec: SttConfigSpec = Object.freeze({
  whisperUrl: backendUrlVar("WHISPER_URL", "http://whisper-predictor.ai-ml.svc.cluster.local"),
  whisperModel: envVar.string("WHISPER_MODEL", { default: "whisper-1" }),
  whisperTimeoutMs: envVar.duration("WHISPER_TIMEOUT_MS", { default: 60_000 }),
});

/**
 * The STT client a loaded {@linkcode sttConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @param options The logger.
 * @returns The client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { sttClientFromConfig, sttConfigSpec } from "@homelab/handler-base/clients/stt";
 *
 * const stt = sttClientFromConfig(loadConfig(sttConfigSpec, {}));
 * assert.equal(typeof stt.transcribe, "function");
 * ```
 */
export function sttClientFromConfig(
  config: Config<SttConfigSpec>,
  options: ClientFromConfigOptions = {},
): SttClient {
  return createSttClient({
    ...options,
    baseUrl: config.whisperUrl,
    model: config.whisperModel,
    timeoutMs: config.whisperTimeoutMs,
  });
}
