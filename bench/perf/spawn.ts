/**
 * Starts the benchmark's subprocesses (responders, load processes) and waits until each
 * says it is ready.
 *
 * @module
 */
/**
 * Starts a subprocess (a responder or a load process) and waits until it prints `READY`.
 *
 * @param args The arguments of `command`.
 * @param env More environment.
 * @param command The program: `deno` unless given (the C load client of `throughput.ts`).
 * @returns The process, its stdout reader, its stdin writer and the `READY` line (what a process
 *   says of itself after the word).
 */
export async function spawnReady(
  args: string[],
  env: Record<string, string> = {},
  command: string = Deno.execPath(),
) {
  const child = new Deno.Command(command, {
    args,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("READY") || !text.slice(text.indexOf("READY")).includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`Cannot start ${args.join(" ")}: it exited before READY`);
    text += value;
  }
  const ready = text.slice(text.indexOf("READY")).split("\n")[0]!;
  return { child, lines, stdin: child.stdin.getWriter(), ready };
}

/** What a load process reports when its run is over. */
export interface LoadResult {
  /** Requests answered. */
  requests: number;
  /** The load process's own CPU time, in milliseconds. */
  cpuMs: number;
}

/**
 * Starts every load process at once (`go` on stdin) and reads the result each prints.
 *
 * @param procs Load processes from {@linkcode spawnReady}.
 * @returns Their results, in order.
 */
export async function runLoad(
  procs: readonly Awaited<ReturnType<typeof spawnReady>>[],
): Promise<LoadResult[]> {
  await Promise.all(procs.map((p) => p.stdin.write(new TextEncoder().encode("go\n"))));
  return await Promise.all(procs.map(async (p) => {
    let text = "";
    for (;;) {
      const { value, done } = await p.lines.read();
      if (value) text += value;
      if (text.includes("}") || done) break;
    }
    await p.stdin.close().catch(() => {});
    await p.child.status;
    return JSON.parse(text.slice(text.indexOf("{"), text.indexOf("}") + 1)) as LoadResult;
  }));
}
