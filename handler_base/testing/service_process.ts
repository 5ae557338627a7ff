/**
 * Runs a service's entry file as a real subprocess, with exactly the
 * permission flags given and a clean environment, and waits until it serves:
 * the way to test signals, permissions and process exit codes.
 *
 * The service must log at `info` or lower (the default here): its health
 * server's "Health server listening" line gives the port, and the runtime's
 * "Serving" line says that the endpoints are subscribed.
 *
 * Requires `--allow-run` for the Deno executable, `--allow-env` to pass
 * `PATH`, `HOME` and `DENO_DIR` on, and `--allow-net=127.0.0.1` for probes.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it starts a service's entry file as a subprocess (seconds, and
 * // paths from the project's root); services/chat_test.ts and services/tts/entry_test.ts do.
 * import assert from "node:assert/strict";
 * import { startNatsServer, startServiceProcess } from "@homelab/handler-base/testing";
 *
 * await using nats = await startNatsServer();
 * await using tts = await startServiceProcess({
 *   entry: "services/tts.ts",
 *   flags: ["-P=tts-module"],
 *   env: { NATS_URL: nats.url },
 * });
 * await tts.waitForReadiness(200);
 * assert.equal((await tts.stop()).code, 0);
 * ```
 *
 * @module
 */

/** Options of {@linkcode startServiceProcess}. */
export interface ServiceProcessOptions {
  /** The entry file, relative to `cwd` or absolute. */
  entry: string;
  /** The permission flags (`["-P=tts-module"]`, or explicit `--allow-*` flags). */
  flags: readonly string[];
  /**
   * Environment variables beside `PATH`, `HOME` and `DENO_DIR` (passed on)
   * and `HEALTH_PORT=0` and `LOG_LEVEL=info` (defaults).
   *
   * @default {}
   */
  env?: Record<string, string>;
  /** The working directory. @default the current one */
  cwd?: string;
  /** How long the service may take to serve. @default 30000 */
  startTimeoutMs?: number;
  /**
   * Called with every line the service writes to stderr, as it comes (a
   * local stack prints them).
   *
   * @default none
   */
  onLine?: (line: string) => void;
  /**
   * The most lines kept in {@linkcode ServiceProcess.lines} (the oldest are
   * dropped), so a long-running process does not grow without end.
   *
   * @default Infinity
   */
  maxLines?: number;
  /**
   * Runs the service in a process group of its own (a new session): a
   * Ctrl-C of the terminal then reaches only the parent, which stops the
   * service with one signal; {@linkcode ServiceProcess.stop} signals the
   * whole group, so nothing the service started outlives it.
   *
   * @default false
   */
  processGroup?: boolean;
}

/** The readiness the health server answered. */
export interface Readiness {
  /** The HTTP status of `GET /ready`. */
  readonly status: number;
  /** Its JSON body. */
  readonly body: Record<string, unknown>;
}

/** A service running in a subprocess. */
export interface ServiceProcess extends AsyncDisposable {
  /** The process. */
  readonly child: Deno.ChildProcess;
  /** The port of its health server. */
  readonly healthPort: number;
  /** The lines it wrote to stderr so far (its JSON logs). */
  readonly lines: readonly string[];
  /** The first log record read so far whose `msg` is `msg`, parsed; undefined when none. */
  logged(msg: string): Record<string, unknown> | undefined;
  /** Resolves with its exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** `GET /ready`, or undefined when nothing listens any more. */
  readiness(): Promise<Readiness | undefined>;
  /** Waits until `/ready` answers this status (0 for "not listening"). */
  waitForReadiness(status: number, options?: { timeoutMs?: number }): Promise<void>;
  /** Sends a signal (default SIGTERM) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

function passedOn(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR"]) {
    const value = Deno.env.get(name);
    if (value) env[name] = value;
  }
  return env;
}

/**
 * Starts the entry file with `deno run --no-prompt <flags>` and waits until it
 * serves.
 *
 * @param options Entry file, permission flags, environment.
 * @returns The running service; dispose it to kill it.
 * @throws {Error} When the process exits or times out before it serves, with its log lines.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it starts a service's entry file as a subprocess (seconds, and
 * // paths from the project's root); services/chat_test.ts and services/tts/entry_test.ts do.
 * import { startServiceProcess } from "@homelab/handler-base/testing";
 *
 * const service = await startServiceProcess({ entry: "services/chat.ts", flags: ["-P=chat-handler"] });
 * await service.stop("SIGKILL");
 * ```
 */
export async function startServiceProcess(
  options: ServiceProcessOptions,
): Promise<ServiceProcess> {
  const { entry, flags, startTimeoutMs = 30_000, onLine, maxLines = Infinity } = options;
  const processGroup = options.processGroup ?? false;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, entry],
    ...(options.cwd ? { cwd: options.cwd } : {}),
    clearEnv: true,
    env: { ...passedOn(), HEALTH_PORT: "0", LOG_LEVEL: "info", ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    detached: processGroup,
  }).spawn();
  const status = child.status;
  const signalProcess = (signal: Deno.Signal) => {
    try {
      if (processGroup) Deno.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {
      // Already exited.
    }
  };
  const lines: string[] = [];
  let healthPort = 0;
  const serving = Promise.withResolvers<void>();
  const timer = setTimeout(
    () => serving.reject(new Error(`${entry} did not serve within ${startTimeoutMs} ms`)),
    startTimeoutMs,
  );
  const reading = (async () => {
    let buffered = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (lines.length > maxLines) lines.shift();
        onLine?.(line);
        const record = parseLogLine(line);
        if (record?.msg === "Health server listening") healthPort = Number(record.port);
        if (record?.msg === "Serving" && healthPort) serving.resolve();
      }
    }
    const { code } = await status;
    serving.reject(new Error(`${entry} exited with ${code} before serving:\n${lines.join("\n")}`));
  })();
  try {
    await serving.promise;
  } catch (error) {
    signalProcess("SIGKILL");
    await reading;
    throw error;
  } finally {
    clearTimeout(timer);
  }

  async function readiness(): Promise<Readiness | undefined> {
    try {
      const response = await fetch(`http://127.0.0.1:${healthPort}/ready`);
      return { status: response.status, body: await response.json() };
    } catch {
      return undefined;
    }
  }

  async function stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    signalProcess(signal);
    const result = await status;
    await reading;
    return result;
  }

  return {
    child,
    healthPort,
    lines,
    logged: (msg) => lines.map(parseLogLine).find((record) => record?.msg === msg),
    status,
    readiness,
    async waitForReadiness(expected, { timeoutMs = 20_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      while (((await readiness())?.status ?? 0) !== expected) {
        if (Date.now() > deadline) throw new Error(`/ready never answered ${expected}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    stop,
    async [Symbol.asyncDispose]() {
      await stop("SIGKILL");
    },
  };
}

/** What {@linkcode runEntryToExit} saw. */
export interface EntryExit {
  /** The exit code. */
  readonly code: number;
  /** Everything written to stderr. */
  readonly stderr: string;
}

/**
 * Runs an entry file that is expected to exit by itself (a configuration
 * error, a one-shot script), with exactly the given permission flags and a
 * clean environment, and collects its exit code and stderr.
 *
 * @param options Entry file, permission flags, environment (no defaults added but `PATH`, `HOME`, `DENO_DIR`).
 * @returns The exit code and stderr.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it starts a service's entry file as a subprocess (seconds, and
 * // paths from the project's root); services/chat_test.ts and services/tts/entry_test.ts do.
 * import assert from "node:assert/strict";
 * import { runEntryToExit } from "@homelab/handler-base/testing";
 *
 * const { code, stderr } = await runEntryToExit({
 *   entry: "services/tts.ts",
 *   flags: ["-P=tts-module"],
 *   env: { TTS_MAX_CHARS: "lots" },
 * });
 * assert.deepEqual([code, stderr.includes("TTS_MAX_CHARS")], [78, true]);
 * ```
 */
export async function runEntryToExit(
  options: Omit<ServiceProcessOptions, "startTimeoutMs">,
): Promise<EntryExit> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...options.flags, options.entry],
    ...(options.cwd ? { cwd: options.cwd } : {}),
    clearEnv: true,
    env: { ...passedOn(), ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

function parseLogLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}
