/**
 * The whole platform on one machine, in one command: `nats-server` with
 * JetStream (a temporary store) and the platform's streams, the local
 * stand-ins for the GPU backends (`scripts/local_backends/`: real offline
 * speech through flite and pocketsphinx, an LLM answering from the project's
 * own docs, embeddings, Milvus, a reranker), stand-ins of the Kubernetes
 * (Argo Workflows) and Kubeflow Pipelines APIs whose runs advance through
 * their phases over a few seconds, and every service of `services/table.ts`,
 * each run with exactly its permission set (`-P=<name>`, plus only what the
 * local addresses and temporary files need: `scripts/stack/flags.ts`).
 *
 * It prints one log stream (each line prefixed with its source, JSON logs
 * made readable), then a readiness summary: where NATS listens, each
 * service's health port, each backend and whether it is real speech or a
 * named stand-in. Ctrl-C (or SIGTERM) stops the services, the stand-ins and
 * NATS, in that order; every child runs in a process group of its own, so the
 * stack signals each exactly once and nothing outlives it.
 *
 * ```sh
 * deno task stack                  # NATS on 4222 when it is free, else a free port
 * deno task stack --nats-port=0    # any free port
 * deno task stack --smoke          # start, exercise every service once, stop (exit 1 on a failure)
 * ```
 *
 * Options: `--nats-port=<port>` (default 4222 when free, else any; 0: any),
 * `--smoke`, `--log-level=<debug|info|warn|error>` (default info), `--help`.
 * Exit codes: 0 stopped cleanly (or the smoke test passed), 1 a failure
 * (nats-server missing, a service that does not start or exits badly, a
 * failed exercise), 2 bad arguments.
 *
 * Needs `--allow-all` (it runs nats-server, flite, pocketsphinx and the
 * services, and writes temporary files): `deno task stack`.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it starts every service for as long as it runs.
 * // deno task stack --smoke
 * ```
 *
 * @module
 */
import { configVarNames } from "@homelab/handler-base/config";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import { parseLogLevel } from "@homelab/handler-base/log";
import { connectNats } from "@homelab/handler-base/natsutil";
import {
  type NatsServer,
  type ServiceProcess,
  startFakeKubeflow,
  startFakeKubernetes,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";
import { createTtsClient } from "../handler_base/clients/tts.ts";
import { SERVICES } from "../services/table.ts";
import { formatReadiness, type LocalBackends, startLocalBackends } from "./local_backends/mod.ts";
import { findProgram } from "./local_backends/_process.ts";
import { type PermissionSet, serviceFlags } from "./stack/flags.ts";
import { createLogStream } from "./stack/logs.ts";
import { runSmoke, SMOKE_SENTENCE } from "./stack/smoke.ts";

const USAGE = `Usage: deno task stack [--nats-port=<port>] [--smoke] [--log-level=<level>]

  --nats-port=<port>  NATS client port (default 4222 when free, else a free one; 0: a free one)
  --smoke             start, exercise every service once through the CLI's commands, stop
  --log-level=<level> the services' LOG_LEVEL: debug, info, warn or error (default info)
`;

/** The runs on the Kubernetes and Kubeflow stand-ins: pending at once, running after 1 s, done after 3 s. */
const ARGO_PHASES = [
  { phase: "Pending", afterMs: 0 },
  { phase: "Running", afterMs: 1000 },
  { phase: "Succeeded", afterMs: 3000 },
] as const;
const KFP_STATES = [
  { state: "RUNNING", afterMs: 1000 },
  { state: "SUCCEEDED", afterMs: 3000 },
] as const;

/** How long a service may take to serve (the first run compiles it). */
const START_TIMEOUT_MS = 180_000;
/** The services' SHUTDOWN_GRACE_MS in the stack, and how much longer the stack waits before SIGKILL. */
const GRACE_MS = 5000;
const KILL_AFTER_MS = GRACE_MS + 5000;

const root = new URL("../", import.meta.url).pathname;

interface Options {
  natsPort: number | undefined;
  smoke: boolean;
  logLevel: string;
}

function parseArgs(args: readonly string[]): Options | string {
  const options: Options = { natsPort: undefined, smoke: false, logLevel: "info" };
  for (const arg of args) {
    const [name, value] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === "--smoke" && value === undefined) options.smoke = true;
    else if (
      name === "--nats-port" && value !== undefined && /^\d+$/.test(value) && Number(value) < 65536
    ) {
      options.natsPort = Number(value);
    } else if (name === "--log-level" && value !== undefined && parseLogLevel(value)) {
      options.logLevel = parseLogLevel(value)!;
    } else return `Cannot parse the arguments: ${arg} is not an option of the stack`;
  }
  return options;
}

function portIsFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** One running service of the table. */
interface RunningService {
  readonly name: string;
  readonly process: ServiceProcess;
}

async function main(): Promise<number> {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const options = parseArgs(Deno.args);
  if (typeof options === "string") {
    console.error(`${options}\n\n${USAGE}`);
    return 2;
  }
  if (!findProgram("nats-server")) {
    console.error(
      "Cannot start the stack: nats-server is not installed (apt-get install nats-server)",
    );
    return 1;
  }

  const width = Math.max(12, ...SERVICES.map((s) => s.name.length));
  const logs = createLogStream({ width });
  const say = (text: string) => logs.line("stack", text);

  // Ctrl-C or SIGTERM, at any time: startup stops at its next step, then everything is stopped.
  const stopping = new AbortController();
  const onSignal = () => {
    if (!stopping.signal.aborted) {
      say("stopping: the services, then the stand-ins, then NATS");
    }
    stopping.abort();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, onSignal);

  const dir = await Deno.makeTempDir({ prefix: "homelab-stack-" });
  const permissions: Record<string, PermissionSet> =
    JSON.parse(await Deno.readTextFile(`${root}deno.json`)).permissions ?? {};
  let nats: NatsServer | undefined;
  let backends: LocalBackends | undefined;
  const fakes: AsyncDisposable[] = [];
  const running: RunningService[] = [];
  const starting: Promise<unknown>[] = [];
  let failed = false;

  try {
    // NATS: in a process group of its own, so a Ctrl-C reaches only the stack, which stops it last.
    const natsPort = options.natsPort ?? (options.smoke || !portIsFree(4222) ? 0 : 4222);
    nats = await startNatsServer({ jetstream: true, port: natsPort, processGroup: true });
    say(`nats-server ${nats.url} (pid ${nats.pid}, JetStream store ${nats.storeDir})`);
    const nc = await connectNats({ servers: nats.url, name: "homelab-stack" });
    try {
      await ensureStreams(nc);
      say("streams created");

      backends = await startLocalBackends({ logger: (name) => logs.logger(name) });
      for (const readiness of backends.readiness) {
        // One line per backend that lacks something, saying what to install and what answers now.
        if (readiness.hint) {
          say(
            `${readiness.backend}: missing (${readiness.hint}), answering with ${readiness.standIn}`,
          );
        }
      }
      const k8s = startFakeKubernetes({ namespace: "ai-ml", schedule: () => ARGO_PHASES });
      fakes.push(k8s);
      const kfp = startFakeKubeflow({ schedule: () => KFP_STATES });
      fakes.push(kfp);
      const kubeconfig = `${dir}/kubeconfig`;
      await Deno.writeTextFile(kubeconfig, k8s.kubeconfig());

      const env: Record<string, string> = {
        NATS_URL: nats.url,
        LOG_LEVEL: options.logLevel,
        SHUTDOWN_GRACE_MS: String(GRACE_MS),
        ...backends.env,
        KUBECONFIG: kubeconfig,
        ARGO_NAMESPACE: k8s.namespace,
        KUBEFLOW_HOST: kfp.url,
        PIPELINE_POLL_MS: "500",
        PIPELINE_POLL_MAX_MS: "2000",
      };

      // Every service of the table, at once, each with only the variables it reads.
      for (const entry of SERVICES) {
        const start = (async () => {
          const names = new Set(configVarNames((await entry.load()).spec));
          const own = Object.fromEntries(Object.entries(env).filter(([name]) => names.has(name)));
          const flags = serviceFlags({
            name: entry.name,
            set: permissions[entry.name] ?? {},
            env: own,
            // The Kubernetes API is named in the kubeconfig file, not in a variable.
            reaches: names.has("KUBECONFIG") ? [k8s.url] : [],
          });
          say(`${entry.name}: deno run ${flags.join(" ")} ${entry.entry}`);
          const process = await startServiceProcess({
            entry: entry.entry,
            flags,
            cwd: root,
            env: { ...own, HEALTH_PORT: "0", LOG_LEVEL: options.logLevel },
            startTimeoutMs: START_TIMEOUT_MS,
            onLine: (line) => {
              // Deno's notice that permission sets are experimental, once per service: noise here.
              if (!line.includes("Permissions in the config file is an experimental")) {
                logs.line(entry.name, line);
              }
            },
            maxLines: 200,
            processGroup: true,
          });
          running.push({ name: entry.name, process });
          process.status.then((status) => {
            if (!stopping.signal.aborted) {
              failed = true;
              say(`${entry.name} exited by itself (code ${status.code}): stopping the stack`);
              stopping.abort();
            }
          });
        })();
        starting.push(start);
      }
      const started = await Promise.race([
        Promise.allSettled(starting),
        new Promise<"stopped">((resolve) =>
          stopping.signal.addEventListener("abort", () => resolve("stopped"), { once: true })
        ),
      ]);
      if (started === "stopped") return failed ? 1 : 0;
      const failures = started.filter((s) => s.status === "rejected");
      if (failures.length > 0) {
        for (const failure of failures) say(`Cannot start a service: ${firstLine(failure.reason)}`);
        failed = true;
        return 1;
      }
      for (const service of running) {
        await service.process.waitForReadiness(200, { timeoutMs: 60_000 }).catch((error) => {
          throw new Error(`Cannot start ${service.name}: ${message(error)}`);
        });
      }

      printSummary(say, nats, backends, running, { k8s: k8s.url, kfp: kfp.url });
      if (options.smoke) {
        const speechFile = `${dir}/speech.wav`;
        const synthesized = await createTtsClient({ baseUrl: backends.urls.tts, timeoutMs: 30_000 })
          .synthesize(SMOKE_SENTENCE);
        await Deno.writeFile(speechFile, synthesized.audio);
        const realSpeech = backends.readiness.every((r) =>
          r.backend !== "tts" && r.backend !== "stt" || r.ok
        );
        const results = await runSmoke({
          nc,
          names: SERVICES.map((s) => s.name),
          speechFile,
          realSpeech,
          dir,
        });
        for (const result of results) {
          say(`smoke ${result.service}: ${result.ok ? "ok" : "FAILED"}: ${result.detail}`);
        }
        if (results.some((r) => !r.ok)) failed = true;
        say(`smoke: ${results.filter((r) => r.ok).length} of ${results.length} services ok`);
      } else {
        await new Promise<void>((resolve) => {
          if (stopping.signal.aborted) resolve();
          stopping.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      }
    } finally {
      await nc.close().catch(() => {});
    }
  } catch (error) {
    failed = true;
    say(firstLine(error));
  } finally {
    stopping.abort();
    // Services still starting are waited for (bounded by their start timeout), then stopped.
    await Promise.allSettled(starting);
    const codes = await Promise.all(running.map((s) => stopService(s, say)));
    if (codes.some((ok) => !ok)) failed = true;
    for (const fake of fakes) await fake[Symbol.asyncDispose]();
    await backends?.close();
    await nats?.[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.removeSignalListener(signal, onSignal);
    }
    say(failed ? "stopped, with failures" : "stopped");
  }
  return failed ? 1 : 0;
}

function firstLine(error: unknown): string {
  return message(error).split("\n")[0] ?? "";
}

/** SIGTERM to the service's process group; SIGKILL when it outlasts its grace. True when it exited 0. */
async function stopService(service: RunningService, say: (text: string) => void): Promise<boolean> {
  const timer = setTimeout(() => {
    say(`${service.name} outlasted its grace: SIGKILL`);
    service.process.stop("SIGKILL");
  }, KILL_AFTER_MS);
  try {
    const status = await service.process.stop("SIGTERM");
    if (status.code !== 0) {
      say(
        `${service.name} exited with ${status.code}${status.signal ? ` (${status.signal})` : ""}`,
      );
    }
    return status.code === 0;
  } finally {
    clearTimeout(timer);
  }
}

function printSummary(
  say: (text: string) => void,
  nats: NatsServer,
  backends: LocalBackends,
  running: readonly RunningService[],
  engines: { k8s: string; kfp: string },
): void {
  const natsFlag = nats.port === 4222 ? "" : ` --nats ${nats.url}`;
  const lines = [
    "",
    "Stack summary",
    `  nats       ${nats.url}  (JetStream, pid ${nats.pid})`,
    "  services (health: GET /health, /ready):",
    ...SERVICES.map((entry) => {
      const service = running.find((s) => s.name === entry.name)!;
      return `    ${
        entry.name.padEnd(16)
      } http://127.0.0.1:${service.process.healthPort}/ready  (pid ${service.process.child.pid})`;
    }),
    "  backends:",
    ...backends.readiness.map((r) => `    ${formatReadiness(r)}`),
    `    ${"kubernetes".padEnd(10)} ${
      engines.k8s.padEnd(22)
    } stand-in: Argo Workflows API, runs succeed after 3 s`,
    `    ${"kubeflow".padEnd(10)} ${
      engines.kfp.padEnd(22)
    } stand-in: Kubeflow Pipelines runs API, runs succeed after 3 s`,
    "  try:",
    `    deno task cli chat "How do I run the stack?" --rag --stream${natsFlag}`,
    `    deno task cli services${natsFlag}`,
    "",
    `Stack ready: NATS ${nats.url}, ${running.length} services. Ctrl-C stops everything.`,
  ];
  for (const line of lines) say(line);
}

if (import.meta.main) Deno.exit(await main());
