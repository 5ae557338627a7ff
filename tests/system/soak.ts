/**
 * The soak (issue #18), run by hand: `deno task soak --duration=5m`.
 * Bounded by its flags. On one nats-server with the local stand-ins and
 * every service of `services/table.ts` (its permission set), it measures:
 *
 * Every service runs with its Deployment's runtime settings (`DENO_V8_FLAGS`,
 * `MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_`) unless `--no-runtime-env`.
 *
 * 1. RSS and CPU per service idle;
 * 2. the mixed workload in core mode at `--rate` for `--duration` (longer
 *    while the hostile input lasts), per type (sent, answered, errors by
 *    type, timed out, p50/p99 latency), with `--hostile` (100,000) hostile
 *    messages over every subject mixed in from another connection, and a
 *    slow consumer (a client that stops reading the result and stream
 *    subjects) cut by the broker; RSS and CPU under load, the largest RSS;
 * 3. the handler overhead at `--overhead-rate` (500/s) on the one request
 *    that calls no backend (`ai.voice.tts.voices.list`, the voice list is
 *    cached): its round trip is overhead only (NATS included);
 * 4. the workload again (undisturbed?), and RSS and CPU `--after` (1m) later;
 * 5. JetStream mode, one node, the fakes: the LLM turns slow
 *    (`--slow-backend-ms`, 6 s a call) while durable inputs go in, then
 *    recovers, with a slow consumer beside it: the backlog, lost,
 *    duplicated, memory (`--no-slow-backend` skips it);
 * 6. JetStream mode on a three-node cluster with R3 streams: durable inputs
 *    while the leader of COMPANIONS_CHAT and then the node chat-handler uses
 *    are killed and restarted: lost, duplicated, and the stall (the longest
 *    gap between two results) against the leader election (`--no-cluster`
 *    skips it).
 *
 * `--stt=fake` points stt-module and voice-assistant at the fake Whisper of
 * the test kit instead of the pocketsphinx stand-in (one transcription at a
 * time, about 0.4 a second): hostile audio that decodes as real speech then
 * does not queue behind the stand-in, and a large `--hostile` count
 * finishes. The mix stays the same (STT and voice paced as for the stand-in;
 * unpaced, voice requests would queue behind the TTS stand-in instead).
 * `--stt=local` (the default) keeps the stand-in.
 *
 * It prints a Markdown report on stdout.
 *
 * @module
 */
import { jetstream } from "@nats-io/jetstream";
import { parseArgs } from "node:util";
import { EmptySchema, TTSVoiceListResponseSchema } from "../../handler_base/messages.ts";
import { connectNats, request } from "../../handler_base/natsutil.ts";
import { slowBackend, startMemorySampler } from "./faults.ts";
import { type ProcessSample, startSystem, type System } from "./harness.ts";
import { type HostileStats, hostileSubjects, sendHostile } from "./hostile.ts";
import { durationMs, fmt, statsTable } from "./report.ts";
import { startSlowConsumer } from "./slow_consumer.ts";
import {
  type Pacing,
  quantile,
  runDurable,
  runWorkload,
  STAND_IN_TRANSCRIPTIONS_PER_SECOND,
  type TypeStats,
  workloadTypes,
} from "./workload.ts";

const { values } = parseArgs({
  args: Deno.args,
  allowNegative: true,
  options: {
    duration: { type: "string", default: "60s" },
    rate: { type: "string", default: "20" },
    "overhead-rate": { type: "string", default: "500" },
    hostile: { type: "string", default: "100000" },
    after: { type: "string", default: "60s" },
    timeout: { type: "string", default: "60s" },
    cluster: { type: "boolean", default: true },
    "runtime-env": { type: "boolean", default: true },
    "slow-backend": { type: "boolean", default: true },
    "slow-backend-ms": { type: "string", default: "6000" },
    stt: { type: "string", default: "local" },
  },
});
if (values.stt !== "local" && values.stt !== "fake") {
  console.error(`Cannot run the soak: --stt must be "local" or "fake", not "${values.stt}"`);
  Deno.exit(2);
}
/** The Whisper of stt-module and voice-assistant: the pocketsphinx stand-in, or the fake. */
const whisper: "local" | "fake" = values.stt;
const duration = durationMs(values.duration);
const rate = Number(values.rate);
const overheadRate = Number(values["overhead-rate"]);
const hostileCount = Number(values.hostile);
const after = durationMs(values.after);
const runtimeEnv = values["runtime-env"];
/**
 * A workload request's timeout: the services' own deadline for a backend call (60 s), since the
 * STT stand-in's queue is shared with the hostile messages that decode as real audio.
 */
const timeoutMs = durationMs(values.timeout);

const out: string[] = [];
const line = (text = "") => {
  out.push(text);
  console.error(text);
};

/** Adds a round's counts to the total. */
function merge(total: Map<string, TypeStats>, round: Map<string, TypeStats>): void {
  for (const [name, s] of round) {
    const t = total.get(name);
    if (!t) {
      total.set(name, { ...s, errors: { ...s.errors }, latenciesMs: [...s.latenciesMs] });
      continue;
    }
    t.sent += s.sent;
    t.answered += s.answered;
    t.timedOut += s.timedOut;
    for (const [k, v] of Object.entries(s.errors)) t.errors[k] = (t.errors[k] ?? 0) + v;
    t.latenciesMs.push(...s.latenciesMs);
  }
}

const table: {
  phase: string;
  samples: Map<string, ProcessSample>;
  cpuSince?: Map<string, ProcessSample>;
}[] = [];
/** Each service's V8 heap used and external (ArrayBuffer) memory, per phase (`/ready`). */
const heapTable: { phase: string; memory: Map<string, Record<string, number>> }[] = [];
async function resources(system: System, phase: string, since?: Map<string, ProcessSample>) {
  const samples = await system.sample();
  table.push({ phase, samples, ...(since ? { cpuSince: since } : {}) });
  const memory = new Map<string, Record<string, number>>();
  for (const [name, service] of system.services) {
    const details = (await service.readiness().catch(() => undefined))?.body.details as
      | { memory?: Record<string, number> }
      | undefined;
    if (details?.memory) memory.set(name, details.memory);
  }
  heapTable.push({ phase, memory });
  return samples;
}

function heapsTable(names: string[]): void {
  line(`| phase | ${names.join(" | ")} |`);
  line(`| ----- | ${names.map(() => "---").join(" | ")} |`);
  for (const row of heapTable) {
    line(`| ${row.phase} | ${
      names.map((name) => {
        const m = row.memory.get(name);
        return m ? `${fmt(m.heap_used_mib ?? NaN)} / ${fmt(m.external_mib ?? NaN)}` : "-";
      }).join(" | ")
    } |`);
  }
}

function resourcesTable(names: string[], maxDuringLoad: Map<string, number>): void {
  line(`| phase | ${names.join(" | ")} |`);
  line(`| ----- | ${names.map(() => "---").join(" | ")} |`);
  for (const row of table) {
    line(`| ${row.phase} | ${
      names.map((name) => {
        const s = row.samples.get(name);
        if (!s) return "-";
        const cpu = s.cpuSeconds - (row.cpuSince?.get(name)?.cpuSeconds ?? 0);
        return `${fmt(s.rssMiB)} MiB, ${fmt(cpu)} s CPU`;
      }).join(" | ")
    } |`);
  }
  line(
    `| largest during the load | ${
      names.map((name) => `${fmt(maxDuringLoad.get(name) ?? NaN)} MiB`).join(" | ")
    } |`,
  );
}

const dir = await Deno.makeTempDir({ prefix: "soak-" });
try {
  line(`# Soak ${new Date().toISOString()}`);
  line();
  line(
    `duration ${values.duration}, rate ${rate}/s, overhead rate ${overheadRate}/s, hostile ${hostileCount}, after ${values.after}, ` +
      `runtime env ${
        runtimeEnv
          ? "on (the Deployments' DENO_V8_FLAGS, MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_)"
          : "off"
      }; ` +
      `${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}`,
  );
  line(
    `STT streams and voice requests paced to at most ${
      fmt(STAND_IN_TRANSCRIPTIONS_PER_SECOND / 3)
    }/s each (the pocketsphinx stand-in's capacity, tests/system/stt_probe.ts); Whisper: ${
      whisper === "fake" ? "the fake (--stt=fake, answers at once)" : "the pocketsphinx stand-in"
    }`,
  );
  {
    await using system = await startSystem({
      nats: "single",
      consumeMode: "core",
      runtimeEnv,
      whisper,
    });
    const types = workloadTypes(dir);
    const idle = await resources(system, "idle (after start)");

    // The load, with the hostile input and a slow consumer mixed in; rounds of the workload go on
    // while the hostile input lasts.
    const memory = startMemorySampler(system, 2000);
    const hostileNc = await connectNats({ servers: system.server!.url, name: "hostile" });
    await using slow = await startSlowConsumer(system.server!.url, system.monitorUrls);
    const loadStart = performance.now();
    let hostileDone = false;
    const hostileRun = sendHostile(hostileNc, hostileSubjects(), {
      count: hostileCount,
      concurrency: 32,
    }).finally(() => (hostileDone = true));
    const slowRun = (async () => {
      await new Promise((resolve) => setTimeout(resolve, Math.min(duration / 3, 20_000)));
      const t0 = performance.now();
      const reason = await slow.fill({ timeoutMs: 60_000 });
      return `${reason ?? "not cut"} after ${fmt((performance.now() - t0) / 1000)} s of filling`;
    })();
    // Rounds start back to back (each paces itself from its start), so the rate holds while the
    // answers of earlier rounds are still out.
    const load = new Map<string, TypeStats>();
    const roundRuns: Promise<Map<string, TypeStats>>[] = [];
    const roundMs = 5_000;
    const pacing: Pacing = { start: performance.now(), sent: new Map() };
    while (performance.now() - loadStart < duration || !hostileDone) {
      roundRuns.push(
        runWorkload(system.nc, types, { rate, durationMs: roundMs, timeoutMs, pacing }),
      );
      await new Promise((resolve) => setTimeout(resolve, roundMs));
    }
    const sendingSeconds = (performance.now() - loadStart) / 1000;
    for (const round of await Promise.all(roundRuns)) merge(load, round);
    const rounds = roundRuns.length;
    const hostile: HostileStats = await hostileRun;
    const slowCut = await slowRun;
    await hostileNc.close();
    const loadSeconds = (performance.now() - loadStart) / 1000;
    const maxDuringLoad = await memory.stop();
    const loaded = await resources(
      system,
      `end of the load (${fmt(loadSeconds)} s, ${rate}/s and the hostile input)`,
      idle,
    );

    // Overhead: the voice list touches no backend.
    const latencies: number[] = [];
    let failed = 0;
    const running: Promise<void>[] = [];
    const count = Math.round(overheadRate * Math.min(duration, 20_000) / 1000);
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      const wait = start + (i * 1000) / overheadRate - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const sent = performance.now();
      running.push(
        request(
          system.nc,
          "ai.voice.tts.voices.list",
          EmptySchema,
          {},
          TTSVoiceListResponseSchema,
          {
            timeout: 10_000,
          },
        ).then(() => void latencies.push(performance.now() - sent), () => void failed++),
      );
    }
    await Promise.all(running);
    const achieved = count / ((performance.now() - start) / 1000);
    const overheadRes = await resources(system, `voices.list ${overheadRate}/s`, loaded);
    const again = await runWorkload(system.nc, types, {
      rate,
      durationMs: Math.min(duration, 20_000),
      timeoutMs,
    });
    const againRes = await resources(system, "the workload again", overheadRes);
    await new Promise((resolve) => setTimeout(resolve, after));
    await resources(system, `${values.after} after`, againRes);
    const crashed = await system.exited();

    line();
    line("## Resources (RSS; CPU seconds in the phase)");
    line();
    resourcesTable([...idle.keys()], maxDuringLoad);
    line();
    line("V8 heap used / external (ArrayBuffers), MiB, from each service's `/ready`:");
    line();
    heapsTable([...idle.keys()]);
    line();
    line(
      `## Mixed workload, core mode, ${rate}/s sent for ${fmt(sendingSeconds)} s (${rounds} ` +
        `rounds of 5 s back to back), hostile input mixed in; answers awaited until ${
          fmt(loadSeconds)
        } s`,
    );
    line();
    statsTable(load, line);
    line();
    line(`## Hostile input (${fmt(loadSeconds)} s, concurrency 32, its own connection)`);
    line();
    line("```json");
    line(JSON.stringify(hostile));
    line("```");
    line();
    line(`## Slow consumer: ${slowCut}`);
    line();
    line(`## Handler overhead: ai.voice.tts.voices.list (no backend call)`);
    line();
    line(
      `${count} requests at ${overheadRate}/s (achieved ${fmt(achieved)}/s): p50 ${
        fmt(quantile(latencies, 0.5))
      } ms, p90 ${fmt(quantile(latencies, 0.9))} ms, p99 ${fmt(quantile(latencies, 0.99))} ms, ` +
        `max ${fmt(Math.max(...latencies))} ms, failed ${failed}`,
    );
    line();
    line(`## Mixed workload afterwards`);
    line();
    statsTable(again, line);
    line();
    line(`crashed services: ${crashed.length ? crashed.join(", ") : "none"}`);
  }

  if (values["slow-backend"]) {
    await using system = await startSystem({
      nats: "single",
      consumeMode: "jetstream",
      backends: "fakes",
      runtimeEnv,
    });
    const slowMs = Number(values["slow-backend-ms"]);
    const count = Math.round(rate * duration / 1000);
    await using slow = await startSlowConsumer(system.server!.url, system.monitorUrls);
    const [result, cut] = await Promise.all([
      slowBackend(system, { rate, count, slowMs }),
      slow.fill({ timeoutMs: 60_000 }),
    ]);
    line();
    line(
      `## JetStream, one node, fakes: the LLM takes ${slowMs} ms a call while ${count} durable inputs go in at ${rate}/s, then recovers; a slow consumer beside it`,
    );
    line();
    const d = result.durable;
    line(
      `- stored ${d.stored} (${d.storedPipeline} pipeline triggers), answered ${d.answered}, lost ${d.lost.length}, duplicated ${d.duplicated}; ` +
        `Workflows ${system.k8s.workflows.size}`,
    );
    line(
      `- chat-handler's backlog: largest ${result.maxBacklog}, at the end ${result.finalBacklog}`,
    );
    line(
      `- largest RSS: ${
        [...result.maxRssMiB].map(([name, rss]) => `${name} ${fmt(rss)} MiB`).join(", ")
      }`,
    );
    line(`- a slow consumer beside it: ${cut ?? "not cut"}`);
    line(`- crashed services: ${(await system.exited()).join(", ") || "none"}`);
  }

  if (values.cluster) {
    await using system = await startSystem({
      nats: "cluster",
      consumeMode: "jetstream",
      runtimeEnv,
      whisper,
      env: { STT_AFFINITY: "kv" },
    });
    const cluster = system.cluster!;
    const jsm = await jetstream(system.nc).jetstreamManager();
    const gaps: { at: number; gapMs: number }[] = [];
    let lastResult = performance.now();
    const sub = system.nc.subscribe("ai.chat.response.*", {
      callback: () => {
        const now = performance.now();
        gaps.push({ at: now, gapMs: now - lastResult });
        lastResult = now;
      },
    });
    const events: string[] = [];
    const count = Math.round(rate * duration / 1000);
    const durable = await runDurable(system.nc, {
      rate,
      count,
      settleMs: 120_000,
      during: async () => {
        await new Promise((resolve) => setTimeout(resolve, duration / 3));
        const info = await jsm.streams.info("COMPANIONS_CHAT");
        const leader = info.cluster?.leader ?? "n1";
        const t0 = performance.now();
        await cluster.node(leader).kill();
        let elected = "";
        while (!elected && performance.now() - t0 < 30_000) {
          const now = await jsm.streams.info("COMPANIONS_CHAT").catch(() => undefined);
          if (now?.cluster?.leader && now.cluster.leader !== leader) elected = now.cluster.leader;
          else await new Promise((resolve) => setTimeout(resolve, 25));
        }
        events.push(
          `killed stream leader ${leader}; new leader ${elected || "none"} after ${
            fmt(performance.now() - t0)
          } ms (as seen by polling stream info)`,
        );
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        await cluster.node(leader).start();
        await new Promise((resolve) => setTimeout(resolve, duration / 3));
        let used = "";
        for (const node of cluster.nodes) {
          const connz = await fetch(`${node.monitorUrl}/connz?limit=1000`)
            .then((r) => r.json() as Promise<{ connections?: { name?: string }[] }>)
            .catch(() => ({ connections: [] as { name?: string }[] }));
          if (connz.connections?.some((c) => c.name?.startsWith("chat-handler"))) used = node.name;
        }
        if (used) {
          await cluster.node(used).kill();
          events.push(`killed ${used}, the node chat-handler was connected to`);
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          await cluster.node(used).start();
        }
      },
    });
    sub.unsubscribe();
    const longest = gaps.toSorted((a, b) => b.gapMs - a.gapMs).slice(0, 3);
    line();
    line(`## JetStream mode, three-node cluster, R3 streams, ${rate}/s durable inputs`);
    line();
    for (const event of events) line(`- ${event}`);
    line(
      `- stored ${durable.stored}, publish failed ${durable.publishFailed}, answered ${durable.answered}, ` +
        `duplicated ${durable.duplicated}, lost ${durable.lost.length}`,
    );
    line(
      `- longest gaps between two chat results: ${
        longest.map((g) => `${fmt(g.gapMs)} ms`).join(", ")
      }`,
    );
    line(`- crashed services: ${(await system.exited()).join(", ") || "none"}`);
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
console.log(out.join("\n"));
