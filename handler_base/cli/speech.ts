/**
 * `tts` and `voices`: tts-module over its contract (SYSTEM.md sections 4 and
 * 5). `tts` sends a TTSRequest on `ai.voice.tts.request.{session}` and writes
 * the TTSFullResponse audio, or with `stream` the TTSAudioChunk messages of
 * `ai.voice.tts.audio.{session}` assembled into one WAV file, following the
 * TTSStatus messages of `ai.voice.tts.status.{session}`. `voices` asks
 * `ai.voice.tts.voices.list` (or `.refresh`).
 *
 * @example
 * ```ts ignore
 * import { tts } from "./speech.ts";
 *
 * const result = await tts(ctx, { text: "Hello", output: "hello.wav", stream: true });
 * console.log(result.firstAudioMs);
 * ```
 *
 * @module
 */
import { abortable } from "../async.ts";
import {
  EmptySchema,
  type TTSAudioChunk,
  TTSAudioChunkSchema,
  TTSFullResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  type TTSVoiceInfo,
  TTSVoiceListResponseSchema,
  TTSVoiceRefreshResponseSchema,
} from "../messages.ts";
import { decodeMsg, RequestTimeoutError } from "../natsutil.ts";
import { chunksToWav } from "./audio.ts";
import { callService } from "./call.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";
import { writeOutput } from "./files.ts";
import { seconds } from "./output.ts";

/** Options of {@linkcode tts}. */
export interface TtsOptions {
  /** What to say. */
  text: string;
  /** The WAV file to write. */
  output: string;
  /** Ask for streamed chunks. @default false */
  stream?: boolean;
  /** The speaker (a custom voice or a backend speaker). @default the service's default */
  voice?: string | undefined;
  /** The language. @default the service's default */
  language?: string | undefined;
  /** The session id. @default a new UUID */
  sessionId?: string;
}

/** What {@linkcode tts} returns. */
export interface TtsResult {
  /** The session id. */
  readonly sessionId: string;
  /** The file written. */
  readonly output: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** The sample rate of the audio. */
  readonly sampleRate: number;
  /** How many chunks came (0 without streaming). */
  readonly chunks: number;
  /** Milliseconds from the request to the first audio. */
  readonly firstAudioMs: number;
}

/**
 * Synthesizes speech into a WAV file.
 *
 * @param ctx Connection, output, timeout.
 * @param options The text, the file and how.
 * @returns What was written.
 * @throws {CliError} When tts-module reports an error status (exit code 1).
 *
 * @example
 * ```ts ignore
 * await tts(ctx, { text: "Hi", output: "hi.wav" });
 * ```
 */
export async function tts(ctx: CommandContext, options: TtsOptions): Promise<TtsResult> {
  const { nc, ui } = ctx;
  const sessionId = options.sessionId ?? crypto.randomUUID();
  const stream = options.stream ?? false;
  const started = performance.now();
  const message = {
    text: options.text,
    speaker: options.voice ?? "",
    language: options.language ?? "",
    stream,
  };
  const signalPart = ctx.signal ? { signal: ctx.signal } : {};
  ui.progress(`Asking tts-module (session ${sessionId})...`);
  if (!stream) {
    const reply = await callService(nc, {
      subject: `ai.voice.tts.request.${sessionId}`,
      requestSchema: TTSRequestSchema,
      message,
      responseSchema: TTSFullResponseSchema,
      resultSubject: `ai.voice.tts.audio.${sessionId}`,
      timeoutMs: ctx.timeoutMs,
      ...signalPart,
    });
    const firstAudioMs = performance.now() - started;
    if (reply.audio.length === 0) {
      throw new CliError(
        EXIT_CODES.remoteError,
        "Cannot write the speech: the answer has no audio",
      );
    }
    await writeOutput(options.output, reply.audio);
    ui.progress(
      `Wrote ${reply.audio.length} bytes at ${reply.sampleRate} Hz to ${options.output} ` +
        `(audio after ${seconds(firstAudioMs)})`,
    );
    return {
      sessionId,
      output: options.output,
      bytes: reply.audio.length,
      sampleRate: reply.sampleRate,
      chunks: 0,
      firstAudioMs: Math.round(firstAudioMs),
    };
  }

  const chunks: TTSAudioChunk[] = [];
  let firstAudioMs: number | undefined;
  let resolveLast: () => void = () => {};
  let rejectLast: (error: unknown) => void = () => {};
  const last = new Promise<void>((resolve, reject) => {
    resolveLast = resolve;
    rejectLast = reject;
  });
  const audioSub = nc.subscribe(`ai.voice.tts.audio.${sessionId}`, {
    callback: (_error, msg) => {
      let chunk;
      try {
        chunk = decodeMsg(TTSAudioChunkSchema, msg);
      } catch {
        return; // A TTSFullResponse of another requester of the same session.
      }
      chunks.push(chunk);
      if (chunk.audio.length > 0) firstAudioMs ??= performance.now() - started;
      ui.event("chunk", {
        index: chunk.chunkIndex,
        bytes: chunk.audio.length,
        isLast: chunk.isLast,
      });
      if (chunks.length % 10 === 1 || chunk.isLast) {
        ui.progress(`  chunk ${chunk.chunkIndex}: ${chunk.audio.length} bytes`);
      }
      if (chunk.isLast) resolveLast();
    },
  });
  const statusSub = nc.subscribe(`ai.voice.tts.status.${sessionId}`, {
    callback: (_error, msg) => {
      try {
        const status = decodeMsg(TTSStatusSchema, msg);
        ui.event("status", { status: status.status, message: status.message });
        if (status.status === "error") {
          rejectLast(
            new CliError(EXIT_CODES.remoteError, `Cannot synthesize speech: ${status.message}`),
          );
        }
      } catch {
        // Not a TTSStatus: ignore.
      }
    },
  });
  const done = new AbortController();
  try {
    const deadline = AbortSignal.timeout(ctx.timeoutMs);
    const signals = [deadline, ...(ctx.signal ? [ctx.signal] : [])];
    const reply = callService(nc, {
      subject: `ai.voice.tts.request.${sessionId}`,
      requestSchema: TTSRequestSchema,
      message,
      responseSchema: TTSFullResponseSchema,
      timeoutMs: ctx.timeoutMs,
      signal: AbortSignal.any([done.signal, ...signals]),
    }).catch((error) => {
      // In JetStream mode the request is stored without a reply: the chunks still come.
      if (error instanceof RequestTimeoutError) return undefined;
      throw error;
    });
    reply.catch(() => {});
    await abortable(Promise.race([last, reply.then(() => last)]), AbortSignal.any(signals))
      .catch((error) => {
        if (deadline.aborted) {
          throw new RequestTimeoutError(`ai.voice.tts.audio.${sessionId}`, ctx.timeoutMs);
        }
        throw error;
      });
  } finally {
    done.abort();
    audioSub.unsubscribe();
    statusSub.unsubscribe();
  }
  const wav = chunksToWav(chunks);
  await writeOutput(options.output, wav);
  const sampleRate = chunks[0]?.sampleRate ?? 0;
  const firstMs = firstAudioMs ?? performance.now() - started;
  ui.progress(
    `Wrote ${wav.length} bytes (${chunks.length} chunks) at ${sampleRate} Hz to ${options.output} ` +
      `(first audio after ${seconds(firstMs)})`,
  );
  return {
    sessionId,
    output: options.output,
    bytes: wav.length,
    sampleRate,
    chunks: chunks.length,
    firstAudioMs: Math.round(firstMs),
  };
}

/** One voice in {@linkcode VoicesResult}. */
export interface VoiceEntry {
  /** The voice's name. */
  readonly name: string;
  /** Its language. */
  readonly language: string;
  /** The model type. */
  readonly modelType: string;
  /** When it was trained. */
  readonly createdAt: string;
}

/** What {@linkcode voices} returns. */
export interface VoicesResult {
  /** The default speaker (empty after a refresh, which does not say it). */
  readonly defaultSpeaker: string;
  /** The custom voices. */
  readonly voices: readonly VoiceEntry[];
  /** Whether the registry was rescanned. */
  readonly refreshed: boolean;
}

function voiceEntry(info: TTSVoiceInfo): VoiceEntry {
  return {
    name: info.name,
    language: info.language,
    modelType: info.modelType,
    createdAt: info.createdAt,
  };
}

/**
 * Lists tts-module's voices, after a rescan with `refresh`.
 *
 * @param ctx Connection, output, timeout.
 * @param options Whether to rescan first.
 * @returns The voices.
 *
 * @example
 * ```ts ignore
 * const { voices: list } = await voices(ctx, { refresh: true });
 * ```
 */
export async function voices(
  ctx: CommandContext,
  options: { refresh?: boolean } = {},
): Promise<VoicesResult> {
  const common = {
    requestSchema: EmptySchema,
    message: {},
    timeoutMs: ctx.timeoutMs,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  };
  let result: VoicesResult;
  if (options.refresh) {
    const reply = await callService(ctx.nc, {
      ...common,
      subject: "ai.voice.tts.voices.refresh",
      responseSchema: TTSVoiceRefreshResponseSchema,
    });
    result = { defaultSpeaker: "", voices: reply.customVoices.map(voiceEntry), refreshed: true };
  } else {
    const reply = await callService(ctx.nc, {
      ...common,
      subject: "ai.voice.tts.voices.list",
      responseSchema: TTSVoiceListResponseSchema,
    });
    result = {
      defaultSpeaker: reply.defaultSpeaker,
      voices: reply.customVoices.map(voiceEntry),
      refreshed: false,
    };
  }
  for (const line of formatVoices(result)) ctx.ui.line(line);
  return result;
}

/**
 * The human lines of a voice list.
 *
 * @param result The voices.
 * @returns One line per voice, after a heading.
 *
 * @example
 * ```ts
 * import { formatVoices } from "./speech.ts";
 *
 * console.log(formatVoices({ defaultSpeaker: "default", voices: [], refreshed: false }));
 * // ["default speaker: default", "no custom voices"]
 * ```
 */
export function formatVoices(result: VoicesResult): string[] {
  const lines = [];
  if (result.refreshed) lines.push(`rescanned: ${result.voices.length} custom voices`);
  else lines.push(`default speaker: ${result.defaultSpeaker}`);
  if (result.voices.length === 0) lines.push("no custom voices");
  for (const v of result.voices) {
    lines.push(`${v.name}\t${v.language}\t${v.modelType}\t${v.createdAt}`);
  }
  return lines;
}
