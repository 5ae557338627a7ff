/**
 * The whole system on one machine, for the system suite and the soak: a real
 * nats-server (one node, or a three-node JetStream cluster), the backends
 * (the local stand-ins of `scripts/local_backends/`, or the fakes of
 * `@homelab/handler-base/testing` where faults are injected), and every
 * service of `services/table.ts` as a subprocess with exactly its permission
 * set (`-P=<name>`), plus reading one temporary directory (the fake
 * Kubernetes API's kubeconfig).
 *
 * Each service gets its Deployment's runtime settings (`DENO_V8_FLAGS`,
 * `MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_`, from `runtimeEnv` of `scripts/manifests.ts`) unless
 * `runtimeEnv: false`.
 *
 * Table-driven: every service gets the union of every backend's variables
 * and reads those its permission set allows, so a new row of the table joins
 * without a change here.
 *
 * @example
 * ```ts ignore
 * import { startSystem } from "./harness.ts";
 *
 * await using system = await startSystem({ nats: "single", consumeMode: "core" });
 * console.log(system.services.size); // every row of services/table.ts
 * ```
 *
 * @module
 */
import { ensureStreams } from "../../handler_base/streams.ts";
import { connectNats, type NatsConnection } from "../../handler_base/natsutil.ts";
import {
  type FakeEmbeddings,
  type FakeKubeflow,
  type FakeKubernetes,
  type FakeLlm,
  type FakeMilvus,
  type FakeReranker,
  type FakeServer,
  type FakeWhisper,
  type FakeXtts,
  freePort,
  type NatsCluster,
  type NatsServer,
  type ServiceProcess,
  startFakeEmbeddings,
  startFakeKubeflow,
  startFakeKubernetes,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeWhisper,
  startFakeXtts,
  startNatsCluster,
  startNatsServer,
  startServiceProcess,
} from "../../handler_base/testing/mod.ts";
import { type LocalBackends, startLocalBackends } from "../../scripts/local_backends/mod.ts";
import { runtimeEnv } from "../../scripts/manifests.ts";
import { permissionFlag, type ServiceEntry, SERVICES } from "../../services/table.ts";

/** The repository root. */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** Options of {@linkcode startSystem}. */
export interface SystemOptions {
  /** One nats-server, or a three-node JetStream cluster (streams with three replicas). */
  nats: "single" | "cluster";
  /** How the services take their stream-backed inputs. */
  consumeMode: "core" | "jetstream";
  /** The local stand-ins, or the fakes (with failure injection). @default "local" */
  backends?: "local" | "fakes";
  /**
   * With the local stand-ins: the Whisper that stt-module and voice-assistant talk to. "local"
   * is the pocketsphinx stand-in (one transcription at a time, about 0.4 a second); "fake" is the
   * fake Whisper of the test kit, which answers at once (`"N bytes"`), so that hostile audio and
   * the paced types do not queue behind the stand-in. The fakes always use the fake Whisper.
   *
   * @default "local"
   */
  whisper?: "local" | "fake";
  /** More environment for every service. @default {} */
  env?: Record<string, string>;
  /**
   * Start each service with its Deployment's runtime settings (`DENO_V8_FLAGS` sized from its
   * memory limit, glibc's `MALLOC_*`; `runtimeEnv` of `scripts/manifests.ts`), as the cluster
   * runs it. False to compare with the runtime's defaults.
   *
   * @default true
   */
  runtimeEnv?: boolean;
}

/** The fakes, when `backends: "fakes"`. */
export interface Fakes {
  readonly llm: FakeLlm;
  readonly embeddings: FakeEmbeddings;
  readonly reranker: FakeReranker;
  readonly milvus: FakeMilvus;
  readonly xtts: FakeXtts;
  readonly whisper: FakeWhisper;
}

/** Resident memory and CPU time of one process. */
export interface ProcessSample {
  /** Resident set size in MiB (`VmRSS`). */
  readonly rssMiB: number;
  /** User plus system CPU time so far, in seconds. */
  readonly cpuSeconds: number;
}

/** A running system. */
export interface System extends AsyncDisposable {
  /** A client connection (to every node of a cluster). */
  readonly nc: NatsConnection;
  /** The single server, when `nats: "single"`. */
  readonly server?: NatsServer;
  /** The cluster, when `nats: "cluster"`. */
  readonly cluster?: NatsCluster;
  /** The monitoring endpoint of each node (`/connz`, `/varz`). */
  readonly monitorUrls: readonly string[];
  /** Every service by name, as currently running. */
  readonly services: Map<string, ServiceProcess>;
  /** The fakes, when started with them. */
  readonly fakes?: Fakes;
  /** The local stand-ins, when started with them. */
  readonly local?: LocalBackends;
  /** The fake Whisper beside the local stand-ins, when `whisper: "fake"`. */
  readonly whisper?: FakeWhisper;
  /** The fake Kubernetes API pipeline-bridge submits to. */
  readonly k8s: FakeKubernetes;
  /** The environment every service gets. */
  readonly env: Readonly<Record<string, string>>;
  /** Kills a service (SIGKILL unless told) and starts it again; resolves when it serves. */
  restart(name: string, signal?: Deno.Signal): Promise<void>;
  /** Memory and CPU of each running service. */
  sample(): Promise<Map<string, ProcessSample>>;
  /** Whether every service still runs (none crashed). */
  exited(): Promise<string[]>;
}

const CLOCK_TICKS = 100;

/**
 * Reads `VmRSS` and CPU time of a process from `/proc`.
 *
 * @param pid The process.
 * @returns The sample, or undefined when it is gone.
 */
export async function sampleProcess(pid: number): Promise<ProcessSample | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    // Fields after the command name (which may hold spaces) start at ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { rssMiB: rssKb / 1024, cpuSeconds: ticks / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

/**
 * The environment one service is started with: the system's, and its Deployment's runtime
 * settings unless told not to.
 *
 * @param entry The service.
 * @param env The system's environment.
 * @param runtime Whether to add the Deployment's runtime settings.
 * @returns The environment.
 */
export function serviceEnv(
  entry: ServiceEntry,
  env: Readonly<Record<string, string>>,
  runtime = true,
): Record<string, string> {
  return { ...env, ...(runtime ? runtimeEnv(entry.deploy) : {}) };
}

/** The environment that points the services at the fakes. */
function fakeEnv(fakes: Fakes): Record<string, string> {
  const milvus = new URL(fakes.milvus.url);
  return {
    VLLM_URL: fakes.llm.url,
    EMBEDDINGS_URL: fakes.embeddings.url,
    RERANKER_URL: fakes.reranker.url,
    MILVUS_HOST: milvus.hostname,
    MILVUS_PORT: milvus.port,
    TTS_URL: fakes.xtts.url,
    WHISPER_URL: fakes.whisper.url,
  };
}

/**
 * Starts the broker, the backends and every service of the table.
 *
 * @param options Broker, consume mode, backends.
 * @returns The running system; dispose it to stop everything.
 */
export async function startSystem(options: SystemOptions): Promise<System> {
  const stack = new AsyncDisposableStack();
  try {
    const dir = await Deno.makeTempDir({ prefix: "system-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
    let server: NatsServer | undefined;
    let monitorPort = 0;
    let cluster: NatsCluster | undefined;
    if (options.nats === "single") {
      monitorPort = freePort();
      server = stack.use(
        await startNatsServer({ jetstream: true, args: ["-m", String(monitorPort)] }),
      );
    } else {
      cluster = stack.use(await startNatsCluster({ size: 3 }));
    }
    const natsUrl = server ? server.url : cluster!.urls.join(",");
    const replicas = cluster ? 3 : 1;

    let fakes: Fakes | undefined;
    let local: LocalBackends | undefined;
    let whisper: FakeWhisper | undefined;
    let backendEnv: Record<string, string>;
    if (options.backends === "fakes") {
      fakes = {
        llm: startFakeLlm({ delayMs: 5 }),
        embeddings: startFakeEmbeddings(),
        reranker: startFakeReranker(),
        milvus: startFakeMilvus(),
        xtts: startFakeXtts(),
        whisper: startFakeWhisper(),
      };
      for (const fake of Object.values(fakes) as FakeServer[]) stack.use(fake);
      backendEnv = fakeEnv(fakes);
    } else {
      local = stack.use(
        await startLocalBackends({ llm: { firstTokenDelayMs: 20, tokenIntervalMs: 2 } }),
      );
      backendEnv = { ...local.env };
      if (options.whisper === "fake") {
        whisper = stack.use(startFakeWhisper());
        backendEnv.WHISPER_URL = whisper.url;
      }
    }
    const k8s = stack.use(startFakeKubernetes({
      namespace: "ai-ml",
      schedule: () => [{ phase: "Running", afterMs: 20 }, { phase: "Succeeded", afterMs: 100 }],
    }));
    const kfp: FakeKubeflow = stack.use(startFakeKubeflow({ token: "kfp-secret" }));
    const kubeconfig = `${dir}/kubeconfig`;
    await Deno.writeTextFile(kubeconfig, k8s.kubeconfig());

    const env: Record<string, string> = {
      NATS_URL: natsUrl,
      CONSUME_MODE: options.consumeMode,
      ENSURE_STREAMS: "false",
      JETSTREAM_REPLICAS: String(replicas),
      JETSTREAM_ACK_WAIT_MS: "5000",
      SHUTDOWN_GRACE_MS: "5000",
      LOG_LEVEL: "info",
      ...backendEnv,
      KUBECONFIG: kubeconfig,
      ARGO_NAMESPACE: "ai-ml",
      KUBEFLOW_HOST: kfp.url,
      KUBEFLOW_TOKEN: "kfp-secret",
      PIPELINE_POLL_MS: "50",
      PIPELINE_POLL_MAX_MS: "200",
      STT_AFFINITY: "none",
      ...options.env,
    };

    const nc = await connectNats({
      servers: server ? server.url : [...cluster!.urls],
      name: "system-client",
    });
    stack.defer(() => nc.close().catch(() => {}));
    if (options.consumeMode === "jetstream") await ensureStreams(nc, { replicas });

    const flags = (entry: ServiceEntry) => [permissionFlag(entry), `--allow-read=${dir}`];
    const start = (entry: ServiceEntry) =>
      startServiceProcess({
        entry: entry.entry,
        flags: flags(entry),
        cwd: ROOT,
        env: serviceEnv(entry, env, options.runtimeEnv ?? true),
        startTimeoutMs: 60_000,
      });
    const services = new Map<string, ServiceProcess>();
    stack.defer(async () => {
      await Promise.all([...services.values()].map((s) => s.stop("SIGKILL")));
    });
    const started = await Promise.allSettled(SERVICES.map(async (entry) => {
      services.set(entry.name, await start(entry));
    }));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;

    const moved = stack.move();
    return {
      nc,
      ...(server ? { server } : {}),
      ...(cluster ? { cluster } : {}),
      monitorUrls: server
        ? [`http://127.0.0.1:${monitorPort}`]
        : cluster!.nodes.map((node) => node.monitorUrl),
      services,
      ...(fakes ? { fakes } : {}),
      ...(local ? { local } : {}),
      ...(whisper ? { whisper } : {}),
      k8s,
      env,
      async restart(name, signal = "SIGKILL") {
        const entry = SERVICES.find((s) => s.name === name);
        if (!entry) throw new Error(`Cannot restart ${name}: not in services/table.ts`);
        await services.get(name)?.stop(signal);
        services.set(name, await start(entry));
      },
      async sample() {
        const samples = new Map<string, ProcessSample>();
        for (const [name, service] of services) {
          const sample = await sampleProcess(service.child.pid);
          if (sample) samples.set(name, sample);
        }
        return samples;
      },
      async exited() {
        const gone: string[] = [];
        for (const [name, service] of services) {
          const done = await Promise.race([
            service.status.then(() => true),
            Promise.resolve(false),
          ]);
          if (done) gone.push(name);
        }
        return gone;
      },
      [Symbol.asyncDispose]: () => moved.disposeAsync(),
    };
  } catch (error) {
    await stack.disposeAsync();
    throw error;
  }
}
