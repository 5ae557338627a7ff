/**
 * Starts a real `nats-server` for tests: a free port on loopback, JetStream
 * with a temporary file store, and stop, kill and restart on the same port
 * and store, so tests can take the broker away and bring it back.
 *
 * Requires `--allow-run=nats-server`, `--allow-read`, `--allow-write` (the
 * temporary directory) and `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: true });
 * assert.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/); // such as nats://127.0.0.1:41234
 * ```
 *
 * @module
 */
import { signalAndWait, spawnNatsServer } from "./_nats_process.ts";

/** Options of {@linkcode startNatsServer}. */
export interface NatsServerOptions {
  /**
   * Enable JetStream with a file store in a temporary directory.
   *
   * @default true
   */
  jetstream?: boolean;
  /**
   * The client port.
   *
   * @default 0 (a free port chosen by the server)
   */
  port?: number;
  /**
   * The path of the `nats-server` binary.
   *
   * @default "nats-server" (looked up on PATH)
   */
  binary?: string;
  /**
   * Extra command-line arguments (such as `["--user", "u", "--pass", "p"]`).
   *
   * @default []
   */
  args?: string[];
  /**
   * How long to wait for the server to accept connections.
   *
   * @default 10000
   */
  startTimeoutMs?: number;
  /**
   * Runs the server in a process group of its own, so a Ctrl-C of the
   * terminal reaches only the parent, which then stops the server after the
   * clients it started (a local stack).
   *
   * @default false
   */
  processGroup?: boolean;
}

/** A running test server. */
export interface NatsServer extends AsyncDisposable {
  /** The process id of the running server, or undefined when it is stopped. */
  readonly pid: number | undefined;
  /** The client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** The client port; it stays the same across restarts. */
  readonly port: number;
  /** The JetStream store directory; it survives restarts. */
  readonly storeDir: string;
  /** Whether the process is running. */
  readonly running: boolean;
  /** Stops the server gracefully (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server with a signal (default SIGKILL) and waits for it to exit. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port and store. */
  restart(): Promise<void>;
}

async function waitForPort(
  portsFile: () => Promise<number | undefined>,
  child: Deno.ChildProcess,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  child.status.then(() => exited = true);
  while (Date.now() < deadline) {
    if (exited) throw new Error("Cannot start nats-server: the process exited at start");
    const port = await portsFile();
    if (port) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
        return port;
      } catch {
        // Not listening yet.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`Cannot start nats-server: not ready within ${timeoutMs} ms`);
}

/**
 * Starts `nats-server` on loopback and waits until it accepts connections.
 *
 * @param options JetStream, port, binary and extra arguments.
 * @returns The running server; dispose it to stop it and delete its store.
 * @throws {Error} When `nats-server` is not installed or does not start.
 *
 * @example Kill and restart the broker in a test
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats } from "@homelab/handler-base/natsutil";
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const url = server.url;
 * await server.kill();
 * await server.restart();
 * assert.equal(server.url, url); // the same port, so clients reconnect
 * const nc = await connectNats({ servers: server.url, name: "after-restart" });
 * await nc.close();
 * ```
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const {
    jetstream = true,
    binary = "nats-server",
    args = [],
    startTimeoutMs = 10_000,
  } = options;
  const dir = await Deno.makeTempDir({ prefix: "nats-test-" });
  const storeDir = `${dir}/store`;
  let port = options.port ?? 0;
  let child: Deno.ChildProcess | undefined;
  let exit: Promise<Deno.CommandStatus> | undefined;

  async function launch(): Promise<void> {
    const portsDir = await Deno.makeTempDir({ dir, prefix: "ports-" });
    const argv = [
      "-a",
      "127.0.0.1",
      "-p",
      port ? String(port) : "-1",
      "--ports_file_dir",
      portsDir,
      ...(jetstream ? ["-js", "-sd", storeDir] : []),
      ...args,
    ];
    child = spawnNatsServer(binary, argv, options.processGroup ?? false);
    exit = child.status;
    const readPortsFile = async () => {
      for await (const entry of Deno.readDir(portsDir)) {
        if (!entry.name.endsWith(".ports")) continue;
        try {
          const info = JSON.parse(await Deno.readTextFile(`${portsDir}/${entry.name}`));
          const url = new URL(String(info.nats?.[0]));
          return Number(url.port);
        } catch {
          return undefined; // Written but not complete yet.
        }
      }
      return undefined;
    };
    try {
      port = await waitForPort(readPortsFile, child, startTimeoutMs);
    } catch (error) {
      await terminate("SIGKILL");
      throw error;
    }
  }

  async function terminate(signal: Deno.Signal): Promise<void> {
    if (!child || !exit) return;
    await signalAndWait(child, exit, signal);
    child = undefined;
    exit = undefined;
  }

  await launch();
  const server: NatsServer = {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    storeDir,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    stop: () => terminate("SIGTERM"),
    kill: (signal = "SIGKILL") => terminate(signal),
    async restart() {
      await terminate("SIGTERM");
      await launch();
    },
    async [Symbol.asyncDispose]() {
      await terminate("SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return server;
}
