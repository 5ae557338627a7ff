/**
 * Starts the benchmark's Deno subprocesses (responders, load processes) and waits until each
 * says it is ready.
 *
 * @module
 */
/**
 * Starts a Deno subprocess (a responder or a load process) and waits until it prints `READY`.
 *
 * @param args The arguments of `deno`.
 * @param env More environment.
 * @returns The process, its stdout reader and its stdin writer.
 */
export async function spawnReady(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("READY")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`Cannot start ${args.join(" ")}: it exited before READY`);
    text += value;
  }
  return { child, lines, stdin: child.stdin.getWriter() };
}
