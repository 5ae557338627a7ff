/**
 * Resident memory (`VmRSS`) of every service of `services/table.ts` once
 * `/ready` answers 200 and a second has passed, beside the baselines of the
 * same run: a bare `deno run` script (`bare_ready.ts`), nats.js alone,
 * connected and subscribed (`raw_nats.ts`), and the floor of a NATS service,
 * nats.js and a `/ready`, bundled and started as a binary (`nats_ready.ts`).
 * Each service runs with
 * exactly its permission set, three ways: `deno run services/<x>.ts` (core
 * mode, telemetry off, no V8 flags); its bundle (`scripts/bundle.ts`, the
 * artifact the image compiles) started as its compiled binary starts
 * (`binaryFlags`: no config read, the embedded V8 flags; the image's
 * environment, `imageEnv`; core mode, telemetry off); and that bundle as its
 * Deployment runs it (`CONSUME_MODE`, `OTEL_DENO=true`, and `runtimeEnv`'s
 * `DENO_V8_FLAGS` and glibc settings from `k8s/<name>.yaml`). Then
 * tts-module's bundle under load: `--load-seconds` of full syntheses against
 * the fake XTTS, 16 at a time, and its `VmRSS` after.
 *
 * Run alone: `deno run -A bench/perf/memory.ts [--load-seconds=60]` (`deno task bench` runs it).
 *
 * @module
 */
import { TTSFullResponseSchema, TTSRequestSchema } from "../../handler_base/messages.ts";
import { connectNats, request } from "../../handler_base/natsutil.ts";
import { freePort } from "../../handler_base/testing/ports.ts";
import { startOtlpReceiver } from "../../handler_base/testing/otlp_receiver.ts";
import { rssMiB, rssSplitMiB } from "./proc.ts";
import {
  AS_SHIPPED_ENV,
  type Backends,
  buildBundles,
  imageEnv,
  NATS_READY_BUNDLE,
  natsReadyFlags,
  type ServiceRun,
  serviceRuns,
} from "./services.ts";
import { BARE_READY, NATS_READY_NAME } from "./startup.ts";
import { runtimeEnv } from "../../scripts/manifests.ts";
import { SERVICES } from "../../services/table.ts";

const RAW_NATS = new URL("./raw_nats.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

/** How a service was run: its entry file or its bundle, with `deno run`'s or its Deployment's environment. */
export type MemoryKind = "deno run services/<x>.ts" | "bundle" | "bundle, Deployment env";

/** One process measured. */
export interface MemoryRow {
  readonly name: string;
  readonly env: "baseline" | MemoryKind;
  readonly rssMiB: number;
  /** Of which anonymous pages (heaps, malloc), in MiB. */
  readonly anonMiB: number;
  /** Of which file pages (the deno executable's mapped code), in MiB. */
  readonly fileMiB: number;
  /** V8 heap used, from `/ready` `details.memory` (services only). */
  readonly heapUsedMiB?: number;
}

/** A running process and its health port. */
interface Running {
  readonly child: Deno.ChildProcess;
  readonly port: number;
}

async function startReady(args: string[], env: Record<string, string>): Promise<Running> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: { ...env, ...AS_SHIPPED_ENV, HEALTH_PORT: String(port), LOG_LEVEL: "warn" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 3000; i++) {
    const status = await fetch(`http://127.0.0.1:${port}/ready`)
      .then(async (r) => (await r.body?.cancel(), r.status)).catch(() => 0);
    if (status === 200) return { child, port };
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill("SIGKILL");
  throw new Error(`Cannot start ${args.join(" ")}: /ready is not 200 after 30 s`);
}

async function heapUsed(port: number): Promise<number | undefined> {
  const body = await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.json()).catch(
    () => ({}),
  );
  return body?.details?.memory?.heap_used_mib;
}

async function stop(running: Running): Promise<void> {
  running.child.kill("SIGKILL");
  await running.child.status;
}

function split(pid: number): { anonMiB: number; fileMiB: number } {
  const { anon, file } = rssSplitMiB(pid);
  return { anonMiB: anon, fileMiB: file };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 1000));

/** The environment a service's Deployment sets (from its generated manifest). */
export async function deploymentEnv(name: string): Promise<Record<string, string>> {
  const yaml = await Deno.readTextFile(`${ROOT}k8s/${name}.yaml`);
  const env: Record<string, string> = {};
  const deploy = SERVICES.find((s) => s.name === name)?.deploy;
  if (!deploy) throw new Error(`Cannot read the Deployment of "${name}": not in services/table.ts`);
  for (const key of ["CONSUME_MODE", "OTEL_DENO", ...Object.keys(runtimeEnv(deploy))]) {
    const value = yaml.match(new RegExp(`name: "?${key}"?\\s+value: "?([^"\\n]+)"?`))?.[1];
    if (value) env[key] = value;
  }
  return env;
}

/** Measures the baselines and every service three ways (its bundles are in `bundleDir`). */
export async function measureIdle(backends: Backends, bundleDir: string): Promise<MemoryRow[]> {
  const rows: MemoryRow[] = [];
  const bare = await startReady(["run", "-A", BARE_READY], {});
  await settle();
  rows.push({
    name: "bare Deno.serve script (baseline)",
    env: "baseline",
    rssMiB: rssMiB(bare.child.pid),
    ...split(bare.child.pid),
  });
  await stop(bare);
  const raw = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RAW_NATS, backends.nats.url],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = raw.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (!((await reader.read()).value ?? "").includes("READY"));
  await settle();
  rows.push({
    name: "raw nats.js connected (baseline)",
    env: "baseline",
    rssMiB: rssMiB(raw.pid),
    ...split(raw.pid),
  });
  raw.kill("SIGKILL");
  await raw.status;
  const floorArgs = ["run", ...natsReadyFlags(), `${bundleDir}/${NATS_READY_BUNDLE}`];
  const floorEnv = { NATS_URL: backends.nats.url, ...imageEnv() };
  await stop(await startReady(floorArgs, floorEnv)); // its first run writes its code cache
  const floor = await startReady(floorArgs, floorEnv);
  await settle();
  rows.push({
    name: NATS_READY_NAME,
    env: "baseline",
    rssMiB: rssMiB(floor.child.pid),
    ...split(floor.child.pid),
  });
  await stop(floor);
  await using receiver = startOtlpReceiver();
  const kinds: MemoryKind[] = ["deno run services/<x>.ts", "bundle", "bundle, Deployment env"];
  for (const service of serviceRuns(backends, bundleDir)) {
    // One run of each file first: a bundle just written has no V8 code cache yet, and its first
    // run compiles it from source (7 to 10 MiB more for a core service, 80 for pipeline-bridge).
    await stop(await startReady(["run", ...service.flags, service.entry], service.env));
    await stop(await startReady(["run", ...service.binaryFlags, service.bundle!], service.env));
    for (const kind of kinds) {
      // A Deployment's variables override the image's, as in a pod.
      const env = kind === "deno run services/<x>.ts"
        ? service.env
        : kind === "bundle"
        ? { ...service.env, ...imageEnv() }
        : {
          ...service.env,
          ...imageEnv(),
          ...(await deploymentEnv(service.name)),
          ...receiver.exporterEnv(service.name),
        };
      const args = kind === "deno run services/<x>.ts"
        ? ["run", ...service.flags, service.entry]
        : ["run", ...service.binaryFlags, service.bundle!];
      const running = await startReady(args, env);
      await settle();
      rows.push({
        name: service.name,
        env: kind,
        rssMiB: rssMiB(running.child.pid),
        ...split(running.child.pid),
        heapUsedMiB: await heapUsed(running.port),
      });
      await stop(running);
    }
  }
  return rows;
}

/**
 * tts-module's bundle (in `bundleDir`) in its Deployment environment under `seconds` of full
 * syntheses: VmRSS before and after.
 */
export async function measureUnderLoad(
  backends: Backends,
  bundleDir: string,
  seconds: number,
): Promise<{ before: number; after: number; requests: number }> {
  const tts = serviceRuns(backends, bundleDir).find((s: ServiceRun) => s.name === "tts-module")!;
  const env = {
    ...tts.env,
    ...imageEnv(),
    ...(await deploymentEnv("tts-module")),
    OTEL_DENO: "",
  };
  const running = await startReady(["run", ...tts.binaryFlags, tts.bundle!], {
    ...env,
    CONSUME_MODE: "core",
  });
  const nc = await connectNats({ servers: backends.nats.url, name: "bench-memory-load" });
  try {
    await settle();
    const before = rssMiB(running.child.pid);
    const end = performance.now() + seconds * 1000;
    let requests = 0;
    await Promise.all(Array.from({ length: 16 }, async (_, w) => {
      while (performance.now() < end) {
        await request(
          nc,
          `ai.voice.tts.request.m${w}`,
          TTSRequestSchema,
          { text: `Sentence number ${requests} of the memory benchmark.` },
          TTSFullResponseSchema,
          { timeout: 10_000 },
        );
        requests++;
      }
    }));
    await settle();
    return { before, after: rssMiB(running.child.pid), requests };
  } finally {
    await nc.close();
    await stop(running);
  }
}

if (import.meta.main) {
  const seconds = Number(Deno.args.find((a) => a.startsWith("--load-seconds="))?.slice(15) ?? 10);
  const { startBackends } = await import("./services.ts");
  await using backends = await startBackends();
  await using bundles = await buildBundles();
  for (const row of await measureIdle(backends, bundles.dir)) console.log(JSON.stringify(row));
  console.log(JSON.stringify(await measureUnderLoad(backends, bundles.dir, seconds)));
}
