/**
 * The system suite (issue #18): every service of `services/table.ts` as a
 * subprocess with its permission set, a real nats-server (one node or a
 * three-node cluster), under a mixed workload, faults and hostile input.
 * Small counts and bounded waits; assertions on counts and invariants, never
 * on time. The heavy figures come from `deno task soak`.
 */
import assert from "node:assert/strict";
import { ConsumerInfo, jetstream } from "@nats-io/jetstream";
import { startSystem, type System } from "./harness.ts";
import { hostileSubjects, sendHostile } from "./hostile.ts";
import { slowBackend } from "./faults.ts";
import { startSlowConsumer } from "./slow_consumer.ts";
import { connectNats } from "../../handler_base/natsutil.ts";
import { runDurable, runWorkload, type TypeStats, workloadTypes } from "./workload.ts";
import { SERVICES } from "../../services/table.ts";
import type { FakeHandler } from "../../handler_base/testing/mod.ts";

/**
 * The timeout of a workload request in CI. The STT stand-in runs pocketsphinx per
 * utterance, which takes tens of seconds when CI runs other tests beside it.
 */
const SLOW = 90_000;

function summary(stats: Map<string, TypeStats>): string {
  return JSON.stringify(
    Object.fromEntries(
      [...stats].map(([k, s]) => [k, { ...s, latenciesMs: s.latenciesMs.length }]),
    ),
  );
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "system-work-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function assertAllRunning(system: System): Promise<void> {
  assert.deepEqual(await system.exited(), [], "no service crashed");
  assert.equal(system.services.size, SERVICES.length);
}

Deno.test({
  name:
    "system, core: the mixed workload is answered; hostile input on every subject and a slow consumer beside it disturb nothing",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using system = await startSystem({ nats: "single", consumeMode: "core" });
  await withDir(async (dir) => {
    const types = workloadTypes(dir);
    const before = await runWorkload(system.nc, types, {
      rate: 10,
      durationMs: 3_000,
      timeoutMs: SLOW,
    });
    for (const [name, s] of before) {
      assert.equal(s.answered, s.sent, `${name}: ${summary(before)}`);
    }

    // Mixed into the load, from a connection of their own: hostile input on every subject, and a
    // client subscribed to the results and streams that stops reading until the broker cuts it.
    const subjects = hostileSubjects();
    assert.ok(subjects.length >= SERVICES.length);
    await using slow = await startSlowConsumer(system.server!.url, system.monitorUrls);
    const hostileNc = await connectNats({ servers: system.server!.url, name: "hostile" });
    const [during, hostile, cut] = await Promise.all([
      runWorkload(system.nc, types, { rate: 10, durationMs: 3_000, timeoutMs: SLOW }),
      sendHostile(hostileNc, subjects, { count: 600, concurrency: 8 }),
      slow.fill({ timeoutMs: 30_000 }),
    ]).finally(() => hostileNc.close());
    assert.equal(hostile.answered, hostile.sentRequestReply, JSON.stringify(hostile));
    assert.match(cut ?? "not cut", /Slow Consumer/);
    for (const [name, s] of during) {
      assert.equal(s.answered, s.sent, `${name} beside hostile input: ${summary(during)}`);
    }
    await assertAllRunning(system);

    const after = await runWorkload(system.nc, types, {
      rate: 10,
      durationMs: 2_000,
      timeoutMs: SLOW,
    });
    for (const [name, s] of after) {
      assert.equal(s.answered, s.sent, `${name} after hostile input: ${summary(after)}`);
    }
    for (const [name, sample] of await system.sample()) {
      assert.ok(sample.rssMiB < 400, `${name} RSS ${sample.rssMiB} MiB`);
    }
  });
});

Deno.test({
  name:
    "system, JetStream: nats-server SIGKILL and restart, a service SIGKILL and restart, SIGTERM with a backlog: no durable input lost",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using system = await startSystem({ nats: "single", consumeMode: "jetstream" });
  const server = system.server!;
  const durable = await runDurable(system.nc, {
    rate: 20,
    count: 120,
    settleMs: 60_000,
    during: async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await server.kill("SIGKILL");
      await server.restart();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await system.restart("chat-handler", "SIGKILL");
      await system.restart("pipeline-bridge", "SIGTERM");
    },
  });
  assert.deepEqual(durable.lost, [], JSON.stringify(durable));
  assert.equal(durable.answered, durable.stored);
  assert.ok(durable.stored > 0);
  await assertAllRunning(system);

  // Nothing stuck: every durable consumer has nothing pending or unacknowledged.
  const jsm = await jetstream(system.nc).jetstreamManager();
  for (const entry of SERVICES) {
    for (const { stream, durable: name } of entry.deploy.consumers) {
      let info: ConsumerInfo | undefined;
      for (let i = 0; i < 100; i++) {
        info = await jsm.consumers.info(stream, name).catch(() => undefined);
        if (!info || (info.num_pending === 0 && info.num_ack_pending === 0)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(
        !info || (info.num_pending === 0 && info.num_ack_pending === 0),
        `${stream}/${name}: ${JSON.stringify(info && [info.num_pending, info.num_ack_pending])}`,
      );
    }
  }
  // Dead letters only for poison: none here.
  const dead = await jsm.streams.info("DEAD_LETTERS");
  assert.equal(dead.state.messages, 0);

  // Core requests are answered again after the broker came back (bounded wait for recovery).
  await withDir(async (dir) => {
    let last = "";
    let healed = false;
    const deadline = Date.now() + 2 * SLOW;
    while (!healed && Date.now() < deadline) {
      const stats = await runWorkload(system.nc, workloadTypes(dir), {
        rate: 10,
        durationMs: 1_000,
      });
      last = summary(stats);
      healed = [...stats.values()].every((s) => s.answered === s.sent);
    }
    assert.ok(healed, last);
  });
});

Deno.test({
  name:
    "system, cluster R3: killing the stream leader and the node a service uses under load loses nothing",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  // stt-module with its session-affinity bucket, as deployed: it follows JETSTREAM_REPLICAS.
  await using system = await startSystem({
    nats: "cluster",
    consumeMode: "jetstream",
    env: { STT_AFFINITY: "kv" },
  });
  const cluster = system.cluster!;
  const jsm = await jetstream(system.nc).jetstreamManager();
  assert.equal((await jsm.streams.info("COMPANIONS_CHAT")).config.num_replicas, 3);
  assert.equal((await jsm.streams.info("KV_stt_sessions")).config.num_replicas, 3);
  const killed: string[] = [];
  const durable = await runDurable(system.nc, {
    rate: 20,
    count: 100,
    settleMs: 60_000,
    nodes: cluster.urls,
    during: async () => {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const leader = (await jsm.streams.info("COMPANIONS_CHAT")).cluster?.leader ?? "n1";
      await cluster.node(leader).kill();
      killed.push(leader);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await cluster.node(leader).start();
      // The node chat-handler is connected to, from the nodes' /connz.
      let other = "";
      for (const node of cluster.nodes) {
        const connz = await fetch(`${node.monitorUrl}/connz?limit=1000`)
          .then((r) => r.json() as Promise<{ connections?: { name?: string }[] }>)
          .catch(() => ({ connections: [] as { name?: string }[] }));
        if (connz.connections?.some((c) => c.name?.startsWith("chat-handler"))) other = node.name;
      }
      assert.ok(other, "chat-handler is connected to a node");
      await cluster.node(other).kill();
      killed.push(other);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await cluster.node(other).start();
    },
  });
  assert.deepEqual(durable.lost, [], JSON.stringify({ ...durable, killed }));
  assert.equal(durable.answered, durable.stored);
  await assertAllRunning(system);
});

Deno.test({
  name:
    "system, backend faults: errors, hangs, resets and a backend down give ErrorResponses, and the services recover without a restart",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using system = await startSystem({
    nats: "single",
    consumeMode: "core",
    backends: "fakes",
    env: { TTS_REQUEST_TIMEOUT_MS: "3000", TTS_TIMEOUT_MS: "2000", LLM_TIMEOUT_MS: "2000" },
  });
  const fakes = system.fakes!;
  await withDir(async (dir) => {
    const types = workloadTypes(dir).filter((t) => ["chat", "tts"].includes(t.name));
    const run = () =>
      runWorkload(system.nc, types, { rate: 10, durationMs: 1_000, timeoutMs: 15_000 });
    const both = (handler: FakeHandler | undefined) => {
      fakes.llm.override(handler);
      fakes.xtts.override(handler);
    };
    const heal = () => both(undefined);
    const faults: [string, () => void | Promise<void>, () => void][] = [
      ["errors", () => both(() => new Response("backend error", { status: 500 })), heal],
      ["hangs", () =>
        both(async (request) => {
          await request.disconnected;
          return new Response(null, { status: 503 });
        }), heal],
      [
        "resets",
        () =>
          both(() =>
            new Response(new ReadableStream({ start: (c) => c.error(new Error("reset")) }))
          ),
        heal,
      ],
      ["down", async () => {
        // A shutdown refuses new connections at once, but may wait on kept-alive ones: bounded.
        const bounded = (p: Promise<void>) =>
          Promise.race([p, new Promise((resolve) => setTimeout(resolve, 3_000))]);
        await bounded(fakes.llm.down());
        await bounded(fakes.xtts.down());
      }, () => {
        fakes.llm.up();
        fakes.xtts.up();
      }],
    ];
    for (const [name, inject, heal] of faults) {
      await inject();
      const during = await run();
      heal();
      for (const [type, s] of during) {
        const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
        // Every request ends: answered (chat falls back), an error, never silence.
        assert.equal(
          s.answered + errors + s.timedOut,
          s.sent,
          `${name} ${type}: ${summary(during)}`,
        );
        assert.equal(s.timedOut, 0, `${name} ${type}: ${summary(during)}`);
      }
      // Recovery without a restart (a circuit breaker may hold calls for its 5 s).
      let healed = false;
      let last = "";
      const deadline = Date.now() + 60_000;
      while (!healed && Date.now() < deadline) {
        const after = await run();
        last = summary(after);
        healed = [...after.values()].every((s) => s.answered === s.sent);
        if (!healed) await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      assert.ok(healed, `${name}: the services did not recover: ${last}`);
    }
    await assertAllRunning(system);
  });
});

Deno.test({
  name:
    "system, JetStream: a backend turning slow lets the backlog grow, then it drains with nothing lost and no second run; a slow consumer is cut and disturbs nothing",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using system = await startSystem({
    nats: "single",
    consumeMode: "jetstream",
    backends: "fakes",
  });
  await using slow = await startSlowConsumer(system.server!.url, system.monitorUrls);
  // 10 chat inputs a second (half of 20) against 32 at a time taking 6 s each: about 5 a second.
  const [result, cut] = await Promise.all([
    slowBackend(system, { rate: 20, count: 100, slowMs: 6_000, settleMs: 60_000 }),
    slow.fill({ timeoutMs: 30_000 }),
  ]);
  const detail = JSON.stringify({ ...result, maxRssMiB: Object.fromEntries(result.maxRssMiB) });
  assert.match(cut ?? "not cut", /Slow Consumer/);
  assert.deepEqual(result.durable.lost, [], detail);
  assert.equal(result.durable.answered, result.durable.stored, detail);
  // Duplicates only where the contract allows them: while the slow consumer's buffer is full,
  // nats-server stalls the connections publishing to it (up to its write deadline), an ack can
  // arrive after the ack wait, and the input is redelivered. A redelivered trigger never starts
  // a second run (SYSTEM.md section 5): one Workflow per stored trigger.
  assert.equal(system.k8s.workflows.size, result.durable.storedPipeline, detail);
  assert.ok(result.maxBacklog > 0, `the backlog never grew: ${detail}`);
  assert.equal(result.finalBacklog, 0, detail);
  for (const [name, rss] of result.maxRssMiB) assert.ok(rss < 400, `${name} RSS ${rss} MiB`);
  await assertAllRunning(system);
});
