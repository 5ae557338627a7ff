/**
 * `stt` and `listen`: stt-module over its contract (SYSTEM.md sections 4 and
 * 5). Audio goes out as STTStreamMessage `start`, `chunk`..., `end` on
 * `ai.voice.stream.{session}`, in chunks of `chunkMs` of audio paced at real
 * time (from a WAV file) or as the microphone records them; STTTranscription
 * (and STTInterrupt) messages of `ai.voice.transcription.{session}` are
 * printed as they come. After `end` the client waits for the session's final
 * transcription: a final one after `end`, or `settleMs` of quiet when the
 * last one received was already final.
 *
 * @example
 * ```ts ignore
 * import { stt } from "./stt.ts";
 *
 * const result = await stt(ctx, { file: "question.wav" });
 * console.log(result.transcript);
 * ```
 *
 * @module
 */
import { delay } from "../async.ts";
import type { PcmFormat } from "../clients/wav.ts";
import {
  AudioEncoding,
  decodeOneOf,
  MSG_TYPE_HEADER,
  type STTInterrupt,
  STTInterruptSchema,
  STTStreamMessageSchema,
  type STTTranscription,
  STTTranscriptionSchema,
  unixSeconds,
} from "../messages.ts";
import { publish } from "../natsutil.ts";
import { readPcmWav } from "./audio.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";
import { seconds } from "./output.ts";

/** How the audio is cut and paced. */
export interface StreamingOptions {
  /** Audio per chunk, in milliseconds. @default 100 */
  chunkMs?: number;
  /** The session id. @default a new UUID */
  sessionId?: string;
  /**
   * How long to wait, after `end`, for more transcriptions when the last one
   * was final, in milliseconds.
   *
   * @default 3000
   */
  settleMs?: number;
}

/** What {@linkcode stt} and {@linkcode listen} return. */
export interface SttResult {
  /** The session id. */
  readonly sessionId: string;
  /** The final transcriptions joined by spaces. */
  readonly transcript: string;
  /** How many transcriptions came (partial and final). */
  readonly transcriptions: number;
  /** How many interrupts came. */
  readonly interrupts: number;
  /** How many audio chunks were sent. */
  readonly chunksSent: number;
  /** The seconds of audio sent. */
  readonly audioSeconds: number;
}

/**
 * The bytes of `chunkMs` of audio, in whole frames.
 *
 * @param format The audio's format.
 * @param chunkMs Milliseconds of audio.
 * @returns Bytes per chunk.
 *
 * @example
 * ```ts
 * import { chunkBytes } from "./stt.ts";
 *
 * console.log(chunkBytes({ sampleRate: 16000, channels: 1, bitDepth: 16 }, 100)); // 3200
 * ```
 */
export function chunkBytes(format: PcmFormat, chunkMs: number): number {
  const frames = Math.max(1, Math.round(format.sampleRate * chunkMs / 1000));
  return frames * format.channels * (format.bitDepth / 8);
}

/**
 * Cuts PCM into chunks of `chunkMs`, yielding each when its audio would
 * start playing (`speed` times real time; 0 for no pacing).
 *
 * @param pcm The samples.
 * @param format Their format.
 * @param options Chunk length, pace and cancellation.
 * @returns The chunks, paced.
 *
 * @example
 * ```ts
 * import { pacedChunks } from "./stt.ts";
 *
 * const format = { sampleRate: 16000, channels: 1, bitDepth: 16 };
 * const sizes = [];
 * for await (const chunk of pacedChunks(new Uint8Array(8000), format, { speed: 0 })) {
 *   sizes.push(chunk.length);
 * }
 * console.log(sizes); // [3200, 3200, 1600]
 * ```
 */
export async function* pacedChunks(
  pcm: Uint8Array,
  format: PcmFormat,
  options: { chunkMs?: number; speed?: number; signal?: AbortSignal | undefined } = {},
): AsyncGenerator<Uint8Array> {
  const { chunkMs = 100, speed = 1, signal } = options;
  const size = chunkBytes(format, chunkMs);
  const started = performance.now();
  for (let i = 0, offset = 0; offset < pcm.length; i++, offset += size) {
    if (speed > 0) {
      const wait = started + (i * chunkMs) / speed - performance.now();
      if (wait > 0) await delay(wait, signal ? { signal } : {});
    }
    yield pcm.subarray(offset, offset + size);
  }
}

/**
 * Re-cuts a byte stream (a recorder's output) into chunks of `size` bytes,
 * the last one shorter.
 *
 * @param source The bytes as they come.
 * @param size Bytes per chunk.
 * @returns The chunks.
 *
 * @example
 * ```ts
 * import { rechunk } from "./stt.ts";
 *
 * const source = ReadableStream.from([new Uint8Array(5), new Uint8Array(4)]);
 * const sizes = [];
 * for await (const chunk of rechunk(source, 4)) sizes.push(chunk.length);
 * console.log(sizes); // [4, 4, 1]
 * ```
 */
export async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let buffer = new Uint8Array(size);
  let filled = 0;
  for await (const piece of source) {
    let offset = 0;
    while (offset < piece.length) {
      const n = Math.min(size - filled, piece.length - offset);
      buffer.set(piece.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === size) {
        yield buffer;
        buffer = new Uint8Array(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield buffer.subarray(0, filled);
}

/**
 * Checks that stt-module runs, through `$SRV.PING.stt-module`: audio is only
 * published, so nothing else would tell that nobody listens.
 *
 * @param ctx Connection and timeout.
 * @throws {CliError} With exit code 4 when no stt-module answers.
 *
 * @example
 * ```ts ignore
 * await pingSttModule(ctx);
 * ```
 */
export async function pingSttModule(ctx: CommandContext): Promise<void> {
  try {
    await ctx.nc.request("$SRV.PING.stt-module", "", { timeout: Math.min(ctx.timeoutMs, 3000) });
  } catch (cause) {
    throw new CliError(
      EXIT_CODES.noService,
      "Cannot transcribe: no stt-module answers $SRV.PING.stt-module (is stt-module running?)",
      { cause },
    );
  }
}

/** Options of {@linkcode streamForTranscription}. */
export interface StreamAudioOptions extends StreamingOptions {
  /** The audio's format (16-bit PCM). */
  format: PcmFormat;
  /** The chunks, as they should go out. */
  chunks: AsyncIterable<Uint8Array>;
  /** Called when the audio is all out (e.g. to say "transcribing..."). @default none */
  onAudioEnd?: () => void;
}

/**
 * Streams audio to stt-module and prints the transcriptions as they come,
 * until the session's final one.
 *
 * @param ctx Connection, output, timeout (for the wait after `end`).
 * @param options The audio and how to send it.
 * @returns The transcript.
 * @throws {CliError} With exit code 4 when no transcription comes in time.
 *
 * @example
 * ```ts ignore
 * await streamForTranscription(ctx, { format, chunks: pacedChunks(pcm, format) });
 * ```
 */
export async function streamForTranscription(
  ctx: CommandContext,
  options: StreamAudioOptions,
): Promise<SttResult> {
  const { nc, ui } = ctx;
  const { format, settleMs = 3000 } = options;
  const sessionId = options.sessionId ?? crypto.randomUUID();
  const frameBytes = format.channels * (format.bitDepth / 8);
  const finals: string[] = [];
  let transcriptions = 0;
  let interrupts = 0;
  let endSent = false;
  let finalAfterEnd = false;
  let lastWasFinal = false;
  let onMessage: () => void = () => {};
  const sub = nc.subscribe(`ai.voice.transcription.${sessionId}`, {
    callback: (_error, msg) => {
      let message: STTTranscription | STTInterrupt;
      try {
        message = decodeOneOf([STTTranscriptionSchema, STTInterruptSchema], msg.data, {
          msgType: msg.headers?.get(MSG_TYPE_HEADER) || undefined,
        });
      } catch {
        ui.progress("(ignored a message that is no transcription)");
        return;
      }
      if (message.$typeName === STTInterruptSchema.typeName) {
        interrupts++;
        ui.line("[interrupt]");
        ui.event("interrupt", {});
      } else {
        const t = message as STTTranscription;
        transcriptions++;
        const kind = t.isFinal ? "final" : "partial";
        if (t.isFinal) finals.push(t.transcript.trim());
        lastWasFinal = t.isFinal;
        if (t.isFinal && endSent) finalAfterEnd = true;
        ui.line(`${kind.padEnd(7)} #${t.sequence}: ${t.transcript.trim()}`);
        ui.event("transcription", {
          sequence: t.sequence,
          transcript: t.transcript,
          isPartial: t.isPartial,
          isFinal: t.isFinal,
          hasVoiceActivity: t.hasVoiceActivity,
          state: t.state,
        });
      }
      onMessage();
    },
  });
  const subject = `ai.voice.stream.${sessionId}`;
  let chunksSent = 0;
  let bytesSent = 0;
  try {
    await nc.flush();
    publish(nc, subject, STTStreamMessageSchema, {
      type: "start",
      sampleRate: format.sampleRate,
      channels: format.channels,
      bitDepth: format.bitDepth,
      audioEncoding: AudioEncoding.PCM_S16LE,
      timestamp: unixSeconds(),
      requestId: sessionId,
    });
    ui.progress(`Streaming audio to stt-module (session ${sessionId})...`);
    for await (const audio of options.chunks) {
      publish(nc, subject, STTStreamMessageSchema, { type: "chunk", audio });
      chunksSent++;
      bytesSent += audio.length;
    }
    publish(nc, subject, STTStreamMessageSchema, { type: "end", timestamp: unixSeconds() });
    endSent = true;
    await nc.flush();
    const audioSeconds = bytesSent / frameBytes / format.sampleRate;
    ui.progress(`Sent ${seconds(audioSeconds * 1000)} of audio in ${chunksSent} chunks`);
    options.onAudioEnd?.();
    await new Promise<void>((resolve, reject) => {
      let settle: ReturnType<typeof setTimeout> | undefined;
      const deadline = setTimeout(() => {
        finish();
        if (transcriptions + interrupts > 0) resolve();
        else {
          reject(
            new CliError(
              EXIT_CODES.noService,
              `Cannot transcribe: no transcription on ai.voice.transcription.${sessionId} ` +
                `within ${ctx.timeoutMs} ms after the end of the audio`,
            ),
          );
        }
      }, ctx.timeoutMs);
      const finish = () => {
        clearTimeout(deadline);
        clearTimeout(settle);
        onMessage = () => {};
      };
      onMessage = () => {
        clearTimeout(settle);
        if (finalAfterEnd) {
          finish();
          resolve();
        } else if (lastWasFinal) {
          settle = setTimeout(() => (finish(), resolve()), settleMs);
        }
      };
      onMessage();
    });
    const transcript = finals.filter((f) => f.length > 0).join(" ");
    ui.line(`transcript: ${transcript}`);
    return { sessionId, transcript, transcriptions, interrupts, chunksSent, audioSeconds };
  } finally {
    sub.unsubscribe();
  }
}

/** Options of {@linkcode stt}. */
export interface SttOptions extends StreamingOptions {
  /** The WAV file (16-bit PCM; 16 kHz mono is what the platform expects). */
  file: string;
  /** Pace as a multiple of real time; 0 sends as fast as possible. @default 1 */
  speed?: number;
}

/**
 * Streams a WAV file to stt-module in real-time-sized chunks and prints the
 * transcriptions as they come.
 *
 * @param ctx Connection, output, timeout.
 * @param options The file and how to send it.
 * @returns The transcript.
 *
 * @example
 * ```ts ignore
 * const { transcript } = await stt(ctx, { file: "in.wav" });
 * ```
 */
export async function stt(ctx: CommandContext, options: SttOptions): Promise<SttResult> {
  const { format, pcm } = await readPcmWav(options.file);
  await pingSttModule(ctx);
  return await streamForTranscription(ctx, {
    ...options,
    format,
    chunks: pacedChunks(pcm, format, {
      chunkMs: options.chunkMs ?? 100,
      speed: options.speed ?? 1,
      signal: ctx.signal,
    }),
  });
}

/** A command that records raw 16-bit little-endian PCM to its stdout. */
export interface Recorder {
  /** The program. */
  readonly command: string;
  /** Its arguments for a format and an optional duration. */
  args(format: PcmFormat, seconds?: number): string[];
}

/**
 * The recorders `listen` tries, in order: `arecord` (alsa-utils), then `sox`.
 *
 * @example
 * ```ts
 * import { RECORDERS } from "./stt.ts";
 *
 * console.log(RECORDERS.map((r) => r.command)); // ["arecord", "sox"]
 * ```
 */
export const RECORDERS: readonly Recorder[] = [
  {
    command: "arecord",
    args: (f, s) => [
      "-q",
      "-t",
      "raw",
      "-f",
      "S16_LE",
      "-r",
      String(f.sampleRate),
      "-c",
      String(f.channels),
      ...(s ? ["-d", String(Math.ceil(s))] : []),
    ],
  },
  {
    command: "sox",
    args: (f, s) => [
      "-q",
      "-d",
      "-t",
      "raw",
      "-r",
      String(f.sampleRate),
      "-c",
      String(f.channels),
      "-b",
      "16",
      "-e",
      "signed-integer",
      "-L",
      "-",
      ...(s ? ["trim", "0", String(s)] : []),
    ],
  },
];

/** Options of {@linkcode listen}. */
export interface ListenOptions extends StreamingOptions {
  /** Stop recording after this many seconds. @default until Ctrl-C */
  seconds?: number | undefined;
  /** The recorders to try. @default {@linkcode RECORDERS} */
  recorders?: readonly Recorder[];
}

function spawnRecorder(
  recorders: readonly Recorder[],
  format: PcmFormat,
  duration: number | undefined,
): { recorder: Recorder; child: Deno.ChildProcess } {
  for (const recorder of recorders) {
    try {
      const child = new Deno.Command(recorder.command, {
        args: recorder.args(format, duration),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      return { recorder, child };
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  throw new CliError(
    EXIT_CODES.localError,
    `Cannot listen: no recorder found (${recorders.map((r) => r.command).join(", ")}); ` +
      "install alsa-utils (arecord) or sox",
  );
}

/**
 * Records from the microphone (`arecord` or `sox`) and streams it to
 * stt-module as it records, printing transcriptions as they come, until
 * `seconds` pass or Ctrl-C (the context's signal) stops the recording.
 *
 * @param ctx Connection, output, timeout; its signal stops the recording.
 * @param options Duration, chunking, recorders.
 * @returns The transcript.
 * @throws {CliError} With exit code 5 when no recorder is installed or it fails.
 *
 * @example
 * ```ts ignore
 * const { transcript } = await listen(ctx, { seconds: 5 });
 * ```
 */
export async function listen(ctx: CommandContext, options: ListenOptions = {}): Promise<SttResult> {
  const format: PcmFormat = { sampleRate: 16000, channels: 1, bitDepth: 16 };
  await pingSttModule(ctx);
  const { recorder, child } = spawnRecorder(
    options.recorders ?? RECORDERS,
    format,
    options.seconds,
  );
  const stop = () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
  };
  ctx.signal?.addEventListener("abort", stop, { once: true });
  const stderr = new Response(child.stderr).text();
  ctx.ui.progress(
    `Listening with ${recorder.command}` +
      (options.seconds ? ` for ${options.seconds} s` : " (Ctrl-C stops)") + "...",
  );
  async function* recorded(): AsyncGenerator<Uint8Array> {
    let chunks = 0;
    for await (const chunk of rechunk(child.stdout, chunkBytes(format, options.chunkMs ?? 100))) {
      chunks++;
      yield chunk;
    }
    const status = await child.status;
    if (chunks === 0 && !status.success && !ctx.signal?.aborted) {
      throw new CliError(
        EXIT_CODES.localError,
        `Cannot listen: ${recorder.command} exited with ${status.code}: ${(await stderr).trim()}`,
      );
    }
  }
  try {
    // Ctrl-C only stops the recording: the transcription of what was said is still awaited.
    const { signal: _stopsRecording, ...rest } = ctx;
    return await streamForTranscription(rest, { ...options, format, chunks: recorded() });
  } finally {
    ctx.signal?.removeEventListener("abort", stop);
    stop();
    await child.status;
    await stderr.catch(() => "");
  }
}
