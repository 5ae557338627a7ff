import assert from "node:assert/strict";
import { connectNats } from "./natsutil.ts";
import { createSessionAffinity, sessionKey } from "./session_affinity.ts";
import { startNatsServer } from "./testing/nats_server.ts";
import { startNatsCluster } from "./testing/nats_cluster.ts";
import { eventually } from "./testing/eventually.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

Deno.test("sessionKey() keeps valid tokens and hex-encodes the rest", () => {
  assert.equal(sessionKey("abc_1-2"), "abc_1-2");
  assert.equal(sessionKey("a b"), "x-612062");
  assert.equal(sessionKey("x-1"), "x-782d31"); // never collides with an encoded key
  assert.equal(sessionKey("é"), "x-c3a9");
});

Deno.test("SessionAffinity: three replicas, each session owned by exactly one, order kept while claiming", async () => {
  await using server = await startNatsServer();
  const ncs = await Promise.all(
    [0, 1, 2].map(() => connectNats({ servers: server.url, name: "t" })),
  );
  try {
    const replicas = await Promise.all(
      ncs.map((nc, i) => createSessionAffinity(nc, { bucket: "t_sessions", replicaId: `r${i}` })),
    );
    const handled = new Map<string, string[]>();
    const calls: Promise<unknown>[] = [];
    for (let s = 0; s < 30; s++) {
      for (let chunk = 0; chunk < 5; chunk++) {
        for (const [i, replica] of replicas.entries()) {
          calls.push(replica.admit(`s${s}`, () => {
            const list = handled.get(`s${s}`) ?? [];
            list.push(`r${i}:${chunk}`);
            handled.set(`s${s}`, list);
          }));
        }
      }
    }
    await Promise.all(calls);
    assert.equal(handled.size, 30);
    const owners = new Set<string>();
    for (const [id, list] of handled) {
      const owner = list[0]!.split(":")[0]!;
      owners.add(owner);
      assert.deepEqual(list, [0, 1, 2, 3, 4].map((c) => `${owner}:${c}`), id);
    }
    const owned = replicas.flatMap((r) => r.owned()).sort();
    assert.equal(owned.length, 30);
    for (const r of replicas) await r[Symbol.asyncDispose]();
  } finally {
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});

Deno.test("SessionAffinity: an ended session drops late messages until reopened; a handed-over one moves at once", async () => {
  await using server = await startNatsServer();
  const [a, b] = await Promise.all(
    [0, 1].map(() => connectNats({ servers: server.url, name: "t" })),
  );
  try {
    await using ra = await createSessionAffinity(a!, {
      bucket: "t_rel",
      replicaId: "a",
      recheckMs: 0,
    });
    await using rb = await createSessionAffinity(b!, {
      bucket: "t_rel",
      replicaId: "b",
      recheckMs: 0,
    });
    assert.equal(await ra.admit("s", () => "a"), "a");
    assert.equal(await rb.admit("s", () => "b"), undefined);
    await ra.release("s"); // ended
    assert.equal(await rb.admit("s", () => "b"), undefined, "a late chunk opens nothing");
    assert.equal(await rb.admit("s", () => "b", { reopen: true }), "b", "a start reopens it");
    assert.equal(await ra.admit("s", () => "a"), undefined);
    await rb.release("s", { ended: false }); // handed over (shutdown)
    assert.equal(await ra.admit("s2", () => "a"), "a");
    assert.equal(await ra.admit("s", () => "a"), "a", "the next chunk opens it at once");
  } finally {
    await Promise.all([a!.close(), b!.close()]);
  }
});

Deno.test("SessionAffinity: a dead replica's sessions are claimed by a live one after the TTL, never before", async () => {
  await using server = await startNatsServer();
  const [a, b] = await Promise.all(
    [0, 1].map(() => connectNats({ servers: server.url, name: "t" })),
  );
  const lost: string[] = [];
  try {
    const ra = await createSessionAffinity(a!, {
      bucket: "t_dead",
      replicaId: "a",
      ttlMs: 600,
      onLost: (id) => lost.push(id),
    });
    await using rb = await createSessionAffinity(b!, {
      bucket: "t_dead",
      replicaId: "b",
      ttlMs: 600,
      recheckMs: 50,
    });
    assert.equal(await ra.admit("s", () => "a"), "a");
    assert.equal(await rb.admit("s", () => "b"), undefined);
    // While a refreshes, b never gets the session, well past the TTL.
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      assert.equal(await rb.admit("s", () => "b"), undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
    // "a" stops refreshing (a paused or dead process): after the TTL, b takes over.
    await a!.close();
    const deadline = Date.now() + 10_000;
    let took: string | undefined;
    while (!took && Date.now() < deadline) {
      took = await rb.admit("s", () => "b");
      if (!took) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(took, "b");
    await ra[Symbol.asyncDispose]();
  } finally {
    await b!.close();
  }
  assert.deepEqual(lost, []);
});

Deno.test("SessionAffinity: an owner whose claim was taken gives the session up through onLost", async () => {
  await using server = await startNatsServer();
  const [a, b] = await Promise.all(
    [0, 1].map(() => connectNats({ servers: server.url, name: "t" })),
  );
  const lost: string[] = [];
  try {
    await using ra = await createSessionAffinity(a!, {
      bucket: "t_lost",
      replicaId: "a",
      onLost: (id) => lost.push(id),
    });
    await using rb = await createSessionAffinity(b!, {
      bucket: "t_lost",
      replicaId: "b",
      recheckMs: 0,
    });
    assert.equal(await ra.admit("s", () => "a"), "a");
    // Simulate the claim expiring while "a" was paused, and "b" claiming it.
    const { Kvm } = await import("@nats-io/kv");
    const kv = await new Kvm(b!).open("t_lost");
    await kv.purge("s");
    assert.equal(await rb.admit("s", () => "b"), "b");
    await ra.refresh();
    assert.deepEqual(lost, ["s"]);
    assert.deepEqual(ra.owned(), []);
    assert.equal(await ra.admit("s", () => "a"), undefined);
  } finally {
    await Promise.all([a!.close(), b!.close()]);
  }
});

Deno.test("SessionAffinity with one replica asks for its stream's info no more than opening the bucket does", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "t" });
  const watcher = await connectNats({ servers: server.url, name: "watcher" });
  try {
    // The broker answers the JetStream API; another subscriber sees each request too.
    let infos = 0;
    watcher.subscribe("$JS.API.STREAM.INFO.KV_t_one", { callback: () => void infos++ });
    await watcher.flush();
    await new Kvm(nc).create("t_one", { history: 1 });
    await nc.flush();
    await watcher.flush();
    infos = 0;
    await new Kvm(nc).create("t_one", { history: 1 }); // opens the existing bucket
    await nc.flush();
    await watcher.flush();
    const byOpening = infos;
    infos = 0;
    await using affinity = await createSessionAffinity(nc, { bucket: "t_one", replicas: 1 });
    await nc.flush();
    await watcher.flush();
    assert.ok(byOpening > 0);
    assert.equal(infos, byOpening, "a second look-up before ready");
    assert.deepEqual(affinity.members(), [affinity.replicaId]);
  } finally {
    await watcher.close();
    await nc.close();
  }
});

Deno.test("SessionAffinity on a three-node cluster: the bucket has three replicas and claims survive the death of its leader", async () => {
  await using cluster = await startNatsCluster({ size: 3 });
  const [a, b, admin] = await Promise.all(
    [0, 1, 2].map((i) =>
      connectNats({ servers: [...cluster.urls], name: `t${i}`, reconnectTimeWaitMs: 100 })
    ),
  );
  try {
    // A bucket made before on one server is raised to three.
    await new Kvm(admin!).create("t_raised", { history: 1 });
    await using raised = await createSessionAffinity(admin!, {
      bucket: "t_raised",
      replicas: 3,
    });
    const jsm = await jetstreamManager(admin!);
    assert.equal((await jsm.streams.info("KV_t_raised")).config.num_replicas, 3);

    await using ra = await createSessionAffinity(a!, {
      bucket: "t_cluster",
      replicaId: "a",
      replicas: 3,
      recheckMs: 0,
    });
    await using rb = await createSessionAffinity(b!, {
      bucket: "t_cluster",
      replicaId: "b",
      replicas: 3,
      recheckMs: 0,
    });
    const info = await jsm.streams.info("KV_t_cluster");
    assert.equal(info.config.num_replicas, 3);
    assert.equal(info.cluster?.replicas?.length, 2);
    assert.equal(await ra.admit("before", () => "a"), "a");
    assert.equal(await rb.admit("before", () => "b"), undefined);

    const leader = info.cluster!.leader!;
    await cluster.node(leader).kill();
    // Bounded wait for a new leader of the bucket's stream (the election).
    let elected: string | undefined;
    await eventually(async () => {
      const now = await jsm.streams.info("KV_t_cluster");
      elected = now.cluster?.leader;
      return elected !== undefined && elected !== leader;
    }, { timeoutMs: 20_000 });
    // b may have been connected to the dead node: until it reaches the bucket again it would
    // handle sessions unclaimed (fail open, by design), so wait until it can read the claim.
    await eventually(async () => {
      const kv = await new Kvm(b!).open("t_cluster").catch(() => undefined);
      const entry = await kv?.get(sessionKey("before")).catch(() => undefined);
      return entry?.string() === "a";
    }, { timeoutMs: 20_000 });
    // The claim made before the kill is still there (a single replica on the dead node would be
    // unreachable), and a new session still has exactly one owner.
    assert.equal(await rb.admit("before", () => "b"), undefined);
    const ran = await Promise.all([
      ra.admit("after", () => "a"),
      rb.admit("after", () => "b"),
    ]);
    assert.equal(ran.filter(Boolean).length, 1, JSON.stringify(ran));
    await raised[Symbol.asyncDispose]();
  } finally {
    await Promise.all([a!.close(), b!.close(), admin!.close()]);
  }
});

Deno.test("createSessionAffinity fails at once without JetStream, and each replica lists the others at start", async () => {
  await using plain = await startNatsServer({ jetstream: false });
  const noJs = await connectNats({ servers: plain.url, name: "no-js" });
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      createSessionAffinity(noJs, { bucket: "t_nojs" }).then(
        () => "opened",
        (error) => error instanceof Error ? "failed" : "threw a non-error",
      ),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("hung"), 10_000)),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "failed");
  } finally {
    await noJs.close();
  }

  await using server = await startNatsServer();
  const ncs = await Promise.all(
    [0, 1, 2].map(() => connectNats({ servers: server.url, name: "t" })),
  );
  const opened = [];
  try {
    for (const [i, nc] of ncs.entries()) {
      opened.push(await createSessionAffinity(nc, { bucket: "t_members", replicaId: `m${i}` }));
    }
    // Opened one after the other: each one found those before it.
    assert.deepEqual(opened.map((a) => a.members().length), [1, 2, 3]);
  } finally {
    for (const affinity of opened) await affinity[Symbol.asyncDispose]();
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});
