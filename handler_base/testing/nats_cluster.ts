/**
 * Starts a real JetStream cluster of `nats-server` processes for tests: each
 * node on its own loopback client and route ports with its own store, routes
 * to the others, and kill and restart per node on the same ports and store,
 * so tests can take away the leader of a stream or the node a client is
 * connected to and bring it back.
 *
 * Requires `--allow-run=nats-server`, `--allow-read`, `--allow-write` (the
 * temporary directory) and `--allow-net=127.0.0.1`.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: three servers electing a meta leader take seconds;
 * // scripts/ensure_streams_test.ts and tests/system/ run it.
 * import { startNatsCluster } from "@homelab/handler-base/testing";
 *
 * await using cluster = await startNatsCluster({ size: 3 });
 * console.log(cluster.urls.length); // 3
 * ```
 *
 * @module
 */
import { signalAndWait, spawnNatsServer } from "./_nats_process.ts";
import { freePort } from "./ports.ts";

/** Options of {@linkcode startNatsCluster}. */
export interface NatsClusterOptions {
  /**
   * How many servers.
   *
   * @default 3
   */
  size?: number;
  /**
   * The path of the `nats-server` binary.
   *
   * @default "nats-server"
   */
  binary?: string;
  /**
   * How long to wait for every node to accept connections and for JetStream
   * to have a meta leader.
   *
   * @default 20000
   */
  startTimeoutMs?: number;
}

/** One server of a {@linkcode NatsCluster}. */
export interface NatsClusterNode {
  /** Its `server_name` (`n1`, `n2`, ...): what stream info names as leader and replicas. */
  readonly name: string;
  /** Its client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Its client port; it stays the same across restarts. */
  readonly port: number;
  /** Its monitoring endpoint, `http://127.0.0.1:<port>` (`/connz`, `/jsz`). */
  readonly monitorUrl: string;
  /** Whether its process runs. */
  readonly running: boolean;
  /** Kills it with a signal (default SIGKILL) and waits for the exit. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Starts it again (after a kill) on the same ports and store, and waits until it listens. */
  start(): Promise<void>;
}

/** A running cluster. */
export interface NatsCluster extends AsyncDisposable {
  /** The nodes, in the order of their names. */
  readonly nodes: readonly NatsClusterNode[];
  /** Every node's client URL (what a client is given to fail over). */
  readonly urls: readonly string[];
  /** The node of this `server_name`. */
  node(name: string): NatsClusterNode;
}

async function listening(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

type MetaCluster = { leader?: string; replicas?: { name: string; current: boolean }[] };

/**
 * Whether JetStream can place a stream on every node: each node names the same meta leader, and
 * the leader sees every other node as a current peer. (A leader alone is not enough: a stream with
 * one replica per node created before the peers catch up fails with "no suitable peers".)
 */
async function jetStreamReady(nodes: readonly { name: string; monitorPort: number }[]) {
  try {
    const metas = await Promise.all(nodes.map(async (node) => {
      const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`);
      return ((await response.json()) as { meta_cluster?: MetaCluster }).meta_cluster;
    }));
    const leader = metas[0]?.leader;
    if (!leader || metas.some((meta) => meta?.leader !== leader)) return false;
    const peers = metas[nodes.findIndex((node) => node.name === leader)]?.replicas ?? [];
    return peers.length === nodes.length - 1 && peers.every((peer) => peer.current);
  } catch {
    return false;
  }
}

/**
 * Starts `size` servers that route to each other as one JetStream cluster,
 * and waits until each accepts clients and JetStream has a meta leader that
 * sees every other node as a current peer.
 *
 * @param options Size, binary and start timeout.
 * @returns The running cluster; dispose it to kill every node and delete the stores.
 * @throws {Error} When `nats-server` is missing or the cluster does not form in time.
 *
 * @example Kill a node and bring it back
 * ```ts ignore
 * import { startNatsCluster } from "@homelab/handler-base/testing";
 *
 * await using cluster = await startNatsCluster();
 * await cluster.node("n2").kill();
 * await cluster.node("n2").start();
 * ```
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const { size = 3, binary = "nats-server", startTimeoutMs = 20_000 } = options;
  const dir = await Deno.makeTempDir({ prefix: "nats-cluster-" });
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    port: freePort(),
    routePort: freePort(),
    monitorPort: freePort(),
  }));
  const nodes = specs.map((spec) => {
    const routes = specs.filter((s) => s !== spec)
      .map((s) => `"nats-route://127.0.0.1:${s.routePort}"`).join(", ");
    const config = [
      `server_name: ${spec.name}`,
      `listen: "127.0.0.1:${spec.port}"`,
      `http: "127.0.0.1:${spec.monitorPort}"`,
      `jetstream { store_dir: "${dir}/${spec.name}" }`,
      `cluster { name: "test", listen: "127.0.0.1:${spec.routePort}", routes: [${routes}] }`,
    ].join("\n");
    const configPath = `${dir}/${spec.name}.conf`;
    let child: Deno.ChildProcess | undefined;
    let exit: Promise<Deno.CommandStatus> | undefined;
    const node = {
      name: spec.name,
      url: `nats://127.0.0.1:${spec.port}`,
      port: spec.port,
      monitorUrl: `http://127.0.0.1:${spec.monitorPort}`,
      monitorPort: spec.monitorPort,
      get running() {
        return child !== undefined;
      },
      async kill(signal: Deno.Signal = "SIGKILL") {
        if (!child || !exit) return;
        await signalAndWait(child, exit, signal);
        child = undefined;
        exit = undefined;
      },
      async start() {
        if (child) return;
        await Deno.writeTextFile(configPath, config);
        child = spawnNatsServer(binary, ["-c", configPath]);
        exit = child.status;
        let exited = false;
        exit.then(() => exited = true);
        const deadline = Date.now() + startTimeoutMs;
        while (!(await listening(spec.port))) {
          if (exited) throw new Error(`Cannot start nats-server ${spec.name}: it exited at start`);
          if (Date.now() > deadline) {
            throw new Error(`Cannot start nats-server ${spec.name}: not listening in time`);
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
    };
    return node;
  });
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    node(name) {
      const found = nodes.find((n) => n.name === name);
      if (!found) throw new Error(`Cannot find node ${name}: the cluster has ${nodes.length}`);
      return found;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(nodes.map((n) => n.kill()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    const deadline = Date.now() + startTimeoutMs;
    while (!(await jetStreamReady(nodes))) {
      if (Date.now() > deadline) {
        throw new Error("Cannot start the cluster: no JetStream leader with every peer current");
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await cluster[Symbol.asyncDispose]();
    throw error;
  }
  return cluster;
}
