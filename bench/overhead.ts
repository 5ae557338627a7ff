/**
 * `deno task bench:overhead`: the handler overhead of issue #18 at a fixed
 * request rate, beside a raw nats.js baseline measured in the same run.
 *
 * One nats-server (core), one backend process (the fake XTTS answering each
 * synthesis after `--backend-ms` and recording its own time per request,
 * `overhead/backend.ts`), one baseline process (raw nats.js responders doing
 * what tts-module's endpoints do, `overhead/raw_responder.ts`) and
 * tts-module itself, as `deno run -P=tts-module` starts it. An open-loop load
 * client in its own process (`overhead/loadgen.c`, compiled with gcc at the
 * start; `--client=deno` uses `overhead/load_deno.ts` instead) sends
 * `--rate` requests a second on schedule and measures each latency from the
 * request's scheduled send time, so a stalled client or responder cannot hide
 * its stall (no coordinated omission). Two requests:
 *
 * - **voices**: `ai.voice.tts.voices.list` (no backend call): the latency is
 *   all overhead;
 * - **synthesize**: a `TTSRequest` (`stream=false`, a unique session per
 *   request) through the TTS client to the fake XTTS: the overhead of a
 *   request is its latency minus the backend's own time for it, joined by a
 *   sequence number in the text.
 *
 * Each of the four windows (2 requests × baseline and service) lasts
 * `--seconds`, cut in `--rounds` slices that alternate the order of baseline
 * and service, so drift on the shared machine hits both. Reported per window:
 * p50/p90/p99/max of the latency (and of the overhead beyond the backend),
 * the difference to the baseline, the client's send lag (how late it sent
 * against its schedule), the CPU of the client, the responder, the broker
 * and the backend over the window, and how long each of the last three
 * waited, runnable, for a CPU (`/proc/<pid>/task/<tid>/schedstat`: the
 * machine's share of the tail). Then a check of the client
 * itself: the Deno client and the C client against the baseline's voices
 * responder, one window each.
 *
 * Options: `--rate=500 --seconds=20 --rounds=4 --backend-ms=2`,
 * `--client=c|deno`, `--no-client-check`, `--service-env=K=V,K=V` (more
 * environment for tts-module, e.g. `DENO_V8_FLAGS=--max-semi-space-size=2`),
 * `--samples=<file>` (every request as a JSON line, for a closer look),
 * `--trace-gc` (counts the responders' garbage collections and their pauses
 * per window from `--v8-flags=--trace-gc`), `--cpu-prof=<dir>` (tts-module writes a V8 CPU
 * profile there when it stops).
 *
 * Run: `deno task bench:overhead --rate=500 --seconds=20`
 *
 * @module
 */
import { encode, TTSRequestSchema } from "../handler_base/messages.ts";
import { freePort } from "../handler_base/testing/ports.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";
import { TTS_VOICES_LIST_SUBJECT } from "../services/tts/handler.ts";
import { RAW_SUBJECTS } from "./overhead/raw_responder.ts";
import {
  gcPause,
  type LoadReport,
  overheads,
  parseLoadReport,
  seqOfText,
  summarize,
  type Summary,
} from "./overhead/stats.ts";
import { cpuMs, loadAverage, runQueueWaitMs } from "./perf/proc.ts";
import { serviceRun } from "./perf/services.ts";
import { spawnReady } from "./perf/spawn.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => {
    const [key, ...value] = a.replace(/^--/, "").split("=");
    return [key!, value.join("=")];
  }),
);
const rate = Number(args.rate || 500);
const seconds = Number(args.seconds || 20);
const rounds = Number(args.rounds || 4);
const backendMs = Number(args["backend-ms"] ?? 2);
const clientKind = args.client || "c";
const here = (path: string) => new URL(path, import.meta.url).pathname;
const warmup = Math.round(rate); // one second at the rate, left out of every window
const perSlice = Math.round((rate * seconds) / rounds);

/** A process of the run whose CPU is measured. */
interface Proc {
  readonly name: string;
  readonly pid: () => number | undefined;
}

/** Builds the load client (gcc) or names the Deno one. */
async function loadClient(): Promise<string[]> {
  if (clientKind === "deno") return [Deno.execPath(), "run", "-A", here("./overhead/load_deno.ts")];
  const dir = await Deno.makeTempDir({ prefix: "overhead-loadgen-" });
  const binary = `${dir}/loadgen`;
  const built = await new Deno.Command("gcc", {
    args: ["-O2", "-pthread", "-o", binary, here("./overhead/loadgen.c")],
  }).output();
  if (!built.success) {
    throw new Error(`Cannot build loadgen.c: ${new TextDecoder().decode(built.stderr)}`);
  }
  return [binary];
}

/** One kind of request. */
interface Case {
  readonly name: "voices" | "synthesize";
  readonly subject: { raw: string; service: string };
  readonly payload: Uint8Array;
  readonly seqOffset: number;
  readonly seqSubject: boolean;
}

const SEQ_PLACEHOLDER = "0000000000";
const ttsPayload = encode(TTSRequestSchema, {
  text: `overhead ${SEQ_PLACEHOLDER}`,
  language: "en",
  stream: false,
});
const CASES: Case[] = [
  {
    name: "voices",
    subject: { raw: RAW_SUBJECTS.voices, service: TTS_VOICES_LIST_SUBJECT },
    payload: new Uint8Array(0),
    seqOffset: -1,
    seqSubject: false,
  },
  {
    name: "synthesize",
    subject: { raw: `${RAW_SUBJECTS.synthesize}ovh`, service: "ai.voice.tts.request.ovh" },
    payload: ttsPayload,
    seqOffset: new TextDecoder("latin1").decode(ttsPayload).indexOf(SEQ_PLACEHOLDER),
    seqSubject: true,
  },
];

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** Runs one load window; returns the report and the CPU each process used. */
async function runWindow(
  client: string[],
  port: number,
  subject: string,
  c: Case,
  count: number,
  procs: readonly Proc[],
): Promise<{ report: LoadReport; cpu: Record<string, number>; wait: Record<string, number> }> {
  const before = Object.fromEntries(procs.map((p) => [p.name, cpuMs(p.pid()!)]));
  const waitBefore = Object.fromEntries(procs.map((p) => [p.name, runQueueWaitMs(p.pid()!)]));
  const out = await new Deno.Command(client[0]!, {
    args: [
      ...client.slice(1),
      "127.0.0.1",
      String(port),
      subject,
      String(rate),
      String(count),
      String(warmup),
      hex(c.payload),
      String(c.seqOffset),
      c.seqSubject ? "1" : "0",
      "5000",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`Cannot run the load client on ${subject}`);
  const cpu = Object.fromEntries(procs.map((p) => [p.name, cpuMs(p.pid()!) - before[p.name]!]));
  const wait = Object.fromEntries(
    procs.map((p) => [p.name, runQueueWaitMs(p.pid()!) - waitBefore[p.name]!]),
  );
  return { report: parseLoadReport(new TextDecoder().decode(out.stdout)), cpu, wait };
}

/** The backend's own time per measured sequence number since the last call. */
async function backendTimes(
  backend: Awaited<ReturnType<typeof spawnReady>>,
): Promise<Map<number, number>> {
  await backend.stdin.write(new TextEncoder().encode("dump\n"));
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await backend.lines.read();
    if (done) throw new Error("Cannot read the backend's times: it exited");
    text += value;
  }
  const times = new Map<number, number>();
  for (const [textOf, ms] of Object.entries(JSON.parse(text) as Record<string, number>)) {
    const seq = seqOfText(textOf);
    if (seq !== undefined && seq >= warmup) times.set(seq - warmup, ms);
  }
  return times;
}

/** Garbage collections that V8 printed (`--trace-gc`): the pause of each, in ms. */
function gcWatcher(name: string, sources: AsyncIterable<string>[]): { pauses: number[] } {
  const pauses: number[] = [];
  for (const source of sources) {
    (async () => {
      let rest = "";
      for await (const chunk of source) {
        rest += chunk;
        const lines = rest.split("\n");
        rest = lines.pop()!;
        for (const line of lines) {
          const gc = gcPause(line);
          if (gc !== undefined) pauses.push(gc);
          else if (/"level":"(warn|error)"|error/i.test(line)) console.error(`${name}: ${line}`);
        }
      }
    })();
  }
  return { pauses };
}

/** The rest of a reader, as an async iterable. */
async function* rest(reader: ReadableStreamDefaultReader<string>): AsyncIterable<string> {
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield value;
  }
}

const fmt = (ms: number) => ms.toFixed(2);
const gcCell = (pauses: number[]) =>
  pauses.length
    ? `${pauses.length}, ${fmt(summarize(pauses).p50)} / ${fmt(summarize(pauses).max)}`
    : "0";
const sliceP99 = (r: LoadReport) =>
  summarize(r.samples.flatMap((s) => s.latencyMs === undefined ? [] : [s.latencyMs])).p99;
const row = (s: Summary) => [fmt(s.p50), fmt(s.p90), fmt(s.p99), fmt(s.max)];

if (import.meta.main) {
  const loadBefore = loadAverage();
  const client = await loadClient();
  await using nats = await startNatsServer({ jetstream: false });
  const backend = await spawnReady([
    "run",
    "-A",
    here("./overhead/backend.ts"),
    `--delay-ms=${backendMs}`,
  ]);
  const ttsUrl = backend.ready.split(" ")[1]!;
  const voicesDir = await Deno.makeTempDir({ prefix: "overhead-voices-" });
  const healthPort = freePort();
  const serviceEnv: Record<string, string> = {
    NATS_URL: nats.url,
    TTS_URL: ttsUrl,
    TTS_VOICES_DIR: voicesDir,
    HEALTH_PORT: String(healthPort),
    // The baseline has no limit; the default of 4 would measure queueing, not the runtime.
    TTS_MAX_CONCURRENCY: "64",
  };
  for (const pair of (args["service-env"] ?? "").split(",").filter(Boolean)) {
    const [key, ...value] = pair.split("=");
    serviceEnv[key!] = value.join("=");
  }
  const v8 = "trace-gc" in args ? ["--v8-flags=--trace-gc"] : [];
  // The baseline runs with the same V8 flags as the service.
  const raw = await spawnReady(
    ["run", "-A", ...v8, here("./overhead/raw_responder.ts"), nats.url, ttsUrl],
    serviceEnv.DENO_V8_FLAGS ? { DENO_V8_FLAGS: serviceEnv.DENO_V8_FLAGS } : {},
  );
  const run = serviceRun("tts-module", serviceEnv, voicesDir);
  const prof = args["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${args["cpu-prof"]}`] : [];
  const service = new Deno.Command(Deno.execPath(), {
    args: ["run", ...run.flags, ...v8, ...prof, run.entry],
    env: run.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const gc = gcWatcher("tts-module", [
    service.stdout.pipeThrough(new TextDecoderStream()),
    service.stderr.pipeThrough(new TextDecoderStream()),
  ]);
  const rawGc = gcWatcher("raw", [rest(raw.lines)]);
  try {
    for (let i = 0; i < 300; i++) {
      const status = await fetch(`http://127.0.0.1:${healthPort}/ready`)
        .then(async (r) => (await r.body?.cancel(), r.status)).catch(() => 0);
      if (status === 200) break;
      if (i === 299) throw new Error("Cannot start tts-module: /ready is not 200 after 30 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const common: Proc[] = [
      { name: "nats-server", pid: () => nats.pid },
      { name: "backend", pid: () => backend.child.pid },
    ];
    const responders = {
      raw: { name: "responder", pid: () => raw.child.pid },
      service: { name: "responder", pid: () => service.pid },
    };
    type Side = keyof typeof responders;
    const results = new Map<string, {
      reports: LoadReport[];
      cpu: Record<string, number>;
      wait: Record<string, number>;
      overhead: number[];
      gcs: number[];
    }>();
    let lastBackend = new Map<number, number>();
    if (args.samples) await Deno.writeTextFile(args.samples, "");
    for (let round = 0; round < rounds; round++) {
      for (const c of CASES) {
        const sides: Side[] = round % 2 ? ["service", "raw"] : ["raw", "service"];
        for (const side of sides) {
          const watcher = side === "service" ? gc : rawGc;
          const gcBefore = watcher.pauses.length;
          const { report, cpu, wait } = await runWindow(
            client,
            nats.port,
            c.subject[side],
            c,
            perSlice,
            [...common, responders[side]],
          );
          const key = `${c.name} ${side}`;
          const entry = results.get(key) ??
            { reports: [], cpu: {}, wait: {}, overhead: [], gcs: [] };
          entry.reports.push(report);
          for (const [name, ms] of Object.entries(cpu)) {
            entry.cpu[name] = (entry.cpu[name] ?? 0) + ms;
          }
          for (const [name, ms] of Object.entries(wait)) {
            entry.wait[name] = (entry.wait[name] ?? 0) + ms;
          }
          entry.gcs.push(...watcher.pauses.slice(gcBefore));
          if (c.name === "synthesize") {
            lastBackend = await backendTimes(backend);
            entry.overhead.push(...overheads(report.samples, lastBackend));
          } else {
            entry.overhead.push(
              ...report.samples.flatMap((s) =>
                s.latencyMs !== undefined && !s.error ? [s.latencyMs] : []
              ),
            );
          }
          results.set(key, entry);
          if (args.samples) {
            const backend = c.name === "synthesize" ? lastBackend : new Map<number, number>();
            const lines = report.samples.map((s) =>
              JSON.stringify({ key, round, ...s, backendMs: backend.get(s.seq) })
            );
            await Deno.writeTextFile(args.samples, lines.join("\n") + "\n", { append: true });
          }
          console.error(`${key} round ${round + 1}: ${report.samples.length} requests`);
        }
      }
    }
    const clientCheck: { name: string; report: LoadReport; cpu: number }[] = [];
    if (!("no-client-check" in args)) {
      const kinds = clientKind === "deno" ? [client] : [client, [
        Deno.execPath(),
        "run",
        "-A",
        here("./overhead/load_deno.ts"),
      ]];
      for (const k of kinds) {
        const { report } = await runWindow(
          k,
          nats.port,
          RAW_SUBJECTS.voices,
          CASES[0]!,
          perSlice,
          [],
        );
        clientCheck.push({
          name: k.length === 1 ? "C (loadgen.c)" : "Deno (load_deno.ts)",
          report,
          cpu: report.cpuMs,
        });
      }
    }

    const loadAfter = loadAverage();
    console.log(
      `\nHandler overhead at ${rate} requests/s: Deno ${Deno.version.deno}, ` +
        `${navigator.hardwareConcurrency} cores, load average ${loadBefore} before, ${loadAfter} after; ` +
        `${seconds} s per window in ${rounds} alternating slices, ${
          clientKind === "c" ? "C" : "Deno"
        } ` +
        `load client; backend delay ${backendMs} ms; ms.\n`,
    );
    console.log(
      "| request | responder | answered | errors | latency p50 | p90 | p99 | max | " +
        "beyond backend p50 | p90 | p99 | max | p99 from actual send | client send lag p99 / max | " +
        "CPU % of a core: client / responder / nats-server / backend | GCs: count, pause p50 / max | " +
        "run-queue wait, % of the window: responder / nats-server / backend | latency p99 of each slice |",
    );
    console.log("| --- ".repeat(20) + "|");
    const summaries = new Map<string, Summary>();
    for (const c of CASES) {
      for (const side of ["raw", "service"] as const) {
        const entry = results.get(`${c.name} ${side}`)!;
        const samples = entry.reports.flatMap((r) => r.samples);
        const answered = samples.filter((s) => s.latencyMs !== undefined);
        const latency = summarize(answered.map((s) => s.latencyMs!));
        const beyond = summarize(entry.overhead);
        summaries.set(`${c.name} ${side}`, beyond);
        const lag = summarize(samples.map((s) => s.lagMs));
        const fromSend = summarize(answered.map((s) => s.latencyMs! - s.lagMs));
        const wall = entry.reports.reduce((sum, r) => sum + r.wallMs, 0);
        const clientCpu = entry.reports.reduce((sum, r) => sum + r.cpuMs, 0);
        const pct = (ms: number) => ((ms / wall) * 100).toFixed(0);
        console.log(
          `| ${c.name} | ${side === "raw" ? "raw nats.js (baseline)" : "tts-module"} | ` +
            `${answered.length}/${samples.length} | ${samples.filter((s) => s.error).length} | ` +
            `${row(latency).join(" | ")} | ${row(beyond).join(" | ")} | ${fmt(fromSend.p99)} | ` +
            `${fmt(lag.p99)} / ${fmt(lag.max)} | ${pct(clientCpu)} / ${
              pct(entry.cpu.responder!)
            } / ` +
            `${pct(entry.cpu["nats-server"]!)} / ${pct(entry.cpu.backend!)} | ` +
            `${"trace-gc" in args ? gcCell(entry.gcs) : ""} | ${pct(entry.wait.responder!)} / ` +
            `${pct(entry.wait["nats-server"]!)} / ${pct(entry.wait.backend!)} | ` +
            `${entry.reports.map((r) => fmt(sliceP99(r))).join(" / ")} |`,
        );
      }
    }
    console.log("\nService minus baseline, same run (ms, beyond the backend's own time):\n");
    console.log("| request | p50 | p90 | p99 | max |");
    console.log("| --- | --- | --- | --- | --- |");
    for (const c of CASES) {
      const s = summaries.get(`${c.name} service`)!;
      const r = summaries.get(`${c.name} raw`)!;
      console.log(
        `| ${c.name} | ${fmt(s.p50 - r.p50)} | ${fmt(s.p90 - r.p90)} | ${fmt(s.p99 - r.p99)} | ` +
          `${fmt(s.max - r.max)} |`,
      );
    }
    if (clientCheck.length) {
      console.log("\nThe load client itself, against the baseline's voices responder:\n");
      console.log(
        "| client | latency p50 | p90 | p99 | max | send lag p50 | p99 | max | client CPU % |",
      );
      console.log("| --- ".repeat(9) + "|");
      for (const k of clientCheck) {
        const answered = k.report.samples.flatMap((s) =>
          s.latencyMs === undefined ? [] : [s.latencyMs]
        );
        const lag = summarize(k.report.samples.map((s) => s.lagMs));
        console.log(
          `| ${k.name} | ${row(summarize(answered)).join(" | ")} | ${fmt(lag.p50)} | ` +
            `${fmt(lag.p99)} | ${fmt(lag.max)} | ${((k.cpu / k.report.wallMs) * 100).toFixed(0)} |`,
        );
      }
    }
  } finally {
    service.kill("SIGTERM");
    await service.status;
    raw.child.kill("SIGTERM");
    await raw.child.status;
    await backend.stdin.close().catch(() => {});
    await backend.child.status;
    await Deno.remove(voicesDir, { recursive: true });
    if (client.length === 1) {
      await Deno.remove(client[0]!.replace(/\/loadgen$/, ""), { recursive: true });
    }
  }
}
