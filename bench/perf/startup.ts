/**
 * Spawn to `/ready` answering 200, for every service of `services/table.ts`
 * and for two baselines: a bare `deno run` script that serves `/ready` with
 * `Deno.serve` (what any Deno service pays before its own code), and the
 * floor of a NATS service on this runtime, nats.js connected and that
 * `/ready`, bundled and started as a binary (`nats_ready.ts`). Each service
 * is measured three ways: `deno run services/<x>.ts`; its bundle
 * (`scripts/bundle.ts`, the artifact the image compiles) started as its
 * compiled binary starts (`binaryFlags`: no config read, the permission set,
 * unstable features and V8 flags the binary embeds, and the image's
 * environment, `imageEnv`), with V8's code cache
 * warm; and the same with no code cache (`--no-code-cache`), which is a
 * binary's first start where it has none (a binary writes its cache under
 * `$TMPDIR` on its first start). Each run spawns it with exactly its
 * permission set and a fixed `HEALTH_PORT`, and polls `/ready` every
 * millisecond from the spawn.
 *
 * Run alone: `deno run -A bench/perf/startup.ts [--runs=9]` (`deno task bench` runs it too).
 *
 * @module
 */
import { freePort } from "../../handler_base/testing/ports.ts";
import { cpuMs } from "./proc.ts";
import {
  AS_SHIPPED_ENV,
  type Backends,
  buildBundles,
  imageEnv,
  NATS_READY_BUNDLE,
  natsReadyFlags,
  serviceRuns,
} from "./services.ts";
import { median, spread } from "./stats.ts";

/** One start: wall time from spawn to the first `/ready` 200, and the CPU the process used by then. */
export interface StartupSample {
  /** Milliseconds from spawn to the first `/ready` answering 200. */
  readonly ms: number;
  /**
   * Its user and system CPU time at that moment, in ms (10 ms ticks): steadier than the wall time
   * on a shared machine, where a start also waits for a core.
   */
  readonly cpuMs: number;
}

/** Spawns, polls `/ready` until it answers 200, measures, then kills the process. */
export async function spawnToReady(
  args: readonly string[],
  env: Record<string, string>,
  healthPort: number,
): Promise<StartupSample> {
  const url = `http://127.0.0.1:${healthPort}/ready`;
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args],
    env: { ...env, ...AS_SHIPPED_ENV, HEALTH_PORT: String(healthPort), LOG_LEVEL: "warn" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const deadline = start + 30_000;
    while (performance.now() < deadline) {
      const status = await fetch(url).then(async (r) => (await r.body?.cancel(), r.status))
        .catch(() => 0);
      if (status === 200) return { ms: performance.now() - start, cpuMs: cpuMs(child.pid) };
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    throw new Error(`Cannot start ${args.join(" ")}: /ready is not 200 after 30 s`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

/**
 * The name of the floor baseline's rows: nats.js connected and `/ready`, bundled and started
 * as a binary (`nats_ready.ts`).
 */
export const NATS_READY_NAME = "nats.js + /ready, bundle (floor)";

/** The baseline: a bare script answering `/ready` on `HEALTH_PORT`. */
export const BARE_READY = new URL("./bare_ready.ts", import.meta.url).pathname;

/** How a service was started. */
export type StartupKind = "deno run services/<x>.ts" | "bundle" | "bundle, no code cache";

/** One row of the start-up table. */
export interface StartupRow {
  /** The service, or the baseline. */
  readonly name: string;
  /** What ran: the entry file or the bundle, warm or without a code cache (empty for the baseline). */
  readonly kind: "" | StartupKind;
  /** Every run, in ms. */
  readonly runs: readonly number[];
  /** The CPU time each run used to `/ready`, in ms. */
  readonly cpu: readonly number[];
}

/**
 * Measures the baseline and every service, as its entry file and as its bundle (in
 * `bundleDir`) with and without V8's code cache, alternating them run by run.
 */
export async function measureStartup(
  backends: Backends,
  bundleDir: string,
  runs: number,
): Promise<StartupRow[]> {
  const targets: {
    name: string;
    kind: StartupRow["kind"];
    args: string[];
    env: Record<string, string>;
  }[] = [
    {
      name: "bare Deno.serve /ready (baseline)",
      kind: "",
      args: ["run", "-A", BARE_READY],
      env: {},
    },
    {
      name: NATS_READY_NAME,
      kind: "",
      args: ["run", ...natsReadyFlags(), `${bundleDir}/${NATS_READY_BUNDLE}`],
      env: { NATS_URL: backends.nats.url, ...imageEnv() },
    },
  ];
  for (const s of serviceRuns(backends, bundleDir)) {
    targets.push(
      {
        name: s.name,
        kind: "deno run services/<x>.ts",
        args: ["run", ...s.flags, s.entry],
        env: s.env,
      },
      {
        name: s.name,
        kind: "bundle",
        args: ["run", ...s.binaryFlags, s.bundle!],
        env: { ...s.env, ...imageEnv() },
      },
      {
        name: s.name,
        kind: "bundle, no code cache",
        args: ["run", "--no-code-cache", ...s.binaryFlags, s.bundle!],
        env: { ...s.env, ...imageEnv() },
      },
    );
  }
  const results = targets.map((t) => ({
    name: t.name,
    kind: t.kind,
    runs: [] as number[],
    cpu: [] as number[],
  }));
  for (const target of targets) await spawnToReady(target.args, target.env, freePort()); // warm cache
  for (let run = 0; run < runs; run++) {
    for (const [i, target] of targets.entries()) {
      const sample = await spawnToReady(target.args, target.env, freePort());
      results[i]!.runs.push(sample.ms);
      results[i]!.cpu.push(sample.cpuMs);
    }
  }
  return results;
}

if (import.meta.main) {
  const runs = Number(Deno.args.find((a) => a.startsWith("--runs="))?.slice(7) ?? 9);
  const { startBackends } = await import("./services.ts");
  await using backends = await startBackends();
  await using bundles = await buildBundles();
  for (const row of await measureStartup(backends, bundles.dir, runs)) {
    const what = row.kind ? ` (${row.kind})` : "";
    console.log(
      `${row.name}${what}: median ${median(row.runs).toFixed(0)} ms, ${spread(row.runs)}; ` +
        `CPU ${median(row.cpu).toFixed(0)} ms`,
    );
  }
}
