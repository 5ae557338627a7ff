/**
 * Stand-in for the STT service (Whisper on a GPU), recognising speech for
 * real and offline through Debian's `pocketsphinx` with its general US
 * English model (`pocketsphinx-en-us`). It serves the OpenAI shape of
 * SYSTEM.md section 7: `POST /v1/audio/transcriptions`, multipart `file` (a
 * WAV file), `model`, `language`, `response_format` (`json` -> `{text}`,
 * `text`, or `verbose_json` -> `{text, language, duration}`).
 *
 * Audio that is not 16 kHz mono 16-bit is converted with `sox` first.
 * Recognition runs `pocketsphinx_continuous -infile` as a bounded
 * subprocess (one at a time per spare core, killed when the client goes
 * away), at about half of real time on a small machine: keep utterances
 * short. It recognises clear, synthetic speech such as flite's well;
 * espeak-ng's much less. Without pocketsphinx every upload is answered with
 * a placeholder text that says so, and the readiness says what to install.
 *
 * Requires `--allow-net=127.0.0.1`, `--allow-run` (pocketsphinx_continuous,
 * sox), `--allow-read` of the model and the temporary directory,
 * `--allow-write` of the temporary directory and `--allow-env=PATH`.
 *
 * @example Transcribe through the project's client
 * ```ts ignore
 * import { startSttStandIn } from "./stt.ts";
 * import { createSttClient } from "../../handler_base/clients/stt.ts";
 *
 * await using stt = startSttStandIn();
 * const client = createSttClient({ baseUrl: stt.url, timeoutMs: 30000 });
 * const { text } = await client.transcribe(await Deno.readFile("lights.wav"));
 * console.log(text); // "turn on the kitchen lights"
 * ```
 *
 * @module
 */
import type { Logger } from "../../handler_base/log.ts";
import { isWav, parseWav, wrapPcmAsWav } from "../../handler_base/clients/wav.ts";
import { findProgram, Limiter, runProcess } from "./_process.ts";
import {
  HttpError,
  openAiError,
  readForm,
  type Readiness,
  serveStandIn,
  type StandIn,
} from "./_server.ts";

/** Where Debian's `pocketsphinx-en-us` puts the general US English model. */
export const POCKETSPHINX_MODEL_DIR = "/usr/share/pocketsphinx/model/en-us";

/** The text answered when pocketsphinx is not installed. */
export const STT_FALLBACK_TEXT = "speech was not recognised: pocketsphinx is not installed";

/** The largest upload (Whisper's own limit). */
const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;
/** The longest audio recognised, in seconds. */
const MAX_SECONDS = 120;
const RATE = 16000;

/** Options of {@linkcode startSttStandIn}. */
export interface SttStandInOptions {
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
  programs?: { pocketsphinx?: string | null; sox?: string | null };
  /**
   * The acoustic model, language model and dictionary folder.
   *
   * @default "/usr/share/pocketsphinx/model/en-us"
   */
  modelDir?: string;
  /**
   * How long one recognition may run, on top of twice the audio's length.
   *
   * @default 20000
   */
  timeoutMs?: number;
  /**
   * How many recognitions run at once.
   *
   * @default the number of cores minus one, at least one
   */
  concurrency?: number;
}

function modelFiles(dir: string): { hmm: string; lm: string; dict: string } | undefined {
  const files = {
    hmm: `${dir}/en-us`,
    lm: `${dir}/en-us.lm.bin`,
    dict: `${dir}/cmudict-en-us.dict`,
  };
  try {
    for (const path of Object.values(files)) Deno.statSync(path);
    return files;
  } catch {
    return undefined;
  }
}

/**
 * Starts the STT stand-in.
 *
 * @param options Port, logger, programs, model, limits.
 * @returns The running stand-in.
 */
export function startSttStandIn(options: SttStandInOptions = {}): StandIn {
  const logger = options.logger;
  const program = (key: "pocketsphinx" | "sox", name: string) => {
    const given = options.programs?.[key];
    return given === null ? undefined : given ?? findProgram(name);
  };
  const sox = program("sox", "sox");
  const modelDir = options.modelDir ?? POCKETSPHINX_MODEL_DIR;
  const model = modelFiles(modelDir);
  const pocketsphinx = model ? program("pocketsphinx", "pocketsphinx_continuous") : undefined;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const limiter = new Limiter(
    options.concurrency ?? Math.max(1, navigator.hardwareConcurrency - 1),
  );

  /** A 16 kHz mono 16-bit WAV file of the upload, and its length in seconds. */
  async function normalise(
    upload: Uint8Array,
    dir: string,
    signal: AbortSignal,
  ): Promise<{ path: string; seconds: number }> {
    if (!isWav(upload)) throw new HttpError(400, "Cannot transcribe: the file is not a WAV file");
    let parsed;
    try {
      parsed = parseWav(upload, { streaming: true });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw new HttpError(400, `Cannot transcribe: the WAV file is malformed (${detail})`);
    }
    const { format, data } = parsed;
    const frameBytes = format.channels * format.bitDepth / 8;
    const seconds = data.length / frameBytes / format.sampleRate;
    if (seconds > MAX_SECONDS) {
      throw new HttpError(400, `Cannot transcribe: the audio is longer than ${MAX_SECONDS} s`);
    }
    const path = `${dir}/audio.wav`;
    const ready = format.sampleRate === RATE && format.channels === 1 && format.bitDepth === 16 &&
      format.sampleFormat === "pcm";
    if (ready) {
      await Deno.writeFile(path, wrapPcmAsWav(data, { sampleRate: RATE }));
      return { path, seconds };
    }
    if (!sox) {
      throw new HttpError(
        400,
        `Cannot transcribe: ${format.sampleRate} Hz, ${format.channels} channel(s), ${format.bitDepth}-bit audio needs sox to convert (apt-get install sox)`,
      );
    }
    const input = `${dir}/input.wav`;
    await Deno.writeFile(input, upload);
    const { code, stderr } = await runProcess(
      sox,
      ["-V1", input, "-r", String(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", path],
      { timeoutMs, signal },
    );
    if (code !== 0) {
      throw new HttpError(
        400,
        `Cannot transcribe: sox could not convert the audio (${stderr.slice(0, 120)})`,
      );
    }
    return { path, seconds };
  }

  async function recognise(
    upload: Uint8Array,
    signal: AbortSignal,
  ): Promise<{ text: string; seconds: number }> {
    const dir = await Deno.makeTempDir({ prefix: "stand-in-stt-" });
    try {
      const { path, seconds } = await normalise(upload, dir, signal);
      if (!pocketsphinx || !model) return { text: STT_FALLBACK_TEXT, seconds };
      const args = [
        "-infile",
        path,
        "-hmm",
        model.hmm,
        "-lm",
        model.lm,
        "-dict",
        model.dict,
        "-logfn",
        "/dev/null",
      ];
      const { code, stdout, stderr } = await limiter.run(
        () => runProcess(pocketsphinx, args, { timeoutMs: timeoutMs + 2000 * seconds, signal }),
        signal,
      );
      if (code !== 0) {
        throw new Error(
          `Cannot transcribe: pocketsphinx exited with ${code}: ${stderr.slice(0, 200)}`,
        );
      }
      const text = new TextDecoder().decode(stdout).split("\n").map((l) => l.trim()).filter(Boolean)
        .join(" ");
      return { text, seconds };
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  const server = serveStandIn({
    name: "stt",
    port: options.port,
    logger,
    errorBody: openAiError,
    routes: {
      async "POST /v1/audio/transcriptions"(request, { signal }) {
        const form = await readForm(request, MAX_UPLOAD_BYTES);
        const file = form.get("file");
        const modelName = form.get("model");
        if (!(file instanceof Blob)) {
          throw new HttpError(400, "Cannot transcribe: file is required");
        }
        if (typeof modelName !== "string" || modelName === "") {
          throw new HttpError(400, "Cannot transcribe: model is required");
        }
        const language = form.get("language");
        if (typeof language === "string" && language !== "" && !/^en(?:[-_]|$)/i.test(language)) {
          throw new HttpError(
            400,
            `Cannot transcribe: the stand-in recognises English only, not "${
              language.slice(0, 10)
            }"`,
          );
        }
        const format = form.get("response_format") ?? "json";
        if (format !== "json" && format !== "text" && format !== "verbose_json") {
          throw new HttpError(
            400,
            `Cannot transcribe: response_format ${
              String(format).slice(0, 20)
            } is not supported (json, text, verbose_json)`,
          );
        }
        const { text, seconds } = await recognise(new Uint8Array(await file.arrayBuffer()), signal);
        if (format === "text") {
          return new Response(text, { headers: { "content-type": "text/plain" } });
        }
        if (format === "verbose_json") {
          return Response.json({
            task: "transcribe",
            language: "english",
            duration: seconds,
            text,
            segments: [],
          });
        }
        return Response.json({ text });
      },
    },
  });

  const missing = [
    !model && "pocketsphinx-en-us",
    !program("pocketsphinx", "pocketsphinx_continuous") && "pocketsphinx",
    !sox && "sox",
  ].filter(Boolean);
  const readiness: Readiness = {
    backend: "stt",
    url: server.url,
    standIn: pocketsphinx
      ? "real recognition: pocketsphinx, general US English model"
      : "a placeholder text (no speech recogniser installed)",
    ok: Boolean(pocketsphinx) && Boolean(sox),
    ...(missing.length > 0 ? { hint: `apt-get install ${missing.join(" ")}` } : {}),
  };
  return { url: server.url, readiness, close: server.close, [Symbol.asyncDispose]: server.close };
}
