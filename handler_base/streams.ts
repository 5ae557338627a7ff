/**
 * The platform's JetStream streams (SYSTEM.md section 4) in one table,
 * {@linkcode STREAMS}, and {@linkcode ensureStreams}, which creates or
 * updates them and never drops stored messages.
 *
 * The trap of SYSTEM.md section 4: a stream that captures a subject answers
 * every request on it with its publish acknowledgement. In JetStream mode a
 * request on an input subject is therefore answered by that ack (the stored
 * message has no reply subject) and results arrive on the per-id subjects;
 * `AI_VOICE_STREAM`, which captures request-reply subjects, is created with
 * `no_ack` so that those stay answered by the services.
 *
 * Requires `--allow-net=<nats>` for {@linkcode ensureStreams}.
 *
 * @example
 * ```ts
 * import { STREAMS } from "@homelab/handler-base/streams";
 *
 * console.log(Object.keys(STREAMS).includes("AI_PIPELINE")); // true
 * ```
 *
 * @module
 */
import { millis, nanos } from "@nats-io/nats-core";
import * as js from "@nats-io/jetstream";
import { isApiError, messageOf } from "./jetstream_api.ts";
import type { Logger } from "./log.ts";
import type { NatsConnection } from "./natsutil.ts";

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
 * import { STREAMS } from "@homelab/handler-base/streams";
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
   * How many servers hold a copy of every stream (`JETSTREAM_REPLICAS`), in
   * place of each definition's own count: 3 on a three-node cluster. Raising
   * it on an existing stream is an update that keeps every message (the
   * server copies the stream to the new replicas); more replicas than the
   * cluster has servers fails that stream.
   *
   * @default each definition's `replicas` (1)
   */
  replicas?: number;
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
 * import { ensureStreams, StreamSetupError } from "@homelab/handler-base/streams";
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

/**
 * Creates the streams that do not exist and updates those that differ from
 * their definition, without ever deleting a stream or a message: a storage
 * change is refused and a shorter `max_age` is left as it is (both reported).
 * Running it again changes nothing.
 *
 * @param nc The connection.
 * @param options The definitions, a subset, the replica count, dry run, logger and signal.
 * @returns What happened to each stream.
 * @throws {RangeError} When `replicas` is not an integer from 1 to 5.
 * @throws {StreamSetupError} When a stream could not be created or updated (the others were).
 *
 * @example Ensure the pipeline stream at start
 * ```ts ignore
 * import { ensureStreams } from "@homelab/handler-base/streams";
 *
 * const [result] = await ensureStreams(nc, { only: ["AI_PIPELINE"] });
 * console.log(result?.action); // "created", then "unchanged"
 * ```
 */
export async function ensureStreams(
  nc: NatsConnection,
  options: EnsureStreamsOptions = {},
): Promise<StreamResult[]> {
  const { dryRun = false, logger, signal, replicas } = options;
  if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1 || replicas > 5)) {
    throw new RangeError(`Cannot ensure streams: replicas must be 1 to 5, not ${replicas}`);
  }
  const streams: Readonly<Record<string, StreamDefinition>> = options.streams ?? STREAMS;
  const names = options.only ?? Object.keys(streams);
  const jsm = await js.jetstream(nc).jetstreamManager(false);
  const results: StreamResult[] = [];
  for (const name of names) {
    signal?.throwIfAborted();
    const defined = streams[name];
    const definition = defined && replicas !== undefined ? { ...defined, replicas } : defined;
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
          ...(definition.replicas !== 1 ? [`replicas ${definition.replicas}`] : []),
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
