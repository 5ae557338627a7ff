/**
 * Bounded subprocesses for the speech stand-ins (internal): find a program on
 * `PATH`, run it with its input on stdin, a time limit, a cap on its output,
 * and a kill when the caller's signal fires; and a small limiter so a slow
 * recogniser never runs more copies than the machine has cores for.
 *
 * Requires `--allow-run` for the programs, `--allow-env=PATH` and
 * `--allow-read` of the `PATH` directories.
 *
 * @example Run a program
 * ```ts ignore
 * import { runProcess } from "./_process.ts";
 *
 * const { stdout } = await runProcess("sox", ["--version"], { timeoutMs: 5000 });
 * ```
 *
 * @module
 */
import { abortable } from "../../handler_base/async.ts";

/**
 * The path of a program found on `PATH`, or undefined when it is not there.
 *
 * @param name The program, such as `"flite"`.
 * @returns Its absolute path, or undefined.
 */
export function findProgram(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${name}`;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/** Options of {@linkcode runProcess}. */
export interface RunProcessOptions {
  /**
   * Bytes written to the program's stdin (then stdin is closed).
   *
   * @default nothing: stdin is null
   */
  stdin?: Uint8Array;
  /**
   * How long the program may run before it is killed.
   *
   * @default 30000
   */
  timeoutMs?: number;
  /**
   * Kills the program when it fires.
   *
   * @default none
   */
  signal?: AbortSignal;
  /**
   * The most bytes of stdout kept; a program writing more is killed.
   *
   * @default 64 MiB
   */
  maxOutputBytes?: number;
}

/** What a finished program left. */
export interface ProcessResult {
  /** Its exit code. */
  code: number;
  /** Everything it wrote to stdout. */
  stdout: Uint8Array;
  /** The start of what it wrote to stderr (for error messages). */
  stderr: string;
}

/**
 * Runs a program to its end, killing it (SIGKILL) on timeout, on the
 * caller's signal or when its output passes the cap.
 *
 * @param program The program's path or name.
 * @param args Its arguments (no shell is involved).
 * @param options Stdin, time limit, signal and output cap.
 * @returns Its exit code and output.
 * @throws {Error} "Cannot run <program>: ..." when it cannot start, runs too
 *   long or writes too much; the signal's reason when the signal fired.
 */
export async function runProcess(
  program: string,
  args: readonly string[],
  options: RunProcessOptions = {},
): Promise<ProcessResult> {
  const { stdin, timeoutMs = 30_000, signal, maxOutputBytes = 64 * 1024 * 1024 } = options;
  signal?.throwIfAborted();
  const name = program.split("/").pop();
  const child = new Deno.Command(program, {
    args: [...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let problem: string | undefined;
  // A killed program's output is dropped: stop reading even if a child of it still holds the pipes.
  const killed = new AbortController();
  const kill = (why: string | undefined) => {
    problem ??= why;
    killed.abort();
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  };
  const onAbort = () => kill(undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(() => kill(`it ran longer than ${timeoutMs} ms`), timeoutMs);
  try {
    const writing = stdin ? writeAll(child.stdin, stdin) : Promise.resolve();
    const [stdout, stderr, status] = await Promise.all([
      readCapped(
        child.stdout,
        maxOutputBytes,
        () => kill(`it wrote more than ${maxOutputBytes} bytes`),
        killed.signal,
      ),
      readCapped(child.stderr, 4096, () => {}, killed.signal),
      child.status,
      writing.catch(() => {}),
    ]);
    if (signal?.aborted) throw signal.reason;
    if (problem) throw new Error(`Cannot run ${name}: ${problem}`);
    return { code: status.code, stdout, stderr: new TextDecoder().decode(stderr).trim() };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

async function writeAll(stream: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
  const writer = stream.getWriter();
  try {
    await writer.write(bytes);
    await writer.close();
  } finally {
    writer.releaseLock();
  }
}

/**
 * Reads a stream to its end, keeping at most `limit` bytes (the rest is
 * drained); `stop` ends the reading early.
 */
async function readCapped(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  onOverflow: () => void,
  stop: AbortSignal,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  let overflowed = false;
  const reader = stream.getReader();
  while (true) {
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await abortable(reader.read(), stop);
    } catch {
      await reader.cancel().catch(() => {});
      break;
    }
    if (result.done) break;
    const part = result.value;
    if (total + part.byteLength > limit) {
      if (!overflowed) onOverflow();
      overflowed = true;
      continue;
    }
    parts.push(part);
    total += part.byteLength;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/**
 * Runs at most `max` tasks at once; the others wait in order (a wait ends
 * with the caller's signal).
 */
export class Limiter {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /**
   * @param max How many tasks may run at once.
   */
  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /**
   * Runs a task when a slot is free.
   *
   * @param task The task.
   * @param signal Gives up waiting for a slot.
   * @returns The task's result.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#running >= this.#max) {
      const turn = Promise.withResolvers<void>();
      this.#waiting.push(turn.resolve);
      try {
        await abortable(turn.promise, signal);
      } catch (error) {
        const index = this.#waiting.indexOf(turn.resolve);
        if (index >= 0) this.#waiting.splice(index, 1);
        else this.#release(); // The slot was handed over just as the wait ended.
        throw error;
      }
    } else {
      this.#running++;
    }
    try {
      return await task();
    } finally {
      this.#release();
    }
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}
