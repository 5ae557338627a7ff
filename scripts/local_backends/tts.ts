/**
 * Stand-in for the TTS service (XTTS on a GPU), speaking for real and offline
 * through Debian's `flite` (voices slt, kal16, rms and awb, 16 kHz) and
 * `espeak-ng` (a second voice, and every language flite lacks). It serves
 * the XTTS streaming server API and the OpenAI speech API (SYSTEM.md
 * section 7), so the project's TTS client works against it unchanged:
 *
 * - `GET /studio_speakers` -> `{name: {speaker_embedding, gpt_cond_latent}}`,
 *   one speaker per installed voice (`flite-slt` first, the default).
 * - `POST /tts {text, language, speaker_embedding, gpt_cond_latent}` -> a
 *   JSON string: a base64 WAV, 16 kHz mono 16-bit.
 * - `POST /tts_stream {..., add_wav_header, stream_chunk_size}` -> chunked raw
 *   PCM at 24 kHz (what XTTS streams and the client expects), sentence by
 *   sentence as each is synthesized; a WAV header of length 0 first when
 *   `add_wav_header` is true.
 * - `POST /clone_speaker` (multipart `wav_file`) -> latents. Flite cannot
 *   clone: the stand-in picks one of its voices from the recording's bytes,
 *   the same voice for the same recording.
 * - `POST /v1/audio/speech {input, voice, response_format, speed}`:
 *   `wav` (16 kHz) or `pcm` (24 kHz, streamed). `voice` is a speaker name or
 *   an OpenAI voice (`alloy` is the default speaker).
 *
 * Latents name the voice they were given for; unknown latents speak with the
 * default voice. `language` other than English is spoken by espeak-ng.
 * Without flite and espeak-ng, a tone per word stands in for speech and the
 * readiness says what to install. Resampling (espeak-ng, streaming at
 * 24 kHz) needs `sox`. Every program runs as a bounded subprocess, killed
 * when the client goes away.
 *
 * Requires `--allow-net=127.0.0.1`, `--allow-run` (flite, espeak-ng, sox),
 * `--allow-read`/`--allow-write` of the temporary directory and
 * `--allow-env=PATH`.
 *
 * @example Speak through the project's client
 * ```ts ignore
 * import { startTtsStandIn } from "./tts.ts";
 * import { createTtsClient } from "../../handler_base/clients/tts.ts";
 *
 * await using tts = startTtsStandIn();
 * const client = createTtsClient({ baseUrl: tts.url });
 * const { audio, format } = await client.synthesize("Turn on the kitchen lights.");
 * console.log(format.sampleRate); // 16000
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { isNumberArray } from "../../handler_base/clients/_json.ts";
import { isWav, parseWav, wavHeader, wrapPcmAsWav } from "../../handler_base/clients/wav.ts";
import { resamplePcm, tonePcm } from "./_audio.ts";
import { findProgram, Limiter, runProcess } from "./_process.ts";
import {
  HttpError,
  readForm,
  type Readiness,
  readJsonObject,
  serveStandIn,
  type StandIn,
} from "./_server.ts";
import { sentences } from "./_text.ts";

/** The rate of whole WAV answers (flite's own). */
export const TTS_WAV_RATE = 16000;
/** The rate of streamed PCM (what XTTS streams, and the client assumes). */
export const TTS_STREAM_RATE = 24000;

/** The flite voices, in the order of the speakers (the first is the default). */
const FLITE_VOICES = ["slt", "kal16", "rms", "awb"] as const;
/** OpenAI voice names, mapped onto the stand-in's speakers by position. */
const OPENAI_VOICES = ["alloy", "echo", "onyx", "fable", "nova", "shimmer"];
/** Marks latents the stand-in handed out; the second number is the voice's index. */
const LATENT_MARK = 7071;
/** The most characters one request may speak. */
const MAX_TEXT_CHARS = 5000;
/** Bytes per streamed piece: 0.2 s at 24 kHz. */
const STREAM_PIECE_BYTES = 9600;

/** One voice of the stand-in. */
export interface TtsVoice {
  /** The speaker name (`flite-slt`, `espeak-ng`, `tone`). */
  name: string;
  /** The program that speaks it. */
  engine: "flite" | "espeak-ng" | "tone";
  /** The engine's voice name. */
  voice: string;
}

/** Options of {@linkcode startTtsStandIn}. */
export interface TtsStandInOptions {
  /**
   * The port (0: a free one).
   *
   * @default 0
   */
  port?: number;
  /**
   * Where bad requests and failures are logged.
   *
   * @default none
   */
  logger?: Logger;
  /**
   * The programs to use, or null to act as if one were missing (tests of the fallback).
   *
   * @default found on PATH
   */
  programs?: { flite?: string | null; espeakNg?: string | null; sox?: string | null };
  /**
   * How long one synthesis may run.
   *
   * @default 30000
   */
  timeoutMs?: number;
}

/** A running TTS stand-in. */
export interface TtsStandIn extends StandIn {
  /** Its voices, the default first. */
  readonly voices: readonly TtsVoice[];
}

/** The latents the stand-in hands out for its voice number `index`. */
function latentsOf(index: number): { speaker_embedding: number[]; gpt_cond_latent: number[][] } {
  const embedding = [LATENT_MARK, index];
  for (let i = 0; i < 6; i++) embedding.push(Math.round(Math.sin(index * 7 + i) * 1000) / 1000);
  return { speaker_embedding: embedding, gpt_cond_latent: [[index, 0.5], [0.25, 0.125]] };
}

/** The language tags espeak-ng may be asked for (keeps arguments harmless). */
const LANGUAGE = /^[a-z]{2,3}(?:-[a-z0-9]{2,8})?$/i;

/**
 * Starts the TTS stand-in.
 *
 * @param options Port, logger, programs and time limit.
 * @returns The running stand-in.
 */
export function startTtsStandIn(options: TtsStandInOptions = {}): TtsStandIn {
  const logger = options.logger;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const program = (key: "flite" | "espeakNg" | "sox", name: string) => {
    const given = options.programs?.[key];
    return given === null ? undefined : given ?? findProgram(name);
  };
  const flite = program("flite", "flite");
  const espeak = program("espeakNg", "espeak-ng");
  const sox = program("sox", "sox");
  const limiter = new Limiter(Math.max(2, navigator.hardwareConcurrency));

  const voices: TtsVoice[] = [];
  if (flite) {
    for (const v of FLITE_VOICES) voices.push({ name: `flite-${v}`, engine: "flite", voice: v });
  }
  if (espeak) voices.push({ name: "espeak-ng", engine: "espeak-ng", voice: "en-us" });
  if (voices.length === 0) voices.push({ name: "tone", engine: "tone", voice: "" });

  function voiceOfLatents(embedding: unknown): TtsVoice {
    if (isNumberArray(embedding) && embedding[0] === LATENT_MARK) {
      const voice = voices[embedding[1]!];
      if (voice) return voice;
    }
    return voices[0]!;
  }

  function voiceNamed(name: unknown): TtsVoice {
    if (typeof name !== "string") {
      throw new HttpError(400, "Cannot synthesize speech: voice must be a string");
    }
    const own = voices.find((v) => v.name === name);
    if (own) return own;
    const openai = OPENAI_VOICES.indexOf(name.toLowerCase());
    if (openai >= 0) return voices[openai % voices.length]!;
    throw new HttpError(
      400,
      `Cannot synthesize speech: unknown voice "${name.slice(0, 40)}" (known: ${
        voices.map((v) => v.name).join(", ")
      }, ${OPENAI_VOICES.join(", ")})`,
    );
  }

  function checkText(text: unknown): string {
    if (typeof text !== "string" || text.trim() === "") {
      throw new HttpError(422, "Cannot synthesize speech: the text is empty");
    }
    if (text.length > MAX_TEXT_CHARS) {
      throw new HttpError(422, `Cannot synthesize speech: more than ${MAX_TEXT_CHARS} characters`);
    }
    return text;
  }

  function checkLanguage(language: unknown): string {
    const tag = typeof language === "string" && language !== "" ? language : "en";
    if (!LANGUAGE.test(tag)) {
      throw new HttpError(422, `Cannot synthesize speech: "${tag.slice(0, 20)}" is not a language`);
    }
    return tag.toLowerCase();
  }

  /** Speaks one piece of text; returns 16-bit mono PCM and its rate. */
  async function speak(
    text: string,
    voice: TtsVoice,
    language: string,
    speed: number,
    signal: AbortSignal,
    rate: number = TTS_WAV_RATE,
  ): Promise<{ pcm: Uint8Array; rate: number }> {
    const english = language === "en" || language.startsWith("en-");
    if (!english && espeak) return await speakEspeak(text, language, speed, signal);
    if (!english && voice.engine !== "tone") {
      throw new HttpError(
        422,
        `Cannot synthesize speech: language "${language}" needs espeak-ng (apt-get install espeak-ng)`,
      );
    }
    if (voice.engine === "flite") return await speakFlite(text, voice.voice, speed, signal);
    if (voice.engine === "espeak-ng") return await speakEspeak(text, voice.voice, speed, signal);
    // The tone is made at the rate asked for: it needs no sox to resample.
    return { pcm: tonePcm(text, rate), rate };
  }

  async function speakFlite(text: string, voice: string, speed: number, signal: AbortSignal) {
    const out = await Deno.makeTempFile({ prefix: "stand-in-tts-", suffix: ".wav" });
    try {
      const args = ["-voice", voice];
      if (speed !== 1) args.push("--setf", `duration_stretch=${(1 / speed).toFixed(3)}`);
      args.push("-t", text, "-o", out);
      const { code, stderr } = await limiter.run(
        () => runProcess(flite!, args, { timeoutMs, signal }),
        signal,
      );
      if (code !== 0) {
        throw new Error(`Cannot synthesize speech: flite exited with ${code}: ${stderr}`);
      }
      const { format, data } = parseWav(await Deno.readFile(out));
      return { pcm: data, rate: format.sampleRate };
    } finally {
      await Deno.remove(out).catch(() => {});
    }
  }

  async function speakEspeak(text: string, voice: string, speed: number, signal: AbortSignal) {
    const args = ["-v", voice, "-s", String(Math.round(175 * speed)), "--stdin", "--stdout"];
    const { code, stdout, stderr } = await limiter.run(
      () => runProcess(espeak!, args, { stdin: new TextEncoder().encode(text), timeoutMs, signal }),
      signal,
    );
    if (code !== 0 || !isWav(stdout)) {
      if (/voice does not exist/i.test(stderr)) {
        throw new HttpError(422, `Cannot synthesize speech: espeak-ng has no voice "${voice}"`);
      }
      throw new Error(`Cannot synthesize speech: espeak-ng exited with ${code}: ${stderr}`);
    }
    const { format, data } = parseWav(stdout, { streaming: true });
    return { pcm: data, rate: format.sampleRate };
  }

  async function toRate(
    audio: { pcm: Uint8Array; rate: number },
    rate: number,
    signal: AbortSignal,
  ): Promise<{ pcm: Uint8Array; rate: number }> {
    if (audio.rate === rate) return audio;
    if (!sox) {
      if (rate === TTS_STREAM_RATE) {
        throw new HttpError(
          503,
          "Cannot stream speech: resampling to 24 kHz needs sox (apt-get install sox)",
        );
      }
      return audio; // A WAV at the engine's own rate is still valid.
    }
    return { pcm: await resamplePcm(sox, audio.pcm, audio.rate, rate, signal), rate };
  }

  /** Whole speech as one WAV at 16 kHz. */
  async function wav(
    text: string,
    voice: TtsVoice,
    language: string,
    speed: number,
    signal: AbortSignal,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const audio = await toRate(
      await speak(text, voice, language, speed, signal),
      TTS_WAV_RATE,
      signal,
    );
    return wrapPcmAsWav(audio.pcm, { sampleRate: audio.rate });
  }

  /**
   * Streamed speech at 24 kHz, sentence by sentence. The first sentence is
   * synthesized before the response starts, so bad input still gets a status.
   */
  async function stream(
    text: string,
    voice: TtsVoice,
    language: string,
    speed: number,
    header: boolean,
    signal: AbortSignal,
  ): Promise<Response> {
    const parts = sentences(text);
    const next = async (i: number) =>
      (await toRate(
        await speak(parts[i]!, voice, language, speed, signal, TTS_STREAM_RATE),
        TTS_STREAM_RATE,
        signal,
      ))
        .pcm;
    const first = await next(0);
    let index = 0;
    let pending: Uint8Array[] = [];
    if (header) pending.push(wavHeader(0, { sampleRate: TTS_STREAM_RATE }));
    pending.push(...pieces(first));
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          while (pending.length === 0) {
            if (++index >= parts.length) return controller.close();
            pending = pieces(await next(index));
          }
          controller.enqueue(pending.shift()!);
        } catch (error) {
          if (!signal.aborted) logger?.error("Streaming speech failed", { error });
          controller.error(error);
        }
      },
    });
    return new Response(body, { headers: { "content-type": "application/octet-stream" } });
  }

  function pieces(pcm: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < pcm.length; i += STREAM_PIECE_BYTES) {
      out.push(pcm.subarray(i, i + STREAM_PIECE_BYTES));
    }
    return out;
  }

  function readSpeed(value: unknown): number {
    if (value === undefined || value === null) return 1;
    if (typeof value !== "number" || !(value >= 0.25 && value <= 4)) {
      throw new HttpError(400, "Cannot synthesize speech: speed must be a number in [0.25, 4]");
    }
    return value;
  }

  const server = serveStandIn({
    name: "tts",
    port: options.port,
    logger,
    errorBody: (_status, message) => ({ detail: message }),
    routes: {
      "GET /studio_speakers"() {
        return Response.json(Object.fromEntries(voices.map((v, i) => [v.name, latentsOf(i)])));
      },
      async "POST /tts"(request, { signal }) {
        const body = await readJsonObject(request);
        const text = checkText(body.text);
        const language = checkLanguage(body.language);
        const audio = await wav(text, voiceOfLatents(body.speaker_embedding), language, 1, signal);
        return Response.json(encodeBase64(audio));
      },
      async "POST /tts_stream"(request, { signal }) {
        const body = await readJsonObject(request);
        const text = checkText(body.text);
        const language = checkLanguage(body.language);
        const voice = voiceOfLatents(body.speaker_embedding);
        return await stream(text, voice, language, 1, body.add_wav_header === true, signal);
      },
      async "POST /clone_speaker"(request) {
        const form = await readForm(request, 50 * 1024 * 1024);
        const file = form.get("wav_file");
        if (!(file instanceof Blob)) {
          throw new HttpError(422, "Cannot clone the speaker: wav_file is required");
        }
        const bytes = new Uint8Array(await file.arrayBuffer());
        try {
          parseWav(bytes);
        } catch {
          throw new HttpError(422, "Cannot clone the speaker: wav_file is not a WAV file");
        }
        let h = 2166136261;
        for (let i = 0; i < bytes.length; i += 97) h = Math.imul(h ^ bytes[i]!, 16777619);
        return Response.json(latentsOf((h >>> 0) % voices.length));
      },
      async "POST /v1/audio/speech"(request, { signal }) {
        const body = await readJsonObject(request);
        const text = checkText(body.input);
        const voice = voiceNamed(body.voice ?? "alloy");
        const speed = readSpeed(body.speed);
        const format = body.response_format ?? "wav";
        if (format === "pcm") return await stream(text, voice, "en", speed, false, signal);
        if (format !== "wav") {
          throw new HttpError(
            400,
            `Cannot synthesize speech: response_format ${
              String(format).slice(0, 20)
            } is not supported by the stand-in (wav or pcm)`,
          );
        }
        return new Response(await wav(text, voice, "en", speed, signal), {
          headers: { "content-type": "audio/wav" },
        });
      },
    },
  });

  const missing = [!flite && "flite", !espeak && "espeak-ng", !sox && "sox"].filter(Boolean);
  const readiness: Readiness = {
    backend: "tts",
    url: server.url,
    standIn: flite || espeak
      ? `real speech: ${voices.map((v) => v.name).join(", ")}`
      : "a tone per word (no speech synthesizer installed)",
    ok: Boolean(flite) && Boolean(sox),
    ...(missing.length > 0 ? { hint: `apt-get install ${missing.join(" ")}` } : {}),
  };
  return {
    url: server.url,
    voices,
    readiness,
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
