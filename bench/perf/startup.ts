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
 * millisecond from the spawn. A service logs at "info", as in its Deployment,
 * and its "Started" line gives where its start went (`phases_ms`), which the
 * table shows for the bundles.
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
  /**
   * Where a service's start went, from its "Started" log line (`phases_ms`, then `startup_ms` as
   * `total`); empty for the baselines, which log nothing.
   */
  readonly phases: Readonly<Record<string, number>>;
}

/** Spawns, polls `/ready` until it answers 200, measures, then kills the process. */
export async function spawnToReady(
  args: readonly string[],
  env: Record<string, string>,
  healthPort: number,
): Promise<StartupSample> {
  const url = `http://127.0.0.1:${healthPort}/ready`;
  const start = performance.now();
  // At "info", as the Deployments log: a service writes a few lines at start, "Started" among them.
  const child = new Deno.Command(Deno.execPath(), {
    args: [...args],
    env: { ...env, ...AS_SHIPPED_ENV, HEALTH_PORT: String(healthPort), LOG_LEVEL: "info" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let sample: Omit<StartupSample, "phases"> | undefined;
  try {
    const deadline = start + 30_000;
    while (performance.now() < deadline) {
      const status = await fetch(url).then(async (r) => (await r.body?.cancel(), r.status))
        .catch(() => 0);
      if (status === 200) {
        sample = { ms: performance.now() - start, cpuMs: cpuMs(child.pid) };
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  if (!sample) throw new Error(`Cannot start ${args.join(" ")}: /ready is not 200 after 30 s`);
  return { ...sample, phases: startedPhases(await stderr) };
}

/**
 * The phases of the "Started" line in a service's log, and `startup_ms` as `total`; empty when
 * there is none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startedPhases } from "./startup.ts";
 *
 * const log = '{"msg":"Serving"}\n{"msg":"Started","startup_ms":80.5,"phases_ms":{"load":40,"connect":12}}\n';
 * assert.deepEqual(startedPhases(log), { load: 40, connect: 12, total: 80.5 });
 * assert.deepEqual(startedPhases("Listening on http://0.0.0.0:8080/\n"), {});
 * ```
 */
export function startedPhases(log: string): Record<string, number> {
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line);
    if (entry.msg === "Started") return { ...entry.phases_ms, total: entry.startup_ms };
  }
  return {};
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
  /** Each phase of the services' "Started" lines, every run (none for the baselines). */
  readonly phases: Readonly<Record<string, readonly number[]>>;
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
    phases: {} as Record<string, number[]>,
  }));
  for (const target of targets) await spawnToReady(target.args, target.env, freePort()); // warm cache
  for (let run = 0; run < runs; run++) {
    for (const [i, target] of targets.entries()) {
      const sample = await spawnToReady(target.args, target.env, freePort());
      results[i]!.runs.push(sample.ms);
      results[i]!.cpu.push(sample.cpuMs);
      for (const [phase, ms] of Object.entries(sample.phases)) {
        (results[i]!.phases[phase] ??= []).push(ms);
      }
    }
  }
  return results;
}

/**
 * A row's phases as "load 36, setup 18, … (total 80)": the median of each phase over the runs, in
 * ms; empty for a baseline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { phaseSummary } from "./startup.ts";
 *
 * const row = { name: "x", kind: "bundle", runs: [], cpu: [], phases: { load: [30, 40, 35], total: [80, 90, 70] } } as const;
 * assert.equal(phaseSummary(row), "load 35 (total 80)");
 * ```
 */
export function phaseSummary(row: StartupRow): string {
  const { total, ...phases } = row.phases;
  const parts = Object.entries(phases).map(([phase, ms]) => `${phase} ${median(ms).toFixed(0)}`);
  return total ? `${parts.join(", ")} (total ${median(total).toFixed(0)})` : "";
}

if (import.meta.main) {
  const runs = Number(Deno.args.find((a) => a.startsWith("--runs="))?.slice(7) ?? 9);
  const { startBackends } = await import("./services.ts");
  await using backends = await startBackends();
  await using bundles = await buildBundles();
  for (const row of await measureStartup(backends, bundles.dir, runs)) {
    const what = row.kind ? ` (${row.kind})` : "";
    const phases = phaseSummary(row);
    console.log(
      `${row.name}${what}: median ${median(row.runs).toFixed(0)} ms, ${spread(row.runs)}; ` +
        `CPU ${median(row.cpu).toFixed(0)} ms${phases && `; ${phases}`}`,
    );
  }
}
