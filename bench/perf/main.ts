/**
 * `deno task bench`: the throughput, memory and start-up benchmarks of issue
 * 17 in one command, against one nats-server and the fake backends, printing
 * one markdown table in which every figure stands beside the baseline of the
 * same run, with the target and the machine's load (`/proc/loadavg`) before
 * and after.
 *
 * Options: `--seconds=2` (each throughput window), `--rounds=3`,
 * `--loaders=3` (load processes at 64 in flight), `--runs=9` (start-ups per
 * service), `--load-seconds=10` (tts-module under load for the memory figure;
 * the figure is `--load-seconds=60`). `--quick` is one round, three
 * start-ups and five seconds of load, for a smoke run.
 *
 * @module
 */
import { loadAverage } from "./proc.ts";
import { measureIdle, measureUnderLoad } from "./memory.ts";
import { buildBundles, startBackends } from "./services.ts";
import { measureStartup, NATS_READY_NAME, phaseSummary } from "./startup.ts";
import { median, spread } from "./stats.ts";
import { measureThroughput, type Sample } from "./throughput.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const quick = "quick" in args;
const seconds = Number(args.seconds ?? 2);
const rounds = Number(args.rounds ?? (quick ? 1 : 3));
const loaders = Number(args.loaders ?? 3);
const runs = Number(args.runs ?? (quick ? 3 : 9));
const loadSeconds = Number(args["load-seconds"] ?? (quick ? 5 : 10));

const loadBefore = loadAverage();
await using backends = await startBackends();
await using bundles = await buildBundles();
const throughput = await measureThroughput(backends.nats.url, { seconds, rounds, loaders });
const idle = await measureIdle(backends, bundles.dir);
const loaded = await measureUnderLoad(backends, bundles.dir, loadSeconds);
const startup = await measureStartup(backends, bundles.dir, runs);

const rows: string[][] = [];
const find = (path: Sample["path"], inFlight: number, n: number) =>
  throughput.find((s) => s.path === path && s.inFlight === inFlight && s.loaders === n)!;
for (const setting of [[1, 1], [64, 1], [64, loaders]] as const) {
  const [inFlight, n] = setting;
  const echo = find("echo", inFlight, n);
  const proto = find("proto", inFlight, n);
  const where = `${inFlight} in flight, ${n} load process${n > 1 ? "es" : ""}`;
  for (const path of ["handler", "handler+otel"] as const) {
    const s = find(path, inFlight, n);
    const label = path === "handler" ? "telemetry off" : "telemetry on";
    rows.push([
      `throughput, ${where}, ${label}`,
      `${s.rate.toFixed(0)} req/s`,
      `raw echo ${echo.rate.toFixed(0)} req/s`,
      (s.rate / echo.rate).toFixed(2),
      inFlight === 64 && path === "handler" ? "≥ 0.85" : "",
    ]);
    rows.push([
      `responder CPU per request, ${where}, ${label}`,
      `${s.cpuUs.toFixed(1)} µs`,
      `raw protobuf ${proto.cpuUs.toFixed(1)} µs (echo ${echo.cpuUs.toFixed(1)})`,
      (s.cpuUs / proto.cpuUs).toFixed(2),
      path === "handler" ? "≤ 1.2" : "",
    ]);
  }
  rows.push([
    `CPU used, ${where} (handler-base)`,
    `responder ${find("handler", inFlight, n).responderCores.toFixed(2)} cores`,
    `load processes ${find("handler", inFlight, n).loadCores.toFixed(2)} cores`,
    "",
    "",
  ]);
}
const bare = idle.find((r) => r.name.startsWith("bare"))!;
const raw = idle.find((r) => r.name.startsWith("raw"))!;
const floor = idle.find((r) => r.name === NATS_READY_NAME)!;
for (const row of idle.filter((r) => r.env !== "baseline")) {
  rows.push([
    `idle VmRSS, ${row.name} (${row.env}; anon ${row.anonMiB.toFixed(0)}, file ${
      row.fileMiB.toFixed(0)
    }, V8 heap used ${row.heapUsedMiB ?? "?"} MiB)`,
    `${row.rssMiB.toFixed(1)} MiB (${(row.rssMiB * 1.048576).toFixed(1)} MB)`,
    `bare Deno ${bare.rssMiB.toFixed(1)} MiB (anon ${bare.anonMiB.toFixed(0)}), nats.js alone ${
      raw.rssMiB.toFixed(1)
    } MiB, ${NATS_READY_NAME} ${floor.rssMiB.toFixed(1)} MiB`,
    (row.rssMiB / bare.rssMiB).toFixed(2),
    "≤ 50 MB",
  ]);
}
rows.push([
  `VmRSS after ${loadSeconds} s of load, tts-module bundle (${loaded.requests} syntheses)`,
  `${loaded.after.toFixed(1)} MiB (${(loaded.after * 1.048576).toFixed(1)} MB)`,
  `idle before ${loaded.before.toFixed(1)} MiB`,
  (loaded.after / loaded.before).toFixed(2),
  "≤ 80 MB (1 min)",
]);
const base = startup.find((r) => r.name.startsWith("bare"))!;
const startFloor = startup.find((r) => r.name === NATS_READY_NAME)!;
for (const row of startup.filter((r) => r !== base && r !== startFloor)) {
  rows.push([
    `spawn to /ready 200, ${row.name} (${row.kind}; ${row.runs.length} runs, spread ${
      spread(row.runs)
    } ms)`,
    `${median(row.runs).toFixed(0)} ms (CPU ${median(row.cpu).toFixed(0)} ms)`,
    `bare Deno.serve ${median(base.runs).toFixed(0)} ms (spread ${spread(base.runs)}; CPU ${
      median(base.cpu).toFixed(0)
    } ms), ${NATS_READY_NAME} ${median(startFloor.runs).toFixed(0)} ms (CPU ${
      median(startFloor.cpu).toFixed(0)
    } ms)`,
    (median(row.runs) / median(base.runs)).toFixed(2),
    "≤ 100 ms",
  ]);
}
// Where each bundle's start went, from its "Started" log line (after the spawn-to-ready rows).
for (const row of startup.filter((r) => r.kind === "bundle")) {
  rows.push([
    `where the start went, ${row.name} (bundle; medians, ms from the runtime's start)`,
    phaseSummary(row),
    `${NATS_READY_NAME} ${median(startFloor.runs).toFixed(0)} ms to /ready`,
    "",
    "",
  ]);
}

console.log(
  `\nIssue 17 benchmarks: Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, ` +
    `load average ${loadBefore} before, ${loadAverage()} after; ${rounds} rounds of ${seconds} s, ` +
    `medians.\n`,
);
console.log("| measure | value | baseline (same run) | ratio | target |");
console.log("| --- | --- | --- | --- | --- |");
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
