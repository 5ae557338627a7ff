/**
 * Helpers of the client's tests: running the client in-process against a
 * server, and as a subprocess.
 *
 * @module
 */
import { memoryOutput } from "../output.ts";
import { runCli } from "../main.ts";

/** What one in-process run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  events: Record<string, unknown>[];
}

/** Runs the client in-process against `natsUrl`. */
export async function runIn(
  natsUrl: string,
  args: string[],
  options: { signal?: AbortSignal } = {},
): Promise<CliRun> {
  const out = memoryOutput();
  const code = await runCli(args, {
    output: out,
    env: { NATS_URL: natsUrl },
    connectTimeoutMs: 2000,
    ...options,
  });
  const json = args.includes("--json");
  return {
    code,
    stdout: out.stdoutText(),
    stderr: out.stderrText(),
    events: json ? out.events() : [],
  };
}

/** Runs the entry file as a subprocess with the `cli` permission set. */
export async function runSubprocess(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const root = new URL("../../../", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-P=cli", "--quiet", "handler_base/cli/main.ts", ...args],
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    clearEnv: false,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** A temporary directory, removed on dispose. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "cli-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}
