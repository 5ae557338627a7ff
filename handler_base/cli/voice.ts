/**
 * `voice`: voice-assistant over its contract (SYSTEM.md sections 4 and 5).
 * Sends a VoiceRequest with the WAV file's bytes on `ai.voice.request`,
 * collects the TTSAudioChunk messages of `ai.voice.response.audio.{request_id}`
 * (the first one gives the time to first audio), and takes the VoiceResponse
 * from the reply or from `ai.voice.response.{request_id}`. The audio written
 * is the VoiceResponse's, or the chunks assembled when it carries none (an
 * answer whose audio is larger than the NATS max payload comes only as
 * chunks). A VoiceResponse whose `error` is set fails the command (exit
 * code 1).
 *
 * @example
 * ```ts ignore
 * import { voice } from "./voice.ts";
 *
 * const result = await voice(ctx, { input: "question.wav", output: "answer.wav" });
 * console.log(result.transcription, result.firstAudioMs);
 * ```
 *
 * @module
 */
import {
  type TTSAudioChunk,
  TTSAudioChunkSchema,
  VoiceRequestSchema,
  VoiceResponseSchema,
} from "../messages.ts";
import { decodeMsg } from "../natsutil.ts";
import { chunksToWav, readInput } from "./audio.ts";
import { callService } from "./call.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";
import { writeOutput } from "./files.ts";
import { seconds } from "./output.ts";

/** Options of {@linkcode voice}. */
export interface VoiceOptions {
  /** The WAV file of the question. */
  input: string;
  /** The WAV file to write the spoken answer to. */
  output: string;
  /** The language of the question. @default the service's default */
  language?: string | undefined;
  /** The knowledge-base collection. @default the service's default */
  collection?: string | undefined;
  /** The request id. @default a new UUID */
  requestId?: string;
}

/** What {@linkcode voice} returns. */
export interface VoiceResult {
  /** The request id. */
  readonly requestId: string;
  /** What was understood. */
  readonly transcription: string;
  /** The answer's text. */
  readonly response: string;
  /** The knowledge-base sources used. */
  readonly sources: readonly { text: string; score: number }[];
  /** The WAV file written. */
  readonly output: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** How many audio chunks came before the answer. */
  readonly chunks: number;
  /** Milliseconds from the request to the first audio (chunk or full answer). */
  readonly firstAudioMs: number;
  /** Milliseconds from the request to the VoiceResponse. */
  readonly totalMs: number;
}

/**
 * Asks voice-assistant a spoken question and writes the spoken answer.
 *
 * @param ctx Connection, output, timeout.
 * @param options The input and output files.
 * @returns The transcription, answer and timings.
 * @throws {CliError} When the answer carries an error (exit code 1) or no audio.
 *
 * @example
 * ```ts ignore
 * await voice(ctx, { input: "in.wav", output: "out.wav" });
 * ```
 */
export async function voice(ctx: CommandContext, options: VoiceOptions): Promise<VoiceResult> {
  const { nc, ui } = ctx;
  const audio = await readInput(options.input);
  const requestId = options.requestId ?? crypto.randomUUID();
  const chunks: TTSAudioChunk[] = [];
  const started = performance.now();
  let firstAudioMs: number | undefined;
  const sub = nc.subscribe(`ai.voice.response.audio.${requestId}`, {
    callback: (_error, msg) => {
      try {
        const chunk = decodeMsg(TTSAudioChunkSchema, msg);
        chunks.push(chunk);
        if (chunk.audio.length > 0 && firstAudioMs === undefined) {
          firstAudioMs = performance.now() - started;
          ui.progress(`First audio after ${seconds(firstAudioMs)}`);
          ui.event("first_audio", { ms: Math.round(firstAudioMs) });
        }
      } catch {
        // Not a TTSAudioChunk: ignore.
      }
    },
  });
  let reply;
  try {
    ui.progress(`Asking voice-assistant (request ${requestId}, ${audio.length} bytes)...`);
    reply = await callService(nc, {
      subject: "ai.voice.request",
      requestSchema: VoiceRequestSchema,
      message: {
        requestId,
        audio,
        language: options.language ?? "",
        collection: options.collection ?? "",
      },
      responseSchema: VoiceResponseSchema,
      resultSubject: `ai.voice.response.${requestId}`,
      timeoutMs: ctx.timeoutMs,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    await nc.flush();
  } finally {
    sub.unsubscribe();
  }
  const totalMs = performance.now() - started;
  if (reply.transcription) ui.line(`transcription: ${reply.transcription}`);
  const wav = reply.audio.length > 0 ? reply.audio : chunks.length > 0 ? chunksToWav(chunks) : null;
  if (reply.error) {
    throw new CliError(
      EXIT_CODES.remoteError,
      `Cannot answer by voice: voice-assistant answered: ${reply.error}`,
    );
  }
  ui.line(`answer: ${reply.response}`);
  for (const source of reply.sources) {
    ui.progress(`  source (${source.score.toFixed(3)}): ${source.text.slice(0, 80)}`);
  }
  if (!wav) throw new CliError(EXIT_CODES.remoteError, "Cannot write the answer: it has no audio");
  await writeOutput(options.output, wav);
  const first = firstAudioMs ?? totalMs;
  ui.line(`time to first audio: ${seconds(first)} (answer complete after ${seconds(totalMs)})`);
  ui.progress(`Wrote ${wav.length} bytes to ${options.output}`);
  return {
    requestId,
    transcription: reply.transcription,
    response: reply.response,
    sources: reply.sources.map((s) => ({ text: s.text, score: s.score })),
    output: options.output,
    bytes: wav.length,
    chunks: chunks.length,
    firstAudioMs: Math.round(first),
    totalMs: Math.round(totalMs),
  };
}
