/**
 * A fake XTTS streaming server (and the OpenAI speech shape on the same
 * port): whole and streamed synthesis of a deterministic tone per
 * character, speaker cloning, studio speakers; streams can be paced, split
 * and cut.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Whole synthesis through the client
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { startFakeXtts } from "@homelab/handler-base/testing";
 *
 * await using xtts = startFakeXtts();
 * const tts = createTtsClient({ baseUrl: xtts.url });
 * const { audio, format } = await tts.synthesize("Hallo", { speaker: "Ana Florence" });
 * assert.deepEqual([format.encoding, format.sampleRate], ["wav", 24000]);
 * assert.deepEqual(audio.subarray(44), xtts.pcmFor("Hallo"));
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import { wrapPcmAsWav } from "../clients/wav.ts";
import {
  chunkBytes,
  type FakeContext,
  type FakeServer,
  type FakeServerOptions,
  notFound,
  pacedBody,
  startFakeHttpServer,
  type StreamPacing,
} from "./fake_http.ts";

/** XTTS speaker latents as the server sends them. */
export interface XttsLatents {
  /** The speaker embedding. */
  speaker_embedding: number[];
  /** The GPT conditioning latent. */
  gpt_cond_latent: number[][];
}

/** The behaviour of {@linkcode startFakeXtts}. */
export interface FakeXttsConfig extends StreamPacing {
  /**
   * The studio speakers.
   *
   * @default two speakers, "Ana Florence" and "Claribel Dervla", with small latents
   */
  speakers?: Record<string, XttsLatents>;
  /**
   * The output sample rate.
   *
   * @default 24000
   */
  sampleRate?: number;
  /**
   * Samples of audio per character of text.
   *
   * @default 240
   */
  samplesPerChar?: number;
  /**
   * The size of streamed pieces in bytes.
   *
   * @default 4800
   */
  chunkBytes?: number;
  /**
   * Send this many pieces of a stream, then break the connection.
   *
   * @default never
   */
  cutAfterChunks?: number;
}

/** A fake XTTS server. */
export interface FakeXtts extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeXttsConfig;
  /**
   * The 16-bit PCM the fake synthesizes for a text (what `/tts` wraps in
   * WAV and `/tts_stream` streams).
   *
   * @param text The text.
   * @returns Little-endian 16-bit mono samples.
   */
  pcmFor(text: string): Uint8Array;
}

const DEFAULT_SPEAKERS: Record<string, XttsLatents> = {
  "Ana Florence": { speaker_embedding: [0.1, 0.2, 0.3, 0.4], gpt_cond_latent: [[1, 2], [3, 4]] },
  "Claribel Dervla": { speaker_embedding: [0.5, 0.6, 0.7, 0.8], gpt_cond_latent: [[5, 6], [7, 8]] },
};

function xttsError(detail: string): Response {
  return Response.json({ detail }, { status: 422 });
}

/**
 * Starts a fake XTTS streaming server: `POST /tts` (a JSON string of a
 * base64 WAV), `POST /tts_stream` (chunked raw PCM, with a 44-byte WAV
 * header of length 0 first when `add_wav_header` is true), `POST
 * /clone_speaker` (multipart `wav_file`, latents derived from its size),
 * `GET /studio_speakers`, and the OpenAI shape `POST /v1/audio/speech`
 * (`response_format` `wav`, or `pcm` streamed).
 *
 * @param config The initial behaviour.
 * @param options Where it listens (a port to come back on after {@linkcode FakeServer.close}).
 * @returns The running fake.
 *
 * @example Release streamed chunks one at a time
 * ```ts
 * import assert from "node:assert/strict";
 * import { startFakeXtts } from "@homelab/handler-base/testing";
 *
 * const gates: PromiseWithResolvers<void>[] = [];
 * const gate = (i: number) => (gates[i] ??= Promise.withResolvers<void>());
 * gate(0).resolve();
 * await using xtts = startFakeXtts({ chunkBytes: 4, pace: (i) => gate(i).promise });
 * const response = await fetch(`${xtts.url}/v1/audio/speech`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ input: "a", voice: "Ana Florence", response_format: "pcm" }),
 * });
 * const reader = response.body!.getReader();
 * assert.deepEqual((await reader.read()).value, xtts.pcmFor("a").subarray(0, 4));
 * gate(1).resolve();
 * assert.deepEqual((await reader.read()).value, xtts.pcmFor("a").subarray(4, 8));
 * await reader.cancel();
 * ```
 */
export function startFakeXtts(
  config: FakeXttsConfig = {},
  options: FakeServerOptions = {},
): FakeXtts {
  function pcmFor(text: string): Uint8Array {
    const c = fake.config;
    const perChar = c.samplesPerChar ?? 240;
    const samples = new Int16Array(text.length * perChar);
    for (let i = 0; i < samples.length; i++) {
      const code = text.charCodeAt(Math.floor(i / perChar));
      samples[i] = Math.round(8000 * Math.sin((i * (code % 32 + 1)) / 20));
    }
    return new Uint8Array(samples.buffer);
  }

  function stream(pcm: Uint8Array, header: boolean, context: FakeContext): Response {
    const c = fake.config;
    const pieces = chunkBytes(pcm, c.chunkBytes ?? 4800);
    if (header) {
      pieces.unshift(wrapPcmAsWav(new Uint8Array(0), { sampleRate: c.sampleRate ?? 24000 }));
    }
    const cut = c.cutAfterChunks !== undefined;
    const sent = cut ? pieces.slice(0, c.cutAfterChunks) : pieces;
    return new Response(pacedBody(sent, context, { ...c, cut }), {
      headers: { "content-type": "audio/wav" },
    });
  }

  const fake: FakeXtts = Object.assign(
    startFakeHttpServer(async (request, context) => {
      const c = fake.config;
      const speakers = c.speakers ?? DEFAULT_SPEAKERS;
      const sampleRate = c.sampleRate ?? 24000;
      const body = isRecord(request.json) ? request.json : {};
      const route = `${request.method} ${request.path}`;
      if (route === "GET /studio_speakers") return Response.json(speakers);
      if (route === "POST /clone_speaker") {
        const file = request.form?.get("wav_file");
        if (!(file instanceof Blob)) return xttsError("wav_file is required");
        const size = (await file.arrayBuffer()).byteLength;
        return Response.json({
          gpt_cond_latent: [[size, 1], [2, 3]],
          speaker_embedding: [size / 1000, 0.5, 0.25, 0.125],
        });
      }
      if (route === "POST /tts" || route === "POST /tts_stream") {
        if (
          typeof body.text !== "string" || typeof body.language !== "string" ||
          !Array.isArray(body.speaker_embedding) || !Array.isArray(body.gpt_cond_latent)
        ) {
          return xttsError("text, language, speaker_embedding and gpt_cond_latent are required");
        }
        const pcm = pcmFor(body.text);
        if (route === "POST /tts_stream") return stream(pcm, body.add_wav_header === true, context);
        const wav = wrapPcmAsWav(pcm, { sampleRate });
        return Response.json(btoa(Array.from(wav, (b) => String.fromCharCode(b)).join("")));
      }
      if (route === "POST /v1/audio/speech") {
        if (typeof body.input !== "string" || typeof body.voice !== "string") {
          return xttsError("input and voice are required");
        }
        const pcm = pcmFor(body.input);
        if (body.response_format === "pcm") return stream(pcm, false, context);
        return new Response(wrapPcmAsWav(pcm, { sampleRate }), {
          headers: { "content-type": "audio/wav" },
        });
      }
      return notFound(request);
    }, options),
    { config, pcmFor },
  );
  return fake;
}
