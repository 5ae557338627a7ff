import assert from "node:assert/strict";
import { jetstream } from "@nats-io/jetstream";
import { connectNats } from "../handler_base/natsutil.ts";
import { eventually } from "../handler_base/testing/eventually.ts";
import { startNatsCluster } from "../handler_base/testing/nats_cluster.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";

const SCRIPT = new URL("./ensure_streams.ts", import.meta.url).pathname;

/** Runs the script with the permissions its doc names. */
async function run(url: string, ...args: string[]) {
  return await runWith({ NATS_URL: url }, ...args);
}

/** Runs the script with this environment. */
async function runWith(env: Record<string, string>, ...args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "-P=ensure-streams",
      SCRIPT,
      ...args,
    ],
    env,
    cwd: new URL("../", import.meta.url).pathname,
  }).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

Deno.test("ensure_streams.ts plans, creates, then finds nothing to change", async () => {
  await using server = await startNatsServer({ jetstream: true });
  const dry = await run(server.url, "--dry-run", "AI_PIPELINE");
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^AI_PIPELINE {2}would be created: subjects ai\.pipeline\.trigger/);

  const nc = await connectNats({ servers: server.url, name: "check" });
  const jsm = await jetstream(nc).jetstreamManager();
  assert.deepEqual(await jsm.streams.names().next(), [], "a dry run creates nothing");

  const first = await run(server.url);
  assert.equal(first.code, 0, first.err);
  assert.equal(first.out.match(/ created: /g)?.length, 6, first.out);
  const second = await run(server.url);
  assert.equal(second.out.match(/ unchanged/g)?.length, 6, second.out);

  const bad = await run(server.url, "NO_SUCH_STREAM");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown NO_SUCH_STREAM/);
  await nc.close();
});

Deno.test("ensure_streams.ts with JETSTREAM_REPLICAS=3 raises R1 streams to R3 on a three-node cluster, keeping every message, and survives the leader's death", async () => {
  await using cluster = await startNatsCluster({ size: 3 });
  const servers = cluster.urls.join(",");
  const first = await runWith({ NATS_URL: servers });
  assert.equal(first.code, 0, first.err + first.out);
  assert.equal(first.out.match(/ created: /g)?.length, 6, first.out);

  const nc = await connectNats({ servers: [...cluster.urls], name: "check" });
  try {
    const client = jetstream(nc);
    const jsm = await client.jetstreamManager();
    assert.equal((await jsm.streams.info("AI_PIPELINE")).config.num_replicas, 1);
    const sent = 200;
    for (let i = 0; i < sent; i++) {
      await client.publish("ai.pipeline.trigger", `m${i}`, { msgID: `m${i}` });
    }

    const raised = await runWith({ NATS_URL: servers, JETSTREAM_REPLICAS: "3" });
    assert.equal(raised.code, 0, raised.err + raised.out);
    assert.match(raised.out, /AI_PIPELINE +updated: replicas 1 -> 3/);
    assert.equal(raised.out.match(/replicas 1 -> 3/g)?.length, 6, raised.out);
    const again = await runWith({ NATS_URL: servers, JETSTREAM_REPLICAS: "3" });
    assert.equal(again.out.match(/ unchanged/g)?.length, 6, again.out);

    // Both new replicas catch up with every message.
    let leader = "";
    await eventually(async () => {
      const info = await jsm.streams.info("AI_PIPELINE");
      const peers = info.cluster?.replicas ?? [];
      leader = info.cluster?.leader ?? "";
      return info.config.num_replicas === 3 && peers.length === 2 &&
        peers.every((p) => p.current) && info.state.messages === sent && leader !== "";
    }, { timeoutMs: 20_000 });

    // The leader dies: another node leads and still holds all 200. Watch from a node that
    // stays up, so the wait is the election and not this client's reconnection.
    const survivor = cluster.nodes.find((node) => node.name !== leader)!;
    const watcher = await connectNats({ servers: survivor.url, name: "watch" });
    try {
      const survivorJsm = await jetstream(watcher).jetstreamManager();
      await cluster.node(leader).kill();
      let after: Awaited<ReturnType<typeof jsm.streams.info>> | undefined;
      let seen: unknown = "no answer yet";
      // Raft elections time out at random after seconds, and a split vote starts another round:
      // on two cores busy with the rest of the suite that has taken more than 30 s.
      await eventually(async () => {
        after = await survivorJsm.streams.info("AI_PIPELINE").catch((error) => {
          seen = error;
          throw error;
        });
        seen = after.cluster;
        return Boolean(after.cluster?.leader) && after.cluster?.leader !== leader;
      }, { timeoutMs: 90_000 }).catch((error) => {
        throw new Error(`No new leader after ${leader} died; last seen: ${Deno.inspect(seen)}`, {
          cause: error,
        });
      });
      assert.ok(after);
      assert.equal(after.state.messages, sent);
      assert.equal(after.state.first_seq, 1);
      const last = await survivorJsm.streams.getMessage("AI_PIPELINE", { seq: sent });
      assert.equal(last?.string(), `m${sent - 1}`);
    } finally {
      await watcher.close();
    }
  } finally {
    await nc.close();
  }
});

Deno.test("ensure_streams.ts refuses JETSTREAM_REPLICAS out of range, and a single server fails R3 streams", async () => {
  await using server = await startNatsServer({ jetstream: true });
  const bad = await runWith({ NATS_URL: server.url, JETSTREAM_REPLICAS: "7" });
  assert.equal(bad.code, 78);
  assert.match(bad.err, /JETSTREAM_REPLICAS/);
  const single = await runWith({ NATS_URL: server.url, JETSTREAM_REPLICAS: "3" }, "AI_PIPELINE");
  assert.equal(single.code, 1, single.out + single.err);
  assert.match(single.out, /AI_PIPELINE +failed: /);
});
