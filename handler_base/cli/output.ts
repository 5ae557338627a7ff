/**
 * Where the client writes, and in which form: human text by default, one
 * JSON object per line with `--json`. Commands write through a
 * {@linkcode Ui}, so tests give it a recording {@linkcode CliOutput}.
 *
 * Human mode: results on stdout, progress and errors on stderr. JSON mode:
 * every stdout line is one JSON object with a `type` field (`"token"`,
 * `"transcription"`, `"status"`, ... as the command emits them), the last one
 * `"result"` or `"error"`; stderr stays empty.
 *
 * @example
 * ```ts
 * import { createUi, memoryOutput } from "./output.ts";
 *
 * const out = memoryOutput();
 * const ui = createUi(out, { json: true });
 * ui.event("token", { content: "Hi" });
 * console.log(out.stdoutText()); // {"type":"token","content":"Hi"}\n
 * ```
 *
 * @module
 */

/** The two streams the client writes to. */
export interface CliOutput {
  /** Writes text to standard output, as is. */
  stdout(text: string): void;
  /** Writes text to standard error, as is. */
  stderr(text: string): void;
}

/** How commands report: text for humans, events for `--json`. */
export interface Ui {
  /** Whether `--json` was given. */
  readonly json: boolean;
  /** Human mode: writes text to stdout as is (tokens as they arrive). */
  write(text: string): void;
  /** Human mode: writes one line to stdout. */
  line(text: string): void;
  /** Human mode: writes one progress line to stderr. */
  progress(text: string): void;
  /** JSON mode: writes `{"type": type, ...fields}` as one stdout line. */
  event(type: string, fields?: Record<string, unknown>): void;
}

/** Options of {@linkcode createUi}. */
export interface UiOptions {
  /** One JSON object per line instead of text. @default false */
  json?: boolean;
}

function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) => typeof v === "bigint" ? Number(v) : v);
}

/**
 * Creates the {@linkcode Ui} of one run.
 *
 * @param out Where to write.
 * @param options Human or JSON output.
 * @returns The Ui.
 *
 * @example
 * ```ts
 * import { createUi, memoryOutput } from "./output.ts";
 *
 * const out = memoryOutput();
 * createUi(out).line("hello");
 * console.log(out.stdoutText()); // "hello\n"
 * ```
 */
export function createUi(out: CliOutput, options: UiOptions = {}): Ui {
  const json = options.json ?? false;
  return {
    json,
    write: (text) => {
      if (!json) out.stdout(text);
    },
    line: (text) => {
      if (!json) out.stdout(`${text}\n`);
    },
    progress: (text) => {
      if (!json) out.stderr(`${text}\n`);
    },
    event: (type, fields = {}) => {
      if (json) out.stdout(`${toJson({ type, ...fields })}\n`);
    },
  };
}

/** A {@linkcode CliOutput} that keeps what was written, for tests. */
export interface MemoryOutput extends CliOutput {
  /** Everything written to stdout so far. */
  stdoutText(): string;
  /** Everything written to stderr so far. */
  stderrText(): string;
  /** The stdout lines parsed as JSON (for `--json` runs). */
  events(): Record<string, unknown>[];
}

/**
 * An output that records, for tests.
 *
 * @returns The output.
 *
 * @example
 * ```ts
 * import { memoryOutput } from "./output.ts";
 *
 * const out = memoryOutput();
 * out.stderr("warning\n");
 * console.log(out.stderrText()); // "warning\n"
 * ```
 */
export function memoryOutput(): MemoryOutput {
  let stdout = "";
  let stderr = "";
  return {
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
    stdoutText: () => stdout,
    stderrText: () => stderr,
    events: () =>
      stdout.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line)),
  };
}

/**
 * The process's stdout and stderr, written synchronously so that tokens
 * appear as they arrive and nothing is lost at exit.
 *
 * @returns The output.
 *
 * @example
 * ```ts
 * import { denoOutput } from "./output.ts";
 *
 * denoOutput().stderr("starting\n");
 * ```
 */
export function denoOutput(): CliOutput {
  const encoder = new TextEncoder();
  const writeAll = (file: { writeSync(p: Uint8Array): number }, text: string) => {
    let bytes = encoder.encode(text);
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  };
  return {
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
  };
}

/**
 * Formats seconds for progress lines: `1.25 s`.
 *
 * @param ms Milliseconds.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { seconds } from "./output.ts";
 *
 * console.log(seconds(1250)); // "1.25 s"
 * ```
 */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}
