/**
 * Spawns a `nats-server` process, with one clear line when it is not installed. Shared by the
 * single-server and the cluster launchers; not part of the testing entry point.
 *
 * @module
 */

/**
 * Spawns nats-server.
 *
 * @param binary The executable.
 * @param args Its arguments.
 * @param detached Whether it gets its own process group.
 * @returns The process.
 * @throws {Error} With the install hint when the executable is missing.
 */
export function spawnNatsServer(
  binary: string,
  args: string[],
  detached = false,
): Deno.ChildProcess {
  try {
    return new Deno.Command(binary, { args, stdout: "null", stderr: "null", detached }).spawn();
  } catch (cause) {
    if (cause instanceof Deno.errors.NotFound) {
      throw new Error(
        "Cannot start nats-server: it is not installed (apt-get install -y nats-server)",
        { cause },
      );
    }
    throw cause;
  }
}

/**
 * Sends `signal` to a nats-server that may have exited already, and waits for its end.
 *
 * @param child The process.
 * @param exit Its status promise (taken once at spawn).
 * @param signal The signal.
 */
export async function signalAndWait(
  child: Deno.ChildProcess,
  exit: Promise<unknown>,
  signal: Deno.Signal,
): Promise<void> {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
  await exit;
}
