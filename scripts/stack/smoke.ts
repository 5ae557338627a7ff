/**
 * `deno task stack --smoke`: exercises every service of the table once
 * through the CLI's command functions (as `deno task cli` runs them), and
 * says for each whether it worked. A service with no exercise of its own (a
 * new row of the table) is asked `$SRV.PING`/`INFO`/`STATS` through the
 * CLI's `services` command, so it is checked at least for answering.
 *
 * @example
 * ```ts ignore
 * import { runSmoke } from "./smoke.ts";
 *
 * const results = await runSmoke({ nc, names: ["chat-handler"], speech, dir: "/tmp/x" });
 * console.log(results.every((r) => r.ok));
 * ```
 *
 * @module
 */
import type { NatsConnection } from "../../handler_base/natsutil.ts";
import { chat } from "../../handler_base/cli/chat.ts";
import type { CommandContext } from "../../handler_base/cli/context.ts";
import { createUi } from "../../handler_base/cli/output.ts";
import { pipeline } from "../../handler_base/cli/pipeline.ts";
import { services } from "../../handler_base/cli/services.ts";
import { tts } from "../../handler_base/cli/speech.ts";
import { stt } from "../../handler_base/cli/stt.ts";
import { voice } from "../../handler_base/cli/voice.ts";

/** The sentence spoken to stt-module and voice-assistant. */
export const SMOKE_SENTENCE = "turn on the kitchen lights";

/** The outcome of one service's exercise. */
export interface SmokeResult {
  /** The service. */
  readonly service: string;
  /** Whether it worked. */
  readonly ok: boolean;
  /** What came back, or what went wrong. */
  readonly detail: string;
}

/** Options of {@linkcode runSmoke}. */
export interface SmokeOptions {
  /** A connection to the stack's NATS. */
  nc: NatsConnection;
  /** The services to exercise (the table's names). */
  names: readonly string[];
  /** A 16 kHz mono WAV file of {@linkcode SMOKE_SENTENCE}. */
  speechFile: string;
  /** Whether the speech is real (flite and pocketsphinx): then the words must come back. */
  realSpeech: boolean;
  /** A directory for the audio written. */
  dir: string;
  /** How long one exercise may take, in milliseconds. @default 60000 */
  timeoutMs?: number;
}

type Exercise = (ctx: CommandContext, options: SmokeOptions) => Promise<string>;

function expectWords(heard: string, options: SmokeOptions): void {
  if (options.realSpeech && heard.trim().toLowerCase() !== SMOKE_SENTENCE) {
    throw new Error(`Cannot check the transcription: heard "${heard}", said "${SMOKE_SENTENCE}"`);
  }
}

/** The exercise of each service the stack knows how to exercise, by name. */
const EXERCISES: Record<string, Exercise> = {
  "chat-handler": async (ctx) => {
    const answer = await chat(ctx, {
      question: "How does the local stack start the services?",
      rag: true,
      stream: true,
    });
    if (!answer.usedRag || answer.response.trim() === "") {
      throw new Error(`Cannot check the answer: used_rag=${answer.usedRag}, "${answer.response}"`);
    }
    return `${answer.chunks} streamed chunks, ${answer.ragSources.length} sources`;
  },
  "tts-module": async (ctx, options) => {
    const speech = await tts(ctx, {
      text: "Hello from the stack.",
      output: `${options.dir}/hello.wav`,
    });
    return `${speech.bytes} bytes of WAV at ${speech.sampleRate} Hz`;
  },
  "stt-module": async (ctx, options) => {
    const heard = await stt(ctx, { file: options.speechFile, speed: 4, settleMs: 1000 });
    expectWords(heard.transcript, options);
    return `heard "${heard.transcript}"`;
  },
  "pipeline-bridge": async (ctx) => {
    const argo = await pipeline(ctx, {
      name: "document-ingestion",
      parameters: { source: "smoke" },
    });
    const kfp = await pipeline(ctx, { name: "rag-query", parameters: { query: "smoke" } });
    return `${argo.engine} ${argo.statuses.join(">")}; ${kfp.engine} ${kfp.statuses.join(">")}`;
  },
  "voice-assistant": async (ctx, options) => {
    const answer = await voice(ctx, {
      input: options.speechFile,
      output: `${options.dir}/answer.wav`,
    });
    expectWords(answer.transcription, options);
    return `heard "${answer.transcription}", ${answer.bytes} bytes of answer`;
  },
};

/**
 * Exercises each service once, one after the other.
 *
 * @param options The connection, the services, the speech and a directory.
 * @returns One result per service, in order.
 */
export async function runSmoke(options: SmokeOptions): Promise<SmokeResult[]> {
  const ui = createUi({ stdout: () => {}, stderr: () => {} });
  const ctx: CommandContext = { nc: options.nc, ui, timeoutMs: options.timeoutMs ?? 60_000 };
  const results: SmokeResult[] = [];
  for (const service of options.names) {
    const exercise: Exercise = EXERCISES[service] ?? (async (ctx) => {
      const { instances } = await services(ctx, { name: service });
      return `no exercise of its own: ${instances.length} instance(s) answer $SRV`;
    });
    try {
      results.push({ service, ok: true, detail: await exercise(ctx, options) });
    } catch (error) {
      results.push({
        service,
        ok: false,
        detail: error instanceof Error ? error.message : String(error),
      });
    }
  }
  return results;
}
