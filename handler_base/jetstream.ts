/**
 * JetStream, the at-least-once side of handler-base:
 *
 * - {@linkcode STREAMS}: the platform's streams (SYSTEM.md section 4) in one
 *   table, and {@linkcode ensureStreams}, which creates or updates them and
 *   never drops stored messages.
 * - {@linkcode consumeJetStream}: the endpoints of a service that declare a
 *   `stream` read from a durable pull consumer named after the service when the
 *   service runs with `consumeMode: "jetstream"`. A message is acked once the
 *   handler succeeded and its outputs are flushed; a retryable failure is
 *   nak'd with exponential backoff; a non-retryable failure, or a failure on
 *   the last allowed delivery (`max_deliver`, 5 by default), is published to
 *   the dead-letter subject `dlq.<service>.<subject>` and terminated (so is a
 *   message whose deliveries all died with their process, from the server's
 *   max-deliveries advisory). At most as many messages are pulled as the
 *   endpoint has free slots, long handlers send in-progress acks, and a
 *   deleted consumer, missed heartbeats or a restarted server are detected and
 *   the consumer recreated, while readiness reports the outage.
 * - {@linkcode publishDurable}: stores a message in a stream, retrying until
 *   the publish acknowledgement or a deadline, with a `Nats-Msg-Id` so that a
 *   retry never stores a duplicate.
 * - {@linkcode consumeConfigSpec}: the `CONSUME_MODE` family of variables.
 *
 * The trap of SYSTEM.md section 4: a stream that captures a subject answers
 * every request on it with its publish acknowledgement. In JetStream mode a
 * request on an input subject is therefore answered by that ack (the stored
 * message has no reply subject) and results arrive on the per-id subjects;
 * `AI_VOICE_STREAM`, which captures request-reply subjects, is created with
 * `no_ack` so that those stay answered by the services.
 *
 * Requires `--allow-net=<nats>`. Loading {@linkcode consumeConfigSpec} needs
 * `--allow-env=CONSUME_MODE,ENSURE_STREAMS,JETSTREAM_MAX_DELIVER,JETSTREAM_ACK_WAIT_MS`.
 *
 * @example Consume from JetStream and store a trigger
 * ```ts ignore
 * import { createService, defineEndpoint } from "@homelab/handler-base/handler";
 * import { consumeJetStream, ensureStreams, publishDurable } from "@homelab/handler-base/jetstream";
 * import { PipelineTriggerSchema } from "@homelab/handler-base/messages";
 *
 * await ensureStreams(nc, { only: ["AI_PIPELINE"] });
 * const trigger = defineEndpoint({
 *   subject: "ai.pipeline.trigger",
 *   stream: "AI_PIPELINE",
 *   request: PipelineTriggerSchema,
 *   handle: (req, ctx) => submit(req, ctx),
 * });
 * const service = createService(nc, {
 *   name: "pipeline-bridge",
 *   endpoints: [trigger],
 *   logger,
 *   consumeMode: "jetstream",
 * });
 * await service.start();
 * const consumers = consumeJetStream(service);
 * await publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, {
 *   requestId: "r1",
 *   pipeline: "batch-inference",
 * }, { msgId: "r1" });
 * ```
 *
 * @module
 */
import { errors as natsErrors, headers as createHeaders, millis, nanos } from "@nats-io/nats-core";
import * as js from "@nats-io/jetstream";
import type { Context } from "@opentelemetry/api";
import { abortable, delay } from "./async.ts";
import { type Config, envVar, type VarSpec } from "./config.ts";
import {
  BackendError,
  BackendUnavailableError,
  errorType,
  HandlerError,
  INTERNAL_ERROR_MESSAGE,
  isRetryable,
  TimeoutError,
} from "./errors.ts";
import {
  CONSUME_MODES,
  type ConsumeMode,
  type Delivery,
  type Endpoint,
  type Service,
} from "./handler.ts";
import type { CheckResult } from "./health.ts";
import type { Logger } from "./log.ts";
import { type DescMessage, encode, type MessageInitShape, type MessageShape } from "./messages.ts";
import { messageHeaders, type Msg, type MsgHdrs, type NatsConnection } from "./natsutil.ts";

/** A JetStream client (nats.js). */
export type JetStreamClient = js.JetStreamClient;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** How one stream of the platform is defined. */
export interface StreamDefinition {
  /** What the stream holds, shown by `nats stream info`. */
  readonly description: string;
  /** The subjects it captures. */
  readonly subjects: readonly string[];
  /** Where it stores messages. */
  readonly storage: "file" | "memory";
  /** How long it keeps a message, in milliseconds. */
  readonly maxAgeMs: number;
  /** How many servers hold a copy. */
  readonly replicas: number;
  /** The window in which a repeated `Nats-Msg-Id` is dropped, in milliseconds. @default 2 minutes (the server's) */
  readonly duplicateWindowMs?: number;
  /** Whether the stream stays silent instead of answering publishes that carry a reply subject. @default false */
  readonly noAck?: boolean;
}

/**
 * The JetStream streams of the platform (SYSTEM.md section 4), plus
 * `DEAD_LETTERS`, which keeps what consumers dead-letter (`dlq.>`).
 *
 * @example Look a stream up
 * ```ts
 * import { STREAMS } from "@homelab/handler-base/jetstream";
 *
 * console.log(STREAMS.AI_PIPELINE.subjects); // ["ai.pipeline.trigger"]
 * console.log(STREAMS.AI_VOICE_STREAM.noAck); // true
 * ```
 */
export const STREAMS = {
  COMPANIONS_LOGINS: {
    description: "Login events of the companions frontend",
    subjects: ["ai.chat.user.*.login"],
    storage: "file",
    maxAgeMs: 7 * DAY,
    replicas: 1,
  },
  COMPANIONS_CHAT: {
    description: "Chat messages and greetings of the companions frontend",
    subjects: ["ai.chat.user.*.message", "ai.chat.user.*.greeting.*"],
    storage: "file",
    maxAgeMs: 30 * DAY,
    replicas: 1,
  },
  AI_CHAT_STREAM: {
    description: "Streamed chat answers",
    subjects: ["ai.chat.response.stream.>"],
    storage: "memory",
    maxAgeMs: 5 * MINUTE,
    replicas: 1,
  },
  AI_VOICE_STREAM: {
    description: "Voice requests, audio and transcriptions",
    subjects: ["ai.voice.>"],
    storage: "file",
    maxAgeMs: HOUR,
    replicas: 1,
    // It captures request-reply subjects (ai.voice.tts.voices.*): an ack
    // would answer those requests before the service does.
    noAck: true,
  },
  AI_PIPELINE: {
    description: "Pipeline triggers",
    subjects: ["ai.pipeline.trigger"],
    storage: "file",
    maxAgeMs: 7 * DAY,
    replicas: 1,
    duplicateWindowMs: 2 * MINUTE,
  },
  DEAD_LETTERS: {
    description: "Messages that consumers gave up on, with the reason in Dlq-* headers",
    subjects: ["dlq.>"],
    storage: "file",
    maxAgeMs: 30 * DAY,
    replicas: 1,
  },
} as const satisfies Record<string, StreamDefinition>;

/** The name of a stream of {@linkcode STREAMS}. */
export type StreamName = keyof typeof STREAMS;

/**
 * The headers a dead-lettered message carries besides its original ones.
 *
 * @example
 * ```ts
 * import { DEAD_LETTER_HEADERS } from "@homelab/handler-base/jetstream";
 *
 * console.log(DEAD_LETTER_HEADERS.reason); // "Dlq-Reason"
 * ```
 */
export const DEAD_LETTER_HEADERS = {
  /** The failure's wire-safe message. */
  reason: "Dlq-Reason",
  /** The failure's `ErrorResponse.type` code. */
  errorType: "Dlq-Error-Type",
  /** The stream the message was stored in. */
  stream: "Dlq-Stream",
  /** Its sequence in that stream. */
  sequence: "Dlq-Sequence",
  /** How many times it was delivered. */
  deliveries: "Dlq-Deliveries",
  /** The subject it was published on. */
  subject: "Dlq-Subject",
  /** The durable consumer that gave up. */
  consumer: "Dlq-Consumer",
} as const;

// ---------------------------------------------------------------------------
// Streams

/** Options of {@linkcode ensureStreams}. */
export interface EnsureStreamsOptions {
  /**
   * The definitions to apply.
   *
   * @default STREAMS
   */
  streams?: Readonly<Record<string, StreamDefinition>>;
  /**
   * Apply only these names of `streams`.
   *
   * @default every name
   */
  only?: readonly string[];
  /**
   * Report what would change without changing anything.
   *
   * @default false
   */
  dryRun?: boolean;
  /**
   * Where each creation and update is logged.
   *
   * @default undefined (no logs)
   */
  logger?: Logger;
  /**
   * Stops before the next stream when aborted.
   *
   * @default undefined
   */
  signal?: AbortSignal;
}

/** What {@linkcode ensureStreams} did to one stream. */
export interface StreamResult {
  /** The stream's name. */
  readonly name: string;
  /** What happened (or, in a dry run, would happen). */
  readonly action: "created" | "updated" | "unchanged" | "failed";
  /** The differences applied, such as `max_age 1h -> 2h`. */
  readonly changes: readonly string[];
  /** Differences left alone on purpose (a shorter `max_age` would drop messages). */
  readonly kept: readonly string[];
  /** Why it failed, when it did. */
  readonly error?: string;
}

/**
 * Thrown by {@linkcode ensureStreams} when at least one stream could not be
 * created or updated; the others were still applied.
 *
 * @example
 * ```ts ignore
 * import { ensureStreams, StreamSetupError } from "@homelab/handler-base/jetstream";
 *
 * try {
 *   await ensureStreams(nc);
 * } catch (error) {
 *   if (error instanceof StreamSetupError) console.table(error.results);
 * }
 * ```
 */
export class StreamSetupError extends Error {
  /** The outcome of every stream, failed or not. */
  readonly results: readonly StreamResult[];

  /**
   * Creates the error from every stream's outcome.
   *
   * @param results The outcome of every stream; the message names the failed ones.
   */
  constructor(results: readonly StreamResult[]) {
    const failed = results.filter((r) => r.action === "failed");
    super(`Cannot ensure streams: ${failed.map((r) => `${r.name}: ${r.error}`).join("; ")}`);
    this.name = "StreamSetupError";
    this.results = results;
  }
}

function streamConfig(
  name: string,
  definition: StreamDefinition,
): Partial<js.StreamConfig> & { name: string } {
  return {
    name,
    description: definition.description,
    subjects: [...definition.subjects],
    storage: definition.storage === "memory" ? js.StorageType.Memory : js.StorageType.File,
    retention: js.RetentionPolicy.Limits,
    discard: js.DiscardPolicy.Old,
    num_replicas: definition.replicas,
    max_age: nanos(definition.maxAgeMs),
    ...(definition.duplicateWindowMs !== undefined
      ? { duplicate_window: nanos(definition.duplicateWindowMs) }
      : {}),
    no_ack: definition.noAck ?? false,
  };
}

/** Formats milliseconds as the largest whole unit (`90000` gives `90s`, `7200000` gives `2h`). */
function formatMs(ms: number): string {
  if (ms === 0) return "unlimited";
  for (const [unit, size] of [["d", DAY], ["h", HOUR], ["m", MINUTE], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

interface StreamDiff {
  update: Partial<js.StreamUpdateConfig>;
  changes: string[];
  kept: string[];
  impossible?: string;
}

function diffStream(
  existing: js.StreamConfig,
  name: string,
  definition: StreamDefinition,
): StreamDiff {
  const wanted = streamConfig(name, definition);
  const update: Partial<js.StreamUpdateConfig> = {};
  const changes: string[] = [];
  const kept: string[] = [];
  if (existing.storage !== wanted.storage) {
    return {
      update,
      changes,
      kept,
      impossible: `its storage is ${existing.storage} and the table says ${wanted.storage}; ` +
        `changing it means recreating the stream, which drops its messages: do it by hand`,
    };
  }
  const subjects = new Set(existing.subjects ?? []);
  if (
    subjects.size !== definition.subjects.length ||
    definition.subjects.some((s) => !subjects.has(s))
  ) {
    update.subjects = wanted.subjects;
    changes.push(`subjects ${[...subjects].join(",")} -> ${definition.subjects.join(",")}`);
  }
  const age = millis(existing.max_age ?? 0);
  if (age !== definition.maxAgeMs) {
    // A shorter max age deletes what is older at once: never do that here.
    if (age !== 0 && age < definition.maxAgeMs) {
      update.max_age = wanted.max_age;
      changes.push(`max_age ${formatMs(age)} -> ${formatMs(definition.maxAgeMs)}`);
    } else {
      kept.push(
        `max_age ${formatMs(age)} (the table says ${formatMs(definition.maxAgeMs)}; ` +
          `shortening it would drop stored messages)`,
      );
    }
  }
  if ((existing.num_replicas ?? 1) !== definition.replicas) {
    update.num_replicas = definition.replicas;
    changes.push(`replicas ${existing.num_replicas} -> ${definition.replicas}`);
  }
  if (
    definition.duplicateWindowMs !== undefined &&
    millis(existing.duplicate_window ?? 0) !== definition.duplicateWindowMs
  ) {
    update.duplicate_window = wanted.duplicate_window;
    changes.push(
      `duplicate_window ${formatMs(millis(existing.duplicate_window ?? 0))} -> ${
        formatMs(definition.duplicateWindowMs)
      }`,
    );
  }
  if ((existing.no_ack ?? false) !== (definition.noAck ?? false)) {
    update.no_ack = definition.noAck ?? false;
    changes.push(`no_ack ${existing.no_ack ?? false} -> ${definition.noAck ?? false}`);
  }
  if ((existing.description ?? "") !== definition.description) {
    update.description = definition.description;
    changes.push("description");
  }
  return { update, changes, kept };
}

function isApiError(error: unknown, code: number): boolean {
  return error instanceof js.JetStreamApiError && error.code === code;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Creates the streams that do not exist and updates those that differ from
 * their definition, without ever deleting a stream or a message: a storage
 * change is refused and a shorter `max_age` is left as it is (both reported).
 * Running it again changes nothing.
 *
 * @param nc The connection.
 * @param options The definitions, a subset, dry run, logger and signal.
 * @returns What happened to each stream.
 * @throws {StreamSetupError} When a stream could not be created or updated (the others were).
 *
 * @example Ensure the pipeline stream at start
 * ```ts ignore
 * import { ensureStreams } from "@homelab/handler-base/jetstream";
 *
 * const [result] = await ensureStreams(nc, { only: ["AI_PIPELINE"] });
 * console.log(result?.action); // "created", then "unchanged"
 * ```
 */
export async function ensureStreams(
  nc: NatsConnection,
  options: EnsureStreamsOptions = {},
): Promise<StreamResult[]> {
  const { dryRun = false, logger, signal } = options;
  const streams: Readonly<Record<string, StreamDefinition>> = options.streams ?? STREAMS;
  const names = options.only ?? Object.keys(streams);
  const jsm = await js.jetstream(nc).jetstreamManager(false);
  const results: StreamResult[] = [];
  for (const name of names) {
    signal?.throwIfAborted();
    const definition = streams[name];
    if (!definition) {
      results.push({ name, action: "failed", changes: [], kept: [], error: "no such definition" });
      continue;
    }
    try {
      results.push(await ensureStream(jsm, name, definition, dryRun));
    } catch (error) {
      results.push({ name, action: "failed", changes: [], kept: [], error: messageOf(error) });
    }
    const result = results.at(-1)!;
    if (result.action === "failed") {
      logger?.error("Cannot ensure stream", { stream: name, error: result.error });
    } else if (result.action !== "unchanged" || result.kept.length) {
      logger?.info(dryRun ? "Stream would change" : "Stream ensured", { stream: name, ...result });
    }
  }
  if (results.some((r) => r.action === "failed")) throw new StreamSetupError(results);
  return results;
}

async function ensureStream(
  jsm: js.JetStreamManager,
  name: string,
  definition: StreamDefinition,
  dryRun: boolean,
): Promise<StreamResult> {
  let info: js.StreamInfo | undefined;
  try {
    info = await jsm.streams.info(name);
  } catch (error) {
    if (!isApiError(error, js.JetStreamApiCodes.StreamNotFound)) throw error;
  }
  if (!info) {
    if (!dryRun) await jsm.streams.add(streamConfig(name, definition));
    return {
      name,
      action: "created",
      changes: [
        [
          `subjects ${definition.subjects.join(",")}`,
          definition.storage,
          `max_age ${formatMs(definition.maxAgeMs)}`,
          ...(definition.duplicateWindowMs !== undefined
            ? [`duplicate_window ${formatMs(definition.duplicateWindowMs)}`]
            : []),
          ...(definition.noAck ? ["no_ack"] : []),
        ].join(", "),
      ],
      kept: [],
    };
  }
  const diff = diffStream(info.config, name, definition);
  if (diff.impossible) {
    return { name, action: "failed", changes: [], kept: diff.kept, error: diff.impossible };
  }
  if (diff.changes.length === 0) {
    return { name, action: "unchanged", changes: [], kept: diff.kept };
  }
  if (!dryRun) await jsm.streams.update(name, diff.update);
  return { name, action: "updated", changes: diff.changes, kept: diff.kept };
}

// ---------------------------------------------------------------------------
// Configuration

/** The type of {@linkcode consumeConfigSpec}. */
export type ConsumeConfigSpec = {
  /** `CONSUME_MODE`: `core` or `jetstream`. */
  readonly consumeMode: VarSpec<ConsumeMode>;
  /** `ENSURE_STREAMS`: create or update the streams at start. */
  readonly ensureStreams: VarSpec<boolean>;
  /** `JETSTREAM_MAX_DELIVER`: deliveries of one message before it is dead-lettered. */
  readonly jetstreamMaxDeliver: VarSpec<number>;
  /** `JETSTREAM_ACK_WAIT_MS`: how long a delivery may go without an ack or progress. */
  readonly jetstreamAckWaitMs: VarSpec<number>;
};

/** The loaded {@linkcode consumeConfigSpec}. */
export type ConsumeConfig = Config<ConsumeConfigSpec>;

/**
 * The variables of the consume mode, for a service's config spec:
 * `CONSUME_MODE` (`core`), `ENSURE_STREAMS` (`false`),
 * `JETSTREAM_MAX_DELIVER` (5, 1 to 1000) and `JETSTREAM_ACK_WAIT_MS` (a
 * duration, 30 s).
 *
 * @example Compose and load
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { consumeConfigSpec, consumeSettingsFromConfig } from "@homelab/handler-base/jetstream";
 *
 * const config = loadConfig(consumeConfigSpec, { CONSUME_MODE: "jetstream" });
 * console.log(consumeSettingsFromConfig(config).consumeMode); // "jetstream"
 * ```
 */
export const consumeConfigSpec: ConsumeConfigSpec = Object.freeze({
  consumeMode: envVar.oneOf("CONSUME_MODE", CONSUME_MODES, { default: "core" }),
  ensureStreams: envVar.bool("ENSURE_STREAMS", { default: false }),
  jetstreamMaxDeliver: envVar.int("JETSTREAM_MAX_DELIVER", { default: 5, min: 1, max: 1000 }),
  jetstreamAckWaitMs: envVar.duration("JETSTREAM_ACK_WAIT_MS", { default: 30_000 }),
});

/** How a service takes its stream-backed input; `runService` accepts these fields. */
export interface ConsumeSettings {
  /**
   * Core queue subscriptions or durable JetStream consumers for endpoints
   * that declare a `stream`.
   *
   * @default "core"
   */
  consumeMode?: ConsumeMode;
  /**
   * Create or update {@linkcode STREAMS} at start (see {@linkcode ensureStreams}).
   *
   * @default false
   */
  ensureStreams?: boolean;
  /**
   * Consumer settings in JetStream mode.
   *
   * @default {}
   */
  jetstream?: JetStreamConsumerOptions;
}

/**
 * The {@linkcode ConsumeSettings} a loaded {@linkcode consumeConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @returns Settings for `runService`.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { consumeConfigSpec, consumeSettingsFromConfig } from "@homelab/handler-base/jetstream";
 *
 * const settings = consumeSettingsFromConfig(
 *   loadConfig(consumeConfigSpec, { JETSTREAM_ACK_WAIT_MS: "1m" }),
 * );
 * console.log(settings.jetstream?.ackWaitMs); // 60000
 * ```
 */
export function consumeSettingsFromConfig(config: ConsumeConfig): ConsumeSettings {
  return {
    consumeMode: config.consumeMode,
    ensureStreams: config.ensureStreams,
    jetstream: { maxDeliver: config.jetstreamMaxDeliver, ackWaitMs: config.jetstreamAckWaitMs },
  };
}

// ---------------------------------------------------------------------------
// Consumers

/** Options of {@linkcode consumeJetStream}. */
export interface JetStreamConsumerOptions {
  /**
   * How many times one message is delivered at most; a failure on the last
   * delivery dead-letters it.
   *
   * @default 5
   */
  maxDeliver?: number;
  /**
   * How long a delivery may go without an ack or an in-progress ack before
   * the server redelivers it, in milliseconds (at least 1000). Handlers that
   * run longer send in-progress acks every third of it.
   *
   * @default 30000
   */
  ackWaitMs?: number;
  /**
   * The redelivery delay after the first retryable failure, in milliseconds;
   * it doubles with each further delivery.
   *
   * @default 1000
   */
  retryDelayMs?: number;
  /**
   * The longest redelivery delay, in milliseconds.
   *
   * @default 60000
   */
  maxRetryDelayMs?: number;
  /**
   * Where a consumer created for the first time starts: `"all"` handles
   * everything the stream still holds, `"new"` only what arrives after. A
   * consumer recreated after it was deleted resumes after its last known
   * ack floor instead.
   *
   * @default "all"
   */
  deliverPolicy?: "all" | "new";
  /**
   * How long one pull request waits for messages, in milliseconds (at least
   * 1000); the server sends heartbeats every half of it (at most every 30 s)
   * and two missed ones restart the consumer.
   *
   * @default 30000
   */
  fetchExpiresMs?: number;
  /**
   * The first token of dead-letter subjects (`<prefix>.<service>.<subject>`).
   *
   * @default "dlq"
   */
  deadLetterPrefix?: string;
  /**
   * Called when a consumer's status changes (tests and metrics).
   *
   * @default undefined
   */
  onStateChange?: (state: ConsumerState) => void;
}

/** The status of one endpoint's consumer. */
export interface ConsumerState {
  /** The endpoint's name. */
  readonly endpoint: string;
  /** The stream. */
  readonly stream: string;
  /** The durable consumer's name. */
  readonly durable: string;
  /**
   * `starting` until the consumer exists, `consuming` while it pulls,
   * `recovering` after a failure until it pulls again, `stopped` at the end.
   */
  readonly status: "starting" | "consuming" | "recovering" | "stopped";
  /** What went wrong, while recovering. */
  readonly reason: string;
}

/** The running consumers of a service. */
export interface JetStreamConsumers extends AsyncDisposable {
  /** Whether every consumer is consuming. */
  readonly ready: boolean;
  /** The status of each consumer, in endpoint order. */
  states(): ConsumerState[];
  /**
   * A readiness check: true while every consumer is consuming, else which
   * one is not and why.
   */
  check(): CheckResult;
  /**
   * Stops pulling, hands back what was pulled but not started, and resolves
   * once every started message is settled (acked, nak'd or terminated). The
   * service calls it when it stops.
   */
  stop(): Promise<void>;
}

/** Options of {@linkcode deadLetterSubject}. */
export interface DeadLetterSubjectOptions {
  /**
   * The first token.
   *
   * @default "dlq"
   */
  prefix?: string;
}

/**
 * The dead-letter subject of a message: `<prefix>.<service>.<subject>`.
 *
 * @param service The service name.
 * @param subject The message's original subject.
 * @param options The prefix.
 * @returns The subject.
 *
 * @example
 * ```ts
 * import { deadLetterSubject } from "@homelab/handler-base/jetstream";
 *
 * console.log(deadLetterSubject("chat-handler", "ai.chat.user.u1.message"));
 * // dlq.chat-handler.ai.chat.user.u1.message
 * ```
 */
export function deadLetterSubject(
  service: string,
  subject: string,
  options: DeadLetterSubjectOptions = {},
): string {
  return `${options.prefix ?? "dlq"}.${service}.${subject}`;
}

/**
 * A flush that concurrent callers share: when it resolves, the server has
 * received everything each caller published before calling it.
 */
function createFlusher(nc: NatsConnection, timeoutMs: number): () => Promise<void> {
  let current: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  function flush(): Promise<void> {
    if (!current) {
      current = withTimeout(nc.flush(), timeoutMs, "Cannot flush: no answer from NATS")
        .finally(() => current = undefined);
      return current;
    }
    // The flush under way left before this caller's publishes: one more
    // after it serves every caller that arrives meanwhile.
    next ??= current.catch(() => {}).then(() => {
      next = undefined;
      return flush();
    });
    return next;
  }
  return flush;
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The safe message of a failure, for headers and logs that leave the process. */
function safeMessage(error: unknown): string {
  const message = error instanceof HandlerError ? error.message : INTERNAL_ERROR_MESSAGE;
  return message.replace(/[\r\n]+/g, " ");
}

/** What a dead letter is made of. */
interface DeadLetter {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly sequence: number;
  readonly deliveries: number;
}

/** The fields of `io.nats.jetstream.advisory.v1.max_deliver` that are used. */
interface MaxDeliveriesAdvisory {
  readonly stream_seq: number;
  readonly deliveries: number;
}

interface Runner {
  readonly state: ConsumerState;
  disconnected(): void;
  reconnected(): void;
  stop(): Promise<void>;
}

interface Shared {
  readonly service: Service;
  readonly client: js.JetStreamClient;
  readonly manager: Promise<js.JetStreamManager>;
  readonly flush: () => Promise<void>;
  readonly maxDeliver: number;
  readonly ackWaitMs: number;
  readonly retryDelayMs: number;
  readonly maxRetryDelayMs: number;
  readonly deliverPolicy: "all" | "new";
  readonly fetchExpiresMs: number;
  readonly deadLetterPrefix: string;
  readonly onStateChange: ((state: ConsumerState) => void) | undefined;
}

/** How often a consumer's ack floor is refreshed, to resume there if it is deleted. */
const FLOOR_REFRESH_MS = 10_000;

/**
 * Starts a durable pull consumer for each endpoint that the service feeds
 * from JetStream ({@linkcode Service.jetstreamEndpoints}), named after the
 * service (or the endpoint's `durable`), filtered on the endpoint's subject.
 * The consumer is created when missing and its `ack_wait` and `max_deliver`
 * updated when they differ. The service stops the consumers when it stops.
 *
 * Per message: the handler runs with `ctx.attempt` = the delivery count; on
 * success the connection is flushed and the message acked; a retryable
 * failure is nak'd with a delay of `retryDelayMs * 2^(attempt-1)` (at most
 * `maxRetryDelayMs`); a non-retryable failure, or any failure on delivery
 * `maxDeliver`, is published with its headers and `Dlq-*` headers to
 * {@linkcode deadLetterSubject} (stored by `DEAD_LETTERS` when that stream
 * exists) and then terminated. A message whose deliveries all ended without
 * an outcome (the process died) is dead-lettered from the server's
 * `MAX_DELIVERIES` advisory by one replica. Needs permission to subscribe to
 * `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<durable>`.
 *
 * @param service The service, created with `consumeMode: "jetstream"`.
 * @param options Redelivery, ack wait, start position and pull settings.
 * @returns The running consumers, with a readiness check.
 * @throws {RangeError} When an option is out of range.
 *
 * @example
 * ```ts ignore
 * import { consumeJetStream } from "@homelab/handler-base/jetstream";
 *
 * await service.start();
 * const consumers = consumeJetStream(service, { maxDeliver: 5, ackWaitMs: 30_000 });
 * health.setCheck("jetstream", () => consumers.check());
 * ```
 */
export function consumeJetStream(
  service: Service,
  options: JetStreamConsumerOptions = {},
): JetStreamConsumers {
  const {
    maxDeliver = 5,
    ackWaitMs = 30_000,
    retryDelayMs = 1000,
    maxRetryDelayMs = 60_000,
    deliverPolicy = "all",
    fetchExpiresMs = 30_000,
    deadLetterPrefix = "dlq",
    onStateChange,
  } = options;
  if (!Number.isInteger(maxDeliver) || maxDeliver < 1) {
    throw new RangeError(
      `Cannot consume: maxDeliver must be a positive integer: current value is ${maxDeliver}`,
    );
  }
  for (const [key, value] of [["ackWaitMs", ackWaitMs], ["fetchExpiresMs", fetchExpiresMs]]) {
    if (!(Number(value) >= 1000)) {
      throw new RangeError(
        `Cannot consume: ${key} must be at least 1000: current value is ${value}`,
      );
    }
  }
  const { nc } = service;
  const client = js.jetstream(nc);
  const shared: Shared = {
    service,
    client,
    manager: client.jetstreamManager(false),
    flush: createFlusher(nc, Math.min(ackWaitMs, 10_000)),
    maxDeliver,
    ackWaitMs,
    retryDelayMs,
    maxRetryDelayMs,
    deliverPolicy,
    fetchExpiresMs,
    deadLetterPrefix,
    onStateChange,
  };
  const stats = service.stats();
  const runners = service.jetstreamEndpoints.map((endpoint) => {
    const limit = stats[service.endpoints.indexOf(endpoint)]?.concurrency ?? 1;
    return startRunner(shared, endpoint, limit);
  });

  // Disconnects and reconnects are seen here, not by each pull: a pull made
  // before a server restart is gone, and the consumer must be checked again.
  const status = nc.status();
  (async () => {
    for await (const s of status) {
      if (s.type === "disconnect") { for (const r of runners) r.disconnected(); }
      else if (s.type === "reconnect") { for (const r of runners) r.reconnected(); }
    }
  })();

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= (async () => {
      (status as Partial<{ stop(): void }>).stop?.();
      await Promise.all(runners.map((r) => r.stop()));
    })();
    return stopping;
  }
  service.onStop(stop);

  const consumers: JetStreamConsumers = {
    get ready() {
      return runners.every((r) => r.state.status === "consuming");
    },
    states: () => runners.map((r) => r.state),
    check() {
      const failing = runners.filter((r) => r.state.status !== "consuming");
      if (failing.length === 0) return true;
      return failing.map(({ state }) =>
        `${state.stream}/${state.durable} ${state.status}${state.reason ? `: ${state.reason}` : ""}`
      ).join("; ");
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return consumers;
}

function jetStreamDelivery(m: js.JsMsg): Delivery {
  return {
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    attempt: m.info.deliveryCount,
    // A stored message has no reply subject: JetStream answered the request.
    wantsReply: false,
    respond() {},
  };
}

function startRunner(shared: Shared, endpoint: Endpoint, limit: number): Runner {
  const { service, client } = shared;
  const stream = endpoint.stream!;
  const durable = endpoint.durable ?? service.name;
  const log = service.logger.child({ stream, consumer: durable, endpoint: endpoint.name });
  const stopped = new AbortController();
  const progressEveryMs = Math.max(100, Math.floor(shared.ackWaitMs / 3));
  let state: ConsumerState = {
    endpoint: endpoint.name,
    stream,
    durable,
    status: "starting",
    reason: "",
  };
  let consumer: js.Consumer | undefined;
  let current: js.ConsumerMessages | undefined;
  let maxDeliver = shared.maxDeliver;
  let ackFloor: number | undefined;
  let floorCheckedAt = 0;
  let inFlight = 0;
  let slotFreed: (() => void) | undefined;
  let settled: (() => void) | undefined;

  function setStatus(status: ConsumerState["status"], reason = ""): void {
    if (state.status === status && state.reason === reason) return;
    const previous = state.status;
    state = { ...state, status, reason };
    if (status === "recovering") log.warn("Consumer is not consuming", { reason });
    else if (status === "consuming" && previous === "recovering") log.info("Consumer recovered");
    shared.onStateChange?.(state);
  }

  async function ensureConsumer(): Promise<js.Consumer> {
    const jsm = await shared.manager;
    let info: js.ConsumerInfo | undefined;
    try {
      info = await jsm.consumers.info(stream, durable);
    } catch (error) {
      if (!isApiError(error, js.JetStreamApiCodes.ConsumerNotFound)) throw error;
    }
    if (info) {
      const drift: Partial<js.ConsumerUpdateConfig> = {};
      if (info.config.ack_wait !== nanos(shared.ackWaitMs)) {
        drift.ack_wait = nanos(shared.ackWaitMs);
      }
      if (info.config.max_deliver !== shared.maxDeliver) drift.max_deliver = shared.maxDeliver;
      if (Object.keys(drift).length > 0) {
        info = await jsm.consumers.update(stream, durable, drift);
        log.info("Consumer updated", {
          ack_wait_ms: shared.ackWaitMs,
          max_deliver: shared.maxDeliver,
        });
      }
    } else {
      const start = await startPosition(jsm);
      info = await jsm.consumers.add(stream, {
        durable_name: durable,
        description: `${service.name}: ${endpoint.name}`,
        ack_policy: js.AckPolicy.Explicit,
        ack_wait: nanos(shared.ackWaitMs),
        max_deliver: shared.maxDeliver,
        filter_subject: endpoint.subject,
        ...start,
      });
      log.info(ackFloor === undefined ? "Consumer created" : "Consumer recreated", {
        deliver_policy: start.deliver_policy,
        ...(start.opt_start_seq ? { start_sequence: start.opt_start_seq } : {}),
      });
    }
    noteInfo(info);
    return client.consumers.getConsumerFromInfo(info);
  }

  function noteInfo(info: js.ConsumerInfo): void {
    ackFloor = info.ack_floor.stream_seq;
    floorCheckedAt = performance.now();
    const configured = info.config.max_deliver ?? -1;
    maxDeliver = configured > 0 ? configured : shared.maxDeliver;
  }

  /** Where a (re)created consumer starts: after the last known ack floor, if any. */
  async function startPosition(
    jsm: js.JetStreamManager,
  ): Promise<Pick<js.ConsumerConfig, "deliver_policy" | "opt_start_seq">> {
    if (ackFloor === undefined) {
      return {
        deliver_policy: shared.deliverPolicy === "new"
          ? js.DeliverPolicy.New
          : js.DeliverPolicy.All,
      };
    }
    const { state: streamState } = await jsm.streams.info(stream);
    // A floor beyond the stream's end means the stream itself was recreated.
    if (ackFloor > streamState.last_seq) return { deliver_policy: js.DeliverPolicy.All };
    return { deliver_policy: js.DeliverPolicy.StartSequence, opt_start_seq: ackFloor + 1 };
  }

  function waitForSlot(): Promise<void> {
    if (inFlight < limit || stopped.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => slotFreed = resolve);
  }

  function retryDelay(attempt: number): number {
    return Math.min(shared.maxRetryDelayMs, shared.retryDelayMs * 2 ** (attempt - 1));
  }

  async function deadLetter(letter: DeadLetter, error: unknown): Promise<void> {
    const h = createHeaders();
    for (const key of letter.headers?.keys() ?? []) {
      // Nats-* headers steer the stream (dedup, expectations): not the dead letter's.
      if (/^nats-/i.test(key)) continue;
      for (const value of letter.headers!.values(key)) h.append(key, value);
    }
    h.set(DEAD_LETTER_HEADERS.reason, safeMessage(error));
    h.set(DEAD_LETTER_HEADERS.errorType, errorType(error));
    h.set(DEAD_LETTER_HEADERS.stream, stream);
    h.set(DEAD_LETTER_HEADERS.sequence, String(letter.sequence));
    h.set(DEAD_LETTER_HEADERS.deliveries, String(letter.deliveries));
    h.set(DEAD_LETTER_HEADERS.subject, letter.subject);
    h.set(DEAD_LETTER_HEADERS.consumer, durable);
    const subject = deadLetterSubject(service.name, letter.subject, {
      prefix: shared.deadLetterPrefix,
    });
    try {
      await client.publish(subject, letter.data, {
        headers: h,
        // One dead letter per message, whichever path or replica sends it.
        msgID: `${stream}.${letter.sequence}.${durable}`,
        timeout: Math.min(shared.ackWaitMs, 5000),
      });
    } catch (publishError) {
      if (!(publishError instanceof Error && publishError.name === "JetStreamNotEnabled")) {
        throw publishError;
      }
      // No stream keeps dead letters: publish them for whoever listens.
      service.nc.publish(subject, letter.data, { headers: h });
      await shared.flush();
    }
    log.warn("Message dead-lettered", {
      dead_letter_subject: subject,
      stream_sequence: letter.sequence,
      deliveries: letter.deliveries,
      error_type: errorType(error),
    });
  }

  /**
   * A message whose deliveries all ended without an outcome (the process
   * died or hung) never reaches `settleFailure`: the server reports it in an
   * advisory, and one replica (a queue group) dead-letters it from the stream.
   */
  async function deadLetterExhausted(advisory: Msg): Promise<void> {
    const { stream_seq: sequence, deliveries } = advisory.json<MaxDeliveriesAdvisory>();
    const jsm = await shared.manager;
    const stored = await jsm.streams.getMessage(stream, { seq: sequence });
    if (!stored) return; // Gone from the stream already.
    const error = new HandlerError(
      "Internal",
      `Cannot handle the message: ${deliveries} deliveries ended without an outcome`,
    );
    await deadLetter(
      { subject: stored.subject, data: stored.data, headers: stored.header, sequence, deliveries },
      error,
    );
  }

  const advisories = service.nc.subscribe(
    `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${durable}`,
    {
      queue: durable,
      callback: (error, msg) => {
        if (error) return;
        deadLetterExhausted(msg).catch((cause) =>
          log.error("Cannot dead-letter an exhausted message", { error: cause })
        );
      },
    },
  );

  async function settleFailure(m: js.JsMsg, error: unknown): Promise<void> {
    const attempt = m.info.deliveryCount;
    if (isRetryable(error) && attempt < maxDeliver) {
      // A stopping replica hands the message back at once, for another one.
      const retryInMs = service.stopping ? 0 : retryDelay(attempt);
      log.info("Retrying message later", {
        stream_sequence: m.info.streamSequence,
        attempt,
        max_deliver: maxDeliver,
        retry_in_ms: retryInMs,
        error_type: errorType(error),
      });
      m.nak(retryInMs);
      return;
    }
    await deadLetter({
      subject: m.subject,
      data: m.data,
      headers: m.headers,
      sequence: m.info.streamSequence,
      deliveries: m.info.deliveryCount,
    }, error);
    m.term();
  }

  async function handle(m: js.JsMsg): Promise<void> {
    inFlight++;
    const progress = setInterval(() => m.working(), progressEveryMs);
    try {
      const outcome = await service.dispatch(endpoint, jetStreamDelivery(m));
      if (outcome.ok) {
        await shared.flush();
        m.ack();
      } else {
        await settleFailure(m, outcome.error);
      }
    } catch (error) {
      log.warn("Cannot settle message: it comes back after the ack wait", {
        error,
        stream_sequence: m.info.streamSequence,
      });
    } finally {
      clearInterval(progress);
      inFlight--;
      slotFreed?.();
      slotFreed = undefined;
      if (inFlight === 0) settled?.();
    }
  }

  async function pull(): Promise<void> {
    let failures = 0;
    while (!stopped.signal.aborted) {
      try {
        if (!consumer) {
          consumer = await ensureConsumer();
          failures = 0;
          setStatus("consuming");
        }
        await waitForSlot();
        if (stopped.signal.aborted || !consumer || inFlight >= limit) continue;
        const messages = await consumer.fetch({
          max_messages: limit - inFlight,
          expires: shared.fetchExpiresMs,
        });
        current = messages;
        for await (const m of messages) {
          // Pulled but not started: hand it back for another replica.
          if (stopped.signal.aborted) m.nak();
          else handle(m);
        }
        if (current !== messages) continue; // Interrupted by a reconnect.
        current = undefined;
        if (performance.now() - floorCheckedAt > FLOOR_REFRESH_MS) noteInfo(await consumer.info());
      } catch (error) {
        current = undefined;
        consumer = undefined;
        if (stopped.signal.aborted) break;
        failures++;
        setStatus("recovering", describeFailure(error));
        await delay(Math.min(5000, 250 * 2 ** Math.min(failures - 1, 5)), {
          signal: stopped.signal,
        }).catch(() => {});
      }
    }
  }

  const pulling = pull();

  return {
    get state() {
      return state;
    },
    disconnected() {
      setStatus("recovering", "disconnected from NATS");
    },
    reconnected() {
      // A pull made before a server restart is gone: check the consumer again
      // (the loop wakes up even when every slot is busy) and pull anew.
      const stale = current;
      current = undefined;
      consumer = undefined;
      stale?.stop();
      slotFreed?.();
      slotFreed = undefined;
    },
    async stop() {
      stopped.abort();
      advisories.unsubscribe();
      slotFreed?.();
      current?.stop();
      await pulling;
      if (inFlight > 0) await new Promise<void>((resolve) => settled = resolve);
      setStatus("stopped");
    },
  };
}

function describeFailure(error: unknown): string {
  if (isApiError(error, js.JetStreamApiCodes.ConsumerNotFound)) return "consumer not found";
  if (isApiError(error, js.JetStreamApiCodes.StreamNotFound)) return "stream not found";
  return messageOf(error);
}

// ---------------------------------------------------------------------------
// Durable publishing

/** Options of {@linkcode publishDurable}. */
export interface PublishDurableOptions {
  /**
   * The message id (`Nats-Msg-Id`): the request id, so that a trigger sent
   * twice within the stream's duplicate window is stored once.
   *
   * @default a random id (retries of this call still never duplicate)
   */
  msgId?: string;
  /**
   * How long to keep trying, in milliseconds.
   *
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Stops trying when aborted; the call rejects with the signal's reason.
   *
   * @default undefined
   */
  signal?: AbortSignal;
  /**
   * Extra headers; `Msg-Type`, the trace context and `Nats-Msg-Id` are added.
   *
   * @default new headers
   */
  headers?: MsgHdrs;
  /**
   * The trace context to propagate.
   *
   * @default the active context
   */
  context?: Context;
}

/** The stream's acknowledgement of a stored message. */
export interface DurableAck {
  /** The stream that stored it. */
  readonly stream: string;
  /** Its sequence in the stream. */
  readonly seq: number;
  /** True when the stream already had this message id (nothing new was stored). */
  readonly duplicate: boolean;
}

/** One try's time limit: short, so that a lost request is retried well before the deadline. */
const PUBLISH_ATTEMPT_MS = 2000;

function isTransientPublishError(error: unknown): boolean {
  if (error instanceof js.JetStreamApiError) return error.status === 503;
  if (error instanceof Error && error.name === "JetStreamNotEnabled") return true;
  return error instanceof natsErrors.TimeoutError || error instanceof natsErrors.RequestError;
}

/**
 * Stores one typed message in the stream that captures its subject, with
 * `Msg-Type`, the trace headers and `Nats-Msg-Id`, retrying (timeouts, no
 * stream yet, a reconnecting connection) until the stream acknowledges it or
 * the time is up. Retries reuse the message id, so the stream keeps one copy.
 *
 * @typeParam Desc The message schema.
 * @param target A JetStream client, or a connection to make one from.
 * @param subject The subject.
 * @param schema The message's schema.
 * @param message The message or its fields.
 * @param options Message id, time limit, signal, headers and trace context.
 * @returns The acknowledgement.
 * @throws {BackendUnavailableError} When no stream took the message before the deadline.
 * @throws {TimeoutError} When the stream did not acknowledge before the deadline.
 * @throws {BackendError} When the stream refused the message (a permanent API error).
 *
 * @example Store a pipeline trigger once
 * ```ts ignore
 * import { publishDurable } from "@homelab/handler-base/jetstream";
 * import { PipelineTriggerSchema } from "@homelab/handler-base/messages";
 *
 * const ack = await publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, {
 *   requestId: "r-42",
 *   pipeline: "document-ingestion",
 * }, { msgId: "r-42", timeoutMs: 5000 });
 * console.log(ack.stream, ack.seq, ack.duplicate); // "AI_PIPELINE" 1 false
 * ```
 */
export async function publishDurable<Desc extends DescMessage>(
  target: JetStreamClient | NatsConnection,
  subject: string,
  schema: Desc,
  message: MessageShape<Desc> | MessageInitShape<Desc>,
  options: PublishDurableOptions = {},
): Promise<DurableAck> {
  const { timeoutMs = 10_000, signal } = options;
  signal?.throwIfAborted();
  const client = "jetstreamManager" in target ? target : js.jetstream(target);
  const data = encode(schema, message);
  const msgID = options.msgId ?? crypto.randomUUID();
  const headers = messageHeaders(schema.typeName, {
    ...(options.headers ? { headers: options.headers } : {}),
    ...(options.context ? { context: options.context } : {}),
  });
  const deadline = performance.now() + timeoutMs;
  const wait = new AbortController();
  const onAbort = () => wait.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let lastError: unknown;
  try {
    for (let attempt = 0;; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      try {
        const ack = await abortable(
          client.publish(subject, data, {
            msgID,
            headers,
            timeout: Math.max(1, Math.min(remaining, PUBLISH_ATTEMPT_MS)),
          }),
          signal,
        );
        return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (!isTransientPublishError(error)) {
          throw new BackendError("jetstream", {
            status: error instanceof js.JetStreamApiError ? error.status : 0,
            excerpt: messageOf(error),
            cause: error,
          });
        }
        lastError = error;
      }
      const backoffMs = Math.min(100 * 2 ** attempt, 2000, deadline - performance.now());
      if (backoffMs > 0) await delay(backoffMs, { signal: wait.signal }).catch(() => {});
      if (signal?.aborted) throw signal.reason;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (lastError instanceof Error && lastError.name === "JetStreamNotEnabled") {
    throw new BackendUnavailableError("jetstream", {
      detail: `no stream stored a message on "${subject}" within ${timeoutMs} ms`,
      cause: lastError,
    });
  }
  throw new TimeoutError(
    `Cannot store a message on "${subject}": no acknowledgement within ${timeoutMs} ms`,
    { cause: lastError },
  );
}
