/**
 * Request-reply throughput and the responder's CPU per request: a raw
 * nats.js echo, a raw nats.js responder doing the same protobuf work, and a
 * handler-base endpoint with telemetry off and on (`OTEL_DENO=true`,
 * exporting to a local OTLP receiver), all in responder subprocesses
 * (`responders.ts`). The load comes from separate load-generator processes
 * (64 requests in flight split between them), so that the load generator is
 * not the bottleneck: by default `closed_load.c` (built with gcc, one thread,
 * a few µs of CPU per request), with `--client=deno` the Deno processes of
 * `load.ts`; the table shows the throughput with 1 and with several load
 * processes, and the CPU the load processes used beside the responder's. CPU per request is the responder process's user + system
 * time (`/proc/<pid>/stat`) over the measured window, divided by the
 * requests answered. Rounds alternate between the paths so that drift on a
 * shared machine hits all alike.
 *
 * Run alone: `deno run -A bench/perf/throughput.ts [--seconds=2] [--rounds=3] [--loaders=3] [--client=c|deno]`
 * (`deno task bench` runs it too).
 *
 * @module
 */
import { startOtlpReceiver } from "../../handler_base/testing/otlp_receiver.ts";
import { cpuMs } from "./proc.ts";
import { runLoad, spawnReady } from "./spawn.ts";
import { type Path, PAYLOAD, SUBJECTS, subjectsOf } from "./responders.ts";
import { median } from "./stats.ts";

const RESPONDERS = new URL("./responders.ts", import.meta.url).pathname;
/** The subject prefix of the telemetry-on responder process: its own, so no request is answered twice. */
const OTEL_PREFIX = "bench.otel";
const LOAD = new URL("./load.ts", import.meta.url).pathname;
const CLOSED_LOAD_C = new URL("./closed_load.c", import.meta.url).pathname;

/** Which load generator runs the load: the C client or the Deno processes of `load.ts`. */
export type LoadClientKind = "c" | "deno";

/** How to start one load process. */
interface LoadClient {
  readonly kind: LoadClientKind;
  readonly command: string;
  args(url: string, subject: string, inFlight: number, seconds: number): string[];
}

/** Builds `closed_load.c` with gcc into a temporary directory, or names the Deno load process. */
async function loadClient(kind: LoadClientKind): Promise<LoadClient> {
  if (kind === "deno") {
    return {
      kind,
      command: Deno.execPath(),
      args: (url, subject, inFlight, seconds) => [
        "run",
        "-A",
        LOAD,
        `--url=${url}`,
        `--subject=${subject}`,
        `--in-flight=${inFlight}`,
        `--seconds=${seconds}`,
      ],
    };
  }
  const binary = `${await Deno.makeTempDir({ prefix: "bench-closed-load-" })}/closed_load`;
  const built = await new Deno.Command("gcc", { args: ["-O2", "-o", binary, CLOSED_LOAD_C] })
    .output();
  if (!built.success) {
    throw new Error(`Cannot build closed_load.c: ${new TextDecoder().decode(built.stderr)}`);
  }
  const hex = Array.from(PAYLOAD, (b) => b.toString(16).padStart(2, "0")).join("");
  return {
    kind,
    command: binary,
    args: (url, subject, inFlight, seconds) => {
      const { hostname, port } = new URL(url.replace(/^nats:/, "http:"));
      return [hostname, port, subject, String(inFlight), String(seconds), hex];
    },
  };
}

/** A path measured: a responder of a process. */
export type Measured = Path | "handler+otel";

/** One measurement. */
export interface Sample {
  readonly path: Measured;
  readonly inFlight: number;
  readonly loaders: number;
  /** Requests per second answered. */
  readonly rate: number;
  /** Responder CPU per request, in µs. */
  readonly cpuUs: number;
  /** Responder CPU over the window, as a share of one core. */
  readonly responderCores: number;
  /** All load processes' CPU over the window, as a share of one core. */
  readonly loadCores: number;
}

/** Runs `loaders` load processes against one responder process and measures. */
async function measure(
  client: LoadClient,
  url: string,
  responderPid: number,
  path: Measured,
  inFlight: number,
  loaders: number,
  seconds: number,
): Promise<Sample> {
  const subject = path === "handler+otel" ? subjectsOf(OTEL_PREFIX).handler : SUBJECTS[path];
  const share = (i: number) => Math.floor(inFlight / loaders) + (i < inFlight % loaders ? 1 : 0);
  const procs = await Promise.all(
    Array.from(
      { length: loaders },
      (_, i) => spawnReady(client.args(url, subject, share(i), seconds), {}, client.command),
    ),
  );
  const before = cpuMs(responderPid);
  const start = performance.now();
  const results = await runLoad(procs);
  const wallMs = performance.now() - start;
  const responderMs = cpuMs(responderPid) - before;
  const requests = results.reduce((sum, r) => sum + r.requests, 0);
  return {
    path,
    inFlight,
    loaders,
    rate: requests / seconds,
    cpuUs: (responderMs * 1000) / requests,
    responderCores: responderMs / wallMs,
    loadCores: results.reduce((sum, r) => sum + r.cpuMs, 0) / wallMs,
  };
}

/** The load settings measured: 1 in flight, and 64 with 1 and with `loaders` load processes. */
export function settings(loaders: number): { inFlight: number; loaders: number }[] {
  return [{ inFlight: 1, loaders: 1 }, { inFlight: 64, loaders: 1 }, { inFlight: 64, loaders }];
}

/** Measures every path at every setting, `rounds` times; returns the medians of each. */
export async function measureThroughput(
  url: string,
  options: { seconds: number; rounds: number; loaders: number; client?: LoadClientKind },
): Promise<Sample[]> {
  const client = await loadClient(options.client ?? "c");
  await using receiver = startOtlpReceiver();
  const off = await spawnReady(["run", "-A", RESPONDERS, url]);
  const on = await spawnReady(["run", "-A", RESPONDERS, url, OTEL_PREFIX], {
    ...receiver.exporterEnv("bench"),
    OTEL_DENO: "true",
  });
  try {
    const paths: Measured[] = ["echo", "proto", "handler", "handler+otel"];
    const samples: Sample[] = [];
    for (let round = 0; round < options.rounds; round++) {
      for (const setting of settings(options.loaders)) {
        for (const path of paths) {
          const pid = path === "handler+otel" ? on.child.pid : off.child.pid;
          samples.push(
            await measure(
              client,
              url,
              pid,
              path,
              setting.inFlight,
              setting.loaders,
              options.seconds,
            ),
          );
        }
      }
    }
    const medians: Sample[] = [];
    for (const setting of settings(options.loaders)) {
      for (const path of paths) {
        const of = samples.filter((s) =>
          s.path === path && s.inFlight === setting.inFlight && s.loaders === setting.loaders
        );
        medians.push({
          path,
          ...setting,
          rate: median(of.map((s) => s.rate)),
          cpuUs: median(of.map((s) => s.cpuUs)),
          responderCores: median(of.map((s) => s.responderCores)),
          loadCores: median(of.map((s) => s.loadCores)),
        });
      }
    }
    return medians;
  } finally {
    off.child.kill("SIGTERM");
    // SIGKILL: at the C client's rates Deno's exporter falls behind (hundreds of MiB of queued
    // spans, docs/PERFORMANCE.md) and a graceful exit would wait for all of them to be sent.
    on.child.kill("SIGKILL");
    await Promise.all([off.child.status, on.child.status]);
  }
}

if (import.meta.main) {
  const { startNatsServer } = await import("../../handler_base/testing/nats_server.ts");
  const args = Object.fromEntries(
    Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
  );
  await using server = await startNatsServer({ jetstream: false });
  const rows = await measureThroughput(server.url, {
    seconds: Number(args.seconds ?? 2),
    rounds: Number(args.rounds ?? 3),
    loaders: Number(args.loaders ?? 3),
    client: args.client === "deno" ? "deno" : "c",
  });
  for (const r of rows) {
    console.log(
      `${r.path} in-flight=${r.inFlight} loaders=${r.loaders}: ${r.rate.toFixed(0)} req/s, ` +
        `${r.cpuUs.toFixed(1)} µs/req, responder ${r.responderCores.toFixed(2)} cores, ` +
        `load ${r.loadCores.toFixed(2)} cores`,
    );
  }
}
