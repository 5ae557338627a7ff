/**
 * The soak (issue #18), run by hand: `deno task soak --duration=5m`.
 * Bounded by its flags. On one nats-server with the local stand-ins and
 * every service of `services/table.ts` (its permission set), it measures:
 *
 * 1. RSS and CPU per service idle;
 * 2. the mixed workload in core mode at `--rate` for `--duration`, per type
 *    (sent, answered, errors by type, timed out, p50/p99 latency), RSS and
 *    CPU under load;
 * 3. the handler overhead at `--overhead-rate` (500/s) on the one request
 *    that calls no backend (`ai.voice.tts.voices.list`, the voice list is
 *    cached): its round trip is overhead only (NATS included);
 * 4. `--hostile` (100,000) hostile messages over every subject, then the
 *    workload again (undisturbed?);
 * 5. RSS and CPU `--after` (1m) later;
 * 6. JetStream mode on a three-node cluster with R3 streams: durable inputs
 *    while the leader of COMPANIONS_CHAT and then the node chat-handler uses
 *    are killed and restarted: lost, duplicated, and the stall (the longest
 *    gap between two results) against the leader election.
 *
 * It prints a Markdown report on stdout.
 *
 * @module
 */
import { jetstream } from "@nats-io/jetstream";
import { parseArgs } from "node:util";
import { EmptySchema, TTSVoiceListResponseSchema } from "../../handler_base/messages.ts";
import { request } from "../../handler_base/natsutil.ts";
import { type ProcessSample, startSystem, type System } from "./harness.ts";
import { hostileSubjects, sendHostile } from "./hostile.ts";
import { quantile, runDurable, runWorkload, type TypeStats, workloadTypes } from "./workload.ts";

function durationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!match) throw new Error(`Cannot read the duration "${text}": use 90s, 5m or 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "60s" },
    rate: { type: "string", default: "20" },
    "overhead-rate": { type: "string", default: "500" },
    hostile: { type: "string", default: "100000" },
    after: { type: "string", default: "60s" },
    cluster: { type: "boolean", default: true },
  },
});
const duration = durationMs(values.duration);
const rate = Number(values.rate);
const overheadRate = Number(values["overhead-rate"]);
const hostileCount = Number(values.hostile);
const after = durationMs(values.after);

const out: string[] = [];
const line = (text = "") => {
  out.push(text);
  console.error(text);
};

function fmt(n: number): string {
  return Number.isNaN(n) ? "-" : n.toFixed(n < 10 ? 2 : 0);
}

function statsTable(stats: Map<string, TypeStats>): void {
  line("| type | sent | answered | errors by type | timed out | p50 ms | p99 ms |");
  line("| ---- | ---- | -------- | -------------- | --------- | ------ | ------ |");
  for (const [name, s] of stats) {
    const errors = Object.entries(s.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "0";
    line(
      `| ${name} | ${s.sent} | ${s.answered} | ${errors} | ${s.timedOut} | ${
        fmt(quantile(s.latenciesMs, 0.5))
      } | ${fmt(quantile(s.latenciesMs, 0.99))} |`,
    );
  }
}

async function resources(system: System, label: string, since?: Map<string, ProcessSample>) {
  const now = await system.sample();
  line(`| ${label} | ${
    [...now].map(([name, s]) => {
      const cpu = since?.get(name)
        ? ` ${fmt(s.cpuSeconds - since.get(name)!.cpuSeconds)} s CPU`
        : ` ${fmt(s.cpuSeconds)} s CPU`;
      return `${name} ${fmt(s.rssMiB)} MiB,${cpu}`;
    }).join("; ")
  } |`);
  return now;
}

const dir = await Deno.makeTempDir({ prefix: "soak-" });
try {
  line(`# Soak ${new Date().toISOString()}`);
  line();
  line(
    `duration ${values.duration}, rate ${rate}/s, overhead rate ${overheadRate}/s, hostile ${hostileCount}, after ${values.after}; ` +
      `${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}`,
  );
  {
    await using system = await startSystem({ nats: "single", consumeMode: "core" });
    const types = workloadTypes(dir);
    line();
    line("## Resources (RSS, CPU seconds in the phase)");
    line();
    line("| phase | per service |");
    line("| ----- | ----------- |");
    const idle = await resources(system, "idle (after start)");
    const load = await runWorkload(system.nc, types, { rate, durationMs: duration });
    const loaded = await resources(system, `mixed load ${rate}/s for ${values.duration}`, idle);

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

    const hostile = await sendHostile(system.nc, hostileSubjects(), {
      count: hostileCount,
      concurrency: 16,
    });
    const hostileRes = await resources(system, `${hostileCount} hostile messages`, overheadRes);
    const again = await runWorkload(system.nc, types, {
      rate,
      durationMs: Math.min(duration, 20_000),
    });
    await new Promise((resolve) => setTimeout(resolve, after));
    await resources(system, `${values.after} after`, hostileRes);
    const crashed = await system.exited();

    line();
    line(`## Mixed workload, core mode, ${rate}/s for ${values.duration}`);
    line();
    statsTable(load);
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
    line(`## Hostile input`);
    line();
    line("```json");
    line(JSON.stringify(hostile));
    line("```");
    line();
    line(`## Mixed workload after the hostile input`);
    line();
    statsTable(again);
    line();
    line(`crashed services: ${crashed.length ? crashed.join(", ") : "none"}`);
  }

  if (values.cluster) {
    await using system = await startSystem({ nats: "cluster", consumeMode: "jetstream" });
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
