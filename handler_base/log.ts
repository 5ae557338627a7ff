/**
 * Structured logs: one JSON object per line on stderr, with the service name,
 * a level, a message and any fields (subject, request id, trace id, ...).
 * Loggers are values passed around, never a global registry.
 *
 * Needs no permission: the level is passed in (services read `LOG_LEVEL`
 * through their config).
 *
 * @example
 * ```ts
 * import { createLogger } from "@homelab/handler-base/log";
 *
 * const log = createLogger({ service: "tts-module", level: "info" });
 * log.child({ subject: "ai.voice.tts.request.s1" }).info("Synthesizing", { chars: 42 });
 * ```
 *
 * @module
 */
import { isoTime } from "./iso_time.ts";

/**
 * The log levels, least severe first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LOG_LEVELS } from "@homelab/handler-base/log";
 *
 * assert.equal(LOG_LEVELS.includes("warn"), true);
 * ```
 */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Extra fields of a log line. Errors are written as `{name, message, type}`. */
export type LogFields = Record<string, unknown>;

/** A structured logger. */
export interface Logger {
  /** The least severe level written. */
  readonly level: LogLevel;
  /** Writes a debug line. */
  debug(message: string, fields?: LogFields): void;
  /** Writes an info line. */
  info(message: string, fields?: LogFields): void;
  /** Writes a warning line. */
  warn(message: string, fields?: LogFields): void;
  /** Writes an error line. */
  error(message: string, fields?: LogFields): void;
  /** A logger that adds these fields to every line. */
  child(fields: LogFields): Logger;
  /** Whether a line of this level would be written. */
  enabled(level: LogLevel): boolean;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The service name written on every line. */
  service: string;
  /**
   * The least severe level written.
   *
   * @default "info"
   */
  level?: LogLevel;
  /**
   * Where each line goes (without its newline).
   *
   * @default a writer to stderr
   */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function serializeValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if ("type" in value) out.type = value.type;
    if (value.cause instanceof Error) out.cause = `${value.cause.name}: ${value.cause.message}`;
    return out;
  }
  return value;
}

/**
 * Creates a JSON-lines logger.
 *
 * @param options The service name, level and writer.
 * @returns A logger.
 *
 * @example Capture lines in a test
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLogger } from "@homelab/handler-base/log";
 *
 * const lines: string[] = [];
 * const log = createLogger({ service: "demo", level: "debug", write: (l) => lines.push(l) });
 * log.debug("Hello", { n: 1 });
 * assert.equal(JSON.parse(lines[0]!).msg, "Hello");
 * ```
 */
export function createLogger(options: LoggerOptions): Logger {
  const { service, level = "info", write = writeStderr } = options;
  return makeLogger(level, write, { service });
}

function makeLogger(
  level: LogLevel,
  write: (line: string) => void,
  base: LogFields,
): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const enabled = (l: LogLevel) => LOG_LEVELS.indexOf(l) >= threshold;
  const emit = (l: LogLevel, msg: string, fields?: LogFields) => {
    if (!enabled(l)) return;
    const record = { ts: isoTime(), level: l, ...base, msg, ...fields };
    write(JSON.stringify(record, serializeValue));
  };
  return {
    level,
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (fields) => makeLogger(level, write, { ...base, ...fields }),
    enabled,
  };
}

/**
 * Parses a level name, case-insensitively (`warning` is `warn`).
 *
 * @param value The text, such as the value of `LOG_LEVEL`.
 * @returns The level, or undefined when the text names none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLogLevel } from "@homelab/handler-base/log";
 *
 * assert.equal(parseLogLevel("WARNING"), "warn");
 * ```
 */
export function parseLogLevel(value: string): LogLevel | undefined {
  const lower = value.trim().toLowerCase();
  const name = lower === "warning" ? "warn" : lower;
  return (LOG_LEVELS as readonly string[]).includes(name) ? name as LogLevel : undefined;
}
