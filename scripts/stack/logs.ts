/**
 * The local stack's one log stream: every line prefixed with where it comes
 * from (a service, a backend, the stack itself), coloured per source when the
 * output is a terminal (and `NO_COLOR` is unset), and the services' JSON log
 * lines made readable: `12:00:01.234 INFO  Serving endpoints=3`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./logs.ts";
 *
 * const line = '{"ts":"2025-01-02T12:00:01.234Z","level":"warn","service":"tts-module","msg":"Slow","ms":812}';
 * assert.equal(formatLogLine(line), "12:00:01.234 WARN  Slow ms=812");
 * ```
 *
 * @module
 */
import type { Logger, LogLevel } from "../../handler_base/log.ts";
import { createLogger } from "../../handler_base/log.ts";

const RESET = "\x1b[0m";
const DIM = "\x1b[2m";
/** Colours of the sources, in the order they are first seen. */
const PALETTE = [
  "\x1b[36m",
  "\x1b[35m",
  "\x1b[32m",
  "\x1b[34m",
  "\x1b[33m",
  "\x1b[96m",
  "\x1b[95m",
];
const LEVEL_COLOURS: Record<string, string> = {
  debug: DIM,
  warn: "\x1b[33m",
  error: "\x1b[31;1m",
};

function fieldText(value: unknown): string {
  if (typeof value === "string") {
    return /[\s"=]/.test(value) || value === "" ? JSON.stringify(value) : value;
  }
  return JSON.stringify(value);
}

/**
 * One log line made readable: a JSON log record (`ts`, `level`, `msg`, more
 * fields) becomes `time LEVEL message key=value ...` (the `service` field is
 * dropped: the prefix names it); any other line is kept as it is.
 *
 * @param line The line.
 * @param colour Colour the level and the fields.
 * @returns The readable line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./logs.ts";
 *
 * assert.equal(formatLogLine("not json"), "not json");
 * ```
 */
export function formatLogLine(line: string, colour = false): string {
  if (!line.startsWith("{")) return line;
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return line;
  }
  if (typeof record !== "object" || record === null || !("msg" in record)) return line;
  const { ts, level, service: _service, msg, ...fields } = record as Record<string, unknown>;
  const time = typeof ts === "string" && ts.length >= 23 ? ts.slice(11, 23) : "";
  const name = String(level ?? "info");
  const levelText = name.toUpperCase().padEnd(5);
  const rest = Object.entries(fields).map(([key, value]) => `${key}=${fieldText(value)}`).join(" ");
  const paint = (code: string | undefined, text: string) =>
    colour && code ? `${code}${text}${RESET}` : text;
  return [
    time && paint(DIM, time),
    paint(LEVEL_COLOURS[name], levelText),
    String(msg),
    rest && paint(DIM, rest),
  ].filter(Boolean).join(" ");
}

/** Options of {@linkcode createLogStream}. */
export interface LogStreamOptions {
  /** Where each finished line goes (without its newline). @default stdout */
  write?: (line: string) => void;
  /** Colour the output. @default stdout is a terminal and `NO_COLOR` is unset */
  colour?: boolean;
  /** The width of the prefix (the longest source name). @default 12 */
  width?: number;
}

/** The one log stream of the stack. */
export interface LogStream {
  /** Writes one line (a JSON log record or text) from a source. */
  line(source: string, line: string): void;
  /** A structured logger whose lines go to the stream under a source's name. */
  logger(source: string, level?: LogLevel): Logger;
}

const encoder = new TextEncoder();

/**
 * Creates the stack's log stream.
 *
 * @param options Writer, colour, prefix width.
 * @returns The stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLogStream } from "./logs.ts";
 *
 * const lines: string[] = [];
 * const stream = createLogStream({ write: (l) => lines.push(l), colour: false, width: 5 });
 * stream.line("nats", "started");
 * assert.deepEqual(lines, ["nats  | started"]);
 * ```
 */
export function createLogStream(options: LogStreamOptions = {}): LogStream {
  const write = options.write ??
    ((line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`)));
  const colour = options.colour ??
    (Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR"));
  const width = options.width ?? 12;
  const colours = new Map<string, string>();
  const colourOf = (source: string) => {
    let code = colours.get(source);
    if (!code) {
      code = PALETTE[colours.size % PALETTE.length]!;
      colours.set(source, code);
    }
    return code;
  };
  const line = (source: string, text: string) => {
    const prefix = `${source.padEnd(width)} |`;
    write(
      `${colour ? `${colourOf(source)}${prefix}${RESET}` : prefix} ${formatLogLine(text, colour)}`,
    );
  };
  return {
    line,
    logger: (source, level = "info") =>
      createLogger({ service: source, level, write: (text) => line(source, text) }),
  };
}
