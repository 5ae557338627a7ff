/**
 * The mixed workload of the system suite and the soak: request types sent at
 * a fixed rate for a fixed time through the CLI's command functions (the way
 * users call the services), counted per type (sent, answered, errored by
 * error type, timed out) with latencies; and durable inputs published to
 * JetStream with an id each, counted per id on their result subjects (lost,
 * answered once, duplicated).
 *
 * Each type names its service; types whose service is not in
 * `services/table.ts` are left out, and a new service adds its types here.
 *
 * @example
 * ```ts ignore
 * import { runWorkload, workloadTypes } from "./workload.ts";
 *
 * const stats = await runWorkload(nc, await workloadTypes(nc, dir), { rate: 20, durationMs: 5000 });
 * ```
 *
 * @module
 */
import { chat, greet } from "../../handler_base/cli/chat.ts";
import type { CommandContext } from "../../handler_base/cli/context.ts";
import { CliError } from "../../handler_base/cli/exit_codes.ts";
import { createUi } from "../../handler_base/cli/output.ts";
import { pipeline } from "../../handler_base/cli/pipeline.ts";
import { tts, voices } from "../../handler_base/cli/speech.ts";
import { stt } from "../../handler_base/cli/stt.ts";
import { voice } from "../../handler_base/cli/voice.ts";
import { publishDurable } from "../../handler_base/durable_publish.ts";
import { RemoteError } from "../../handler_base/errors.ts";
import { jetstream, type JetStreamManager, StorageType } from "@nats-io/jetstream";
import {
  ChatRequestSchema,
  decode,
  PipelineStatusSchema,
  PipelineTriggerSchema,
} from "../../handler_base/messages.ts";
import {
  connectNats,
  type NatsConnection,
  RequestTimeoutError,
} from "../../handler_base/natsutil.ts";
import { SERVICES } from "../../services/table.ts";

/** One kind of request of the mix. */
export interface WorkloadType {
  /** The type's name in the figures. */
  readonly name: string;
  /** The service that answers it (a name of `services/table.ts`). */
  readonly service: string;
  /**
   * The most of this type per second, whatever the overall rate (its turns beyond it go to the
   * next type): for types bounded by a backend's capacity rather than the services'.
   *
   * @default no bound
   */
  readonly maxRate?: number;
  /** Sends one request and resolves when it is answered. */
  run(ctx: CommandContext, i: number): Promise<unknown>;
}

/**
 * Transcriptions per second the STT stand-in (one `pocketsphinx_continuous` at a time, 1.7 to
 * 3.2 s for the workload's 3.2 s utterance on this 2-core machine, tests/system/stt_probe.ts)
 * keeps up with, shared by the STT streams (about two transcriptions each: a partial and a final)
 * and the voice requests (one). Above it the stand-in's queue grows without end and every stream
 * times out, which measures pocketsphinx, not the services: the mix sends at most this many.
 */
export const STAND_IN_TRANSCRIPTIONS_PER_SECOND = 0.3;

/** The counts of one type. */
export interface TypeStats {
  sent: number;
  answered: number;
  /** Errors by type (the ErrorResponse's `type`, or the error's name). */
  errors: Record<string, number>;
  timedOut: number;
  /** Latencies of the answered requests, in milliseconds. */
  latenciesMs: number[];
}

const quiet = createUi({ stdout: () => {}, stderr: () => {} });

/**
 * The workload types, with a WAV file of speech for the STT streams made by
 * the TTS service itself.
 *
 * @param dir Where the audio files go.
 * @returns The types whose service is in the table.
 */
export function workloadTypes(dir: string): WorkloadType[] {
  const speech = `${dir}/speech.wav`;
  const types: WorkloadType[] = [
    {
      name: "chat",
      service: "chat-handler",
      run: (ctx, i) => chat(ctx, { question: `What is NATS? ${i}` }),
    },
    {
      name: "chat-stream",
      service: "chat-handler",
      run: (ctx, i) => chat(ctx, { question: `How do streams work? ${i}`, stream: true }),
    },
    {
      name: "chat-rag",
      service: "chat-handler",
      run: (ctx, i) => chat(ctx, { question: `What does JetStream store? ${i}`, rag: true }),
    },
    {
      name: "greeting",
      service: "chat-handler",
      run: (ctx, i) => greet(ctx, { user: `u${i % 50}` }),
    },
    {
      name: "tts",
      service: "tts-module",
      run: (ctx, i) => tts(ctx, { text: `Hello number ${i}`, output: `${dir}/tts-${i}.wav` }),
    },
    {
      name: "tts-stream",
      service: "tts-module",
      run: (ctx, i) =>
        tts(ctx, { text: `Streamed hello ${i}`, output: `${dir}/tts-${i}.wav`, stream: true }),
    },
    { name: "voices", service: "tts-module", run: (ctx) => voices(ctx) },
    {
      name: "stt",
      service: "stt-module",
      maxRate: STAND_IN_TRANSCRIPTIONS_PER_SECOND / 3,
      run: async (ctx) => {
        await ensureSpeech(ctx, speech);
        return await stt(ctx, { file: speech, speed: 0, settleMs: 300 });
      },
    },
    {
      name: "voice",
      service: "voice-assistant",
      maxRate: STAND_IN_TRANSCRIPTIONS_PER_SECOND / 3,
      run: async (ctx, i) => {
        await ensureSpeech(ctx, speech);
        return await voice(ctx, { input: speech, output: `${dir}/voice-${i}.wav` });
      },
    },
    {
      name: "pipeline",
      service: "pipeline-bridge",
      run: (ctx, i) => pipeline(ctx, { name: "document-ingestion", parameters: { n: String(i) } }),
    },
  ];
  const names = new Set(SERVICES.map((s) => s.name));
  return types.filter((t) => names.has(t.service));
}

/** The speech file of each directory, made once (a test's directory is gone after it). */
const speechMade = new Map<string, Promise<unknown>>();
function ensureSpeech(ctx: CommandContext, path: string): Promise<unknown> {
  const made = speechMade.get(path);
  if (made) return made;
  const making = tts(ctx, {
    text: "Testing one two three. The system is under load.",
    output: path,
  })
    .catch((error) => {
      speechMade.delete(path);
      throw error;
    });
  speechMade.set(path, making);
  return making;
}

/**
 * The error type of a failed request: `ErrorResponse:<type>`, `status:<type>`
 * for an error status, `Timeout` for no answer in time, else the error's name.
 *
 * @param error What the request threw.
 * @returns The type.
 */
export function errorKind(error: unknown): string {
  // An ErrorResponse is an answer, whatever its type (even "Timeout").
  if (error instanceof RemoteError) return `ErrorResponse:${error.type}`;
  if (error instanceof RequestTimeoutError) return "Timeout";
  if (error instanceof CliError) {
    const type = /answered: ([A-Za-z]+)/.exec(error.message)?.[1];
    // Ids (UUIDs) in a message would make one kind per request.
    const message = error.message.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<id>");
    return type ? `status:${type}` : `CliError: ${message.slice(0, 100)}`;
  }
  return error instanceof Error ? error.name : "unknown";
}

/** Options of {@linkcode runWorkload}. */
export interface WorkloadOptions {
  /** Requests per second, over all types (round robin, each type within its `maxRate`). */
  rate: number;
  /** How long to send, in milliseconds. */
  durationMs: number;
  /** Each request's timeout. @default 20000 */
  timeoutMs?: number;
  /**
   * The state of the types' `maxRate` bounds, to share it across runs that follow each other
   * (rounds): when they start and how many of each type went. Each type's first goes at once.
   *
   * @default a new one for this run
   */
  pacing?: Pacing;
  /** Called with each request's sending time and outcome. @default none */
  onOutcome?: (type: string, sentAt: number, outcome: "answered" | string) => void;
}

/** See {@linkcode WorkloadOptions.pacing}. */
export interface Pacing {
  /** When the bounds started counting (`performance.now()`). */
  readonly start: number;
  /** Sent so far per type. */
  readonly sent: Map<string, number>;
}

/**
 * Sends the types round robin at a fixed rate for a fixed time, then waits
 * for every answer (each bounded by its timeout).
 *
 * @param nc The connection.
 * @param types The mix.
 * @param options Rate, duration, timeout.
 * @returns The counts per type.
 */
export async function runWorkload(
  nc: NatsConnection,
  types: readonly WorkloadType[],
  options: WorkloadOptions,
): Promise<Map<string, TypeStats>> {
  const { rate, durationMs, timeoutMs = 20_000 } = options;
  const ctx: CommandContext = { nc, ui: quiet, timeoutMs };
  const stats = new Map<string, TypeStats>(
    types.map((t) => [t.name, { sent: 0, answered: 0, errors: {}, timedOut: 0, latenciesMs: [] }]),
  );
  const running: Promise<void>[] = [];
  const start = performance.now();
  const total = Math.max(1, Math.round((rate * durationMs) / 1000));
  let cursor = 0;
  const pacing = options.pacing ?? { start, sent: new Map<string, number>() };
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    // Round robin, passing over a type already at its own bound (the first of each goes at once).
    const elapsed = (performance.now() - pacing.start) / 1000;
    let type = types[cursor++ % types.length]!;
    for (let tries = 1; tries < types.length; tries++) {
      const bound = type.maxRate;
      if (bound === undefined || (pacing.sent.get(type.name) ?? 0) < 1 + bound * elapsed) break;
      type = types[cursor++ % types.length]!;
    }
    pacing.sent.set(type.name, (pacing.sent.get(type.name) ?? 0) + 1);
    const s = stats.get(type.name)!;
    s.sent++;
    const sentAt = performance.now();
    running.push(
      type.run(ctx, i).then(() => {
        s.answered++;
        s.latenciesMs.push(performance.now() - sentAt);
        options.onOutcome?.(type.name, sentAt, "answered");
      }, (error) => {
        const kind = errorKind(error);
        if (kind === "Timeout") s.timedOut++;
        else s.errors[kind] = (s.errors[kind] ?? 0) + 1;
        options.onOutcome?.(type.name, sentAt, kind);
      }),
    );
  }
  await Promise.all(running);
  return stats;
}

/**
 * The quantile of a list of numbers (nearest rank).
 *
 * @param values The numbers.
 * @param q The quantile, 0 to 1.
 * @returns It, or NaN for an empty list.
 */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** The test-only stream that keeps the results of durable inputs (see {@linkcode runDurable}). */
const RESULTS_STREAM = "SYSTEM_TEST_RESULTS";

/** Counts, per durable id, the results the results stream holds (from its start each time). */
async function countResults(
  jsm: JetStreamManager,
  results: Map<string, number>,
): Promise<void> {
  results.clear();
  const { state } = await jsm.streams.info(RESULTS_STREAM);
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const msg = await jsm.streams.getMessage(RESULTS_STREAM, { seq }).catch(() => null);
    if (!msg) continue;
    const id = resultId(msg.subject, msg.data);
    if (id) results.set(id, (results.get(id) ?? 0) + 1);
  }
}

/** The durable id a result answers: a chat response's subject, a pipeline's `submitted` status. */
function resultId(subject: string, data: Uint8Array): string | undefined {
  let id: string | undefined;
  if (subject.startsWith("ai.chat.response.")) {
    id = subject.slice("ai.chat.response.".length);
  } else {
    try {
      const status = decode(PipelineStatusSchema, data);
      if (status.status === "submitted") id = status.requestId;
    } catch {
      // Not a status.
    }
  }
  return id?.startsWith("dur-") ? id : undefined;
}

/** What became of durable inputs. */
export interface DurableStats {
  /** Stored in the stream (acknowledged publishes). */
  stored: number;
  /** Of those, pipeline triggers (each must start exactly one run). */
  storedPipeline: number;
  /** Publishes that failed for good (the broker was away past their timeout). */
  publishFailed: number;
  /** Ids answered at least once. */
  answered: number;
  /** Ids answered more than once. */
  duplicated: number;
  /** Those ids, with how many results each got. */
  duplicates: Record<string, number>;
  /** Stored ids never answered by the end of the wait. */
  lost: string[];
}

/**
 * Publishes chat messages (COMPANIONS_CHAT) and pipeline triggers
 * (AI_PIPELINE) durably with an id each at a fixed rate, while `during` runs
 * (faults), then waits until every stored id has a result or `settleMs` passes.
 *
 * @param nc The connection.
 * @param options Rate, count, the faults to run meanwhile, how long to wait for results.
 * @returns The counts.
 */
export async function runDurable(
  nc: NatsConnection,
  options: {
    rate: number;
    count: number;
    settleMs: number;
    during?: () => Promise<void>;
    /**
     * One URL per broker node: a core subscriber pinned to each also counts the results, so a
     * node's death (one at a time) never hides a result from every observer.
     */
    nodes?: readonly string[];
  },
): Promise<DurableStats> {
  const names = new Set(SERVICES.map((s) => s.name));
  // The results are core publishes: an observer misses those sent while it reconnects through
  // a broker kill, although the input was handled and acked. So they are counted by several
  // observers and a result any of them saw counts: a stream that captures the result subjects
  // (replicated on a cluster; it keeps what was published while a subscriber reconnected) and a
  // core subscriber per node.
  const jsm = await jetstream(nc).jetstreamManager();
  const resultSubjects = [
    ...(names.has("chat-handler") ? ["ai.chat.response.*"] : []),
    ...(names.has("pipeline-bridge") ? ["ai.pipeline.status.*"] : []),
  ];
  await jsm.streams.delete(RESULTS_STREAM).catch(() => {});
  await jsm.streams.add({
    name: RESULTS_STREAM,
    subjects: resultSubjects,
    storage: StorageType.File,
    num_replicas: options.nodes && options.nodes.length >= 3 ? 3 : 1,
    max_age: 10 * 60 * 1_000_000_000,
  });
  const seen = new Map<string, number>();
  const observers = await Promise.all(
    (options.nodes ?? []).map((url, i) =>
      connectNats({ servers: url, name: `durable-observer-${i}`, reconnectTimeWaitMs: 100 })
    ),
  );
  for (const observer of [nc, ...observers]) {
    for (const subject of resultSubjects) {
      observer.subscribe(subject, {
        callback: (_error, msg) => {
          const id = resultId(msg.subject, msg.data);
          if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
        },
      });
    }
    await observer.flush();
  }
  await nc.flush();
  const stored: string[] = [];
  let storedPipeline = 0;
  let publishFailed = 0;
  const publishes: Promise<void>[] = [];
  const faults = options.during?.();
  const start = performance.now();
  for (let i = 0; i < options.count; i++) {
    const wait = start + (i * 1000) / options.rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const id = `dur-${crypto.randomUUID()}`;
    const chatTurn = names.has("chat-handler") && (i % 2 === 0 || !names.has("pipeline-bridge"));
    const sent = chatTurn
      ? publishDurable(nc, "ai.chat.user.soak.message", ChatRequestSchema, {
        requestId: id,
        userId: "soak",
        username: "soak",
        message: `durable question ${i}`,
      }, { msgId: id, timeoutMs: 30_000 })
      : publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, {
        requestId: id,
        pipeline: "document-ingestion",
        parameters: { n: String(i) },
      }, { msgId: id, timeoutMs: 30_000 });
    publishes.push(sent.then(() => {
      stored.push(id);
      if (!chatTurn) storedPipeline++;
    }, () => void publishFailed++));
  }
  await Promise.all(publishes);
  await faults;
  const results = new Map<string, number>();
  const deadline = performance.now() + options.settleMs;
  do {
    await countResults(jsm, results).catch(() => {});
    for (const [id, count] of seen) results.set(id, Math.max(results.get(id) ?? 0, count));
    if (stored.every((id) => results.has(id))) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  } while (performance.now() < deadline);
  await jsm.streams.delete(RESULTS_STREAM).catch(() => {});
  await Promise.all(observers.map((observer) => observer.close().catch(() => {})));
  const answered = stored.filter((id) => results.has(id)).length;
  return {
    stored: stored.length,
    storedPipeline,
    publishFailed,
    answered,
    duplicated: stored.filter((id) => (results.get(id) ?? 0) > 1).length,
    duplicates: Object.fromEntries(
      stored.filter((id) => (results.get(id) ?? 0) > 1).map((id) => [id, results.get(id)!]),
    ),
    lost: stored.filter((id) => !results.has(id)),
  };
}
