/**
 * A fake OpenAI transcription server (Whisper): multipart uploads of WAV
 * files, transcribed to a fixed text or to a test's function of the upload.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeWhisper } from "@homelab/handler-base/testing";
 *
 * await using whisper = startFakeWhisper();
 * const form = new FormData();
 * form.set("file", new Blob([new TextEncoder().encode("not a wav")]), "a.wav");
 * form.set("model", "whisper");
 * const response = await fetch(`${whisper.url}/v1/audio/transcriptions`, { method: "POST", body: form });
 * assert.equal(response.status, 400);
 * await response.body?.cancel();
 * ```
 *
 * @module
 */
import { type FakeServer, notFound, startFakeHttpServer } from "./fake_http.ts";

/** What a fake Whisper transcribes. */
export interface FakeWhisperInput {
  /** The uploaded file. */
  file: Uint8Array;
  /** The `model` field. */
  model: string;
  /** The `language` field, when sent. */
  language?: string;
}

/** The behaviour of {@linkcode startFakeWhisper}. */
export interface FakeWhisperConfig {
  /**
   * The transcript, or a function of the upload.
   *
   * @default "hello world"
   */
  transcript?: string | ((input: FakeWhisperInput) => string);
}

/** A fake Whisper server. */
export interface FakeWhisper extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeWhisperConfig;
}

/**
 * Starts a fake OpenAI transcription server
 * (`POST /v1/audio/transcriptions`, multipart `file`, `model`, `language`,
 * `response_format`). Files that are not WAV get a 400.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Transcribe by audio length
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSttClient } from "@homelab/handler-base/clients/stt";
 * import { startFakeWhisper } from "@homelab/handler-base/testing";
 *
 * await using whisper = startFakeWhisper({ transcript: ({ file }) => `${file.length} bytes` });
 * const stt = createSttClient({ baseUrl: whisper.url });
 * const { text } = await stt.transcribe(new Uint8Array(100));
 * assert.equal(text, "144 bytes"); // the samples in a 44-byte WAV header
 * ```
 */
export function startFakeWhisper(config: FakeWhisperConfig = {}): FakeWhisper {
  const fake: FakeWhisper = Object.assign(
    startFakeHttpServer(async (request) => {
      if (request.method !== "POST" || request.path !== "/v1/audio/transcriptions") {
        return notFound(request);
      }
      const file = request.form?.get("file");
      const model = request.form?.get("model");
      if (!(file instanceof Blob) || typeof model !== "string") {
        return Response.json({ error: { message: "file and model are required" } }, {
          status: 400,
        });
      }
      const bytes = new Uint8Array(await file.arrayBuffer());
      const magic = new TextDecoder().decode(bytes.subarray(0, 4));
      if (magic !== "RIFF") {
        return Response.json({ error: { message: "the file is not a WAV file" } }, { status: 400 });
      }
      const language = request.form?.get("language");
      const input: FakeWhisperInput = { file: bytes, model };
      if (typeof language === "string") input.language = language;
      const t = fake.config.transcript;
      const text = typeof t === "function" ? t(input) : t ?? "hello world";
      return Response.json({ text });
    }),
    { config },
  );
  return fake;
}
