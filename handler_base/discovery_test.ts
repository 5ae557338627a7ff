import assert from "node:assert/strict";
import { Svcm } from "@nats-io/services";
import {
  discoverySubjects,
  MICRO_RESPONSE_TYPES,
  type PingResponse,
  startDiscovery,
  type StatsResponse,
} from "./discovery.ts";
import { InvalidArgumentError } from "./errors.ts";
import { createService, defineEndpoint, type Service } from "./handler.ts";
import { createLogger } from "./log.ts";
import { TTSRequestSchema, TTSStatusSchema } from "./messages.ts";
import { connectNats, type NatsConnection, request } from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";

const quiet = createLogger({ service: "test", level: "error", write: () => {} });

function echoService(nc: NatsConnection): Service {
  return createService(nc, {
    name: "echo-svc",
    version: "1.2.3",
    logger: quiet,
    endpoints: [
      defineEndpoint({
        subject: "test.echo",
        name: "echo",
        request: TTSRequestSchema,
        response: TTSStatusSchema,
        handle(req) {
          if (req.text === "bad") throw new InvalidArgumentError("Cannot echo: bad text");
          return Promise.resolve({ status: "ok", message: req.text });
        },
      }),
      defineEndpoint({
        subject: "test.jobs.>",
        name: "jobs",
        stream: "TEST_JOBS",
        request: TTSRequestSchema,
        handle: () => Promise.resolve(),
      }),
    ],
  });
}

/** Collects every answer to a discovery request until `count` have come. */
async function ask<T>(nc: NatsConnection, subject: string, count: number): Promise<T[]> {
  const replies = await nc.requestMany(subject, "", {
    strategy: "count",
    maxMessages: count,
    maxWait: 5000,
  });
  const answers: T[] = [];
  for await (const reply of replies) answers.push(reply.json<T>());
  return answers;
}

Deno.test("startDiscovery() answers $SRV.PING from every instance and $SRV.STATS with counts", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const connections = await Promise.all(
    [1, 2].map((i) => connectNats({ servers: server.url, name: `echo-${i}` })),
  );
  const services = connections.map(echoService);
  await Promise.all(services.map((s) => s.start()));
  const discoveries = services.map((s) => startDiscovery(s, { description: "Echoes text" }));
  const client = await connectNats({ servers: server.url, name: "client" });
  await Promise.all(connections.map((nc) => nc.flush()));

  const echo = (text: string) =>
    request(client, "test.echo", TTSRequestSchema, { text }, TTSStatusSchema, { timeout: 5000 });
  await Promise.all(["a", "b", "c", "d", "e"].map(echo));
  await assert.rejects(echo("bad"));

  const pings = await ask<PingResponse>(client, "$SRV.PING", 2);
  assert.deepEqual(
    new Set(pings.map((p) => p.id)),
    new Set(discoveries.map((d) => d.id)),
    "every instance answers: no queue group",
  );
  for (const ping of pings) {
    assert.deepEqual(ping, {
      type: MICRO_RESPONSE_TYPES.ping,
      name: "echo-svc",
      id: ping.id,
      version: "1.2.3",
      metadata: {},
    });
  }

  const stats = await ask<StatsResponse>(client, "$SRV.STATS.echo-svc", 2);
  const echoStats = stats.map((s) => s.endpoints.find((e) => e.name === "echo")!);
  assert.equal(echoStats.reduce((n, e) => n + e.num_requests, 0), 6);
  assert.equal(echoStats.reduce((n, e) => n + e.num_errors, 0), 1);
  const failed = echoStats.find((e) => e.num_errors === 1)!;
  assert.equal(failed.last_error, "InvalidArgument: Cannot echo: bad text");
  assert.ok(failed.processing_time > 0 && failed.average_processing_time > 0);
  assert.equal(failed.queue_group, "echo-svc");
  assert.equal(stats[0]?.type, MICRO_RESPONSE_TYPES.stats);
  assert.ok(!Number.isNaN(Date.parse(stats[0]!.started)));

  const [one] = await ask<StatsResponse>(client, `$SRV.STATS.echo-svc.${discoveries[0]!.id}`, 1);
  assert.equal(one?.id, discoveries[0]!.id);
  const [info] = await ask<Record<string, unknown>>(client, "$SRV.INFO.echo-svc", 1);
  assert.equal(info?.description, "Echoes text");
  assert.deepEqual(info?.endpoints, [
    { name: "echo", subject: "test.echo", queue_group: "echo-svc", metadata: { consume: "core" } },
    {
      name: "jobs",
      subject: "test.jobs.>",
      queue_group: "echo-svc",
      metadata: { consume: "core" },
    },
  ]);

  for (const d of discoveries) await d.stop();
  for (const s of services) await s.stop();
  await Promise.all([...connections, client].map((nc) => nc.close()));
});

Deno.test("startDiscovery() answers with the fields of the reference micro implementation", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "both" });
  // The nats.js services package, whose answers `nats micro` reads.
  const reference = await new Svcm(nc as never).add({ name: "ref", version: "1.0.0" });
  reference.addEndpoint("work", { subject: "ref.work", handler: (_e, m) => m.respond("") });
  const service = echoService(nc);
  await service.start();
  await using discovery = startDiscovery(service);
  await nc.request("ref.work", "", { timeout: 5000 });

  const keys = (value: unknown): string[] => Object.keys(value as object).sort();
  for (const verb of ["PING", "INFO", "STATS"] as const) {
    const [ours] = await ask<Record<string, unknown>>(nc, `$SRV.${verb}.echo-svc`, 1);
    const [theirs] = await ask<Record<string, unknown>>(nc, `$SRV.${verb}.ref`, 1);
    assert.equal(ours?.type, theirs?.type);
    for (const key of keys(theirs)) assert.ok(key in ours!, `${verb} has "${key}"`);
    if (verb === "PING") continue;
    const theirEndpoint = (theirs?.endpoints as object[])[0]!;
    const ourEndpoint = (ours?.endpoints as object[])[0]!;
    for (const key of keys(theirEndpoint)) {
      assert.ok(key in ourEndpoint, `${verb} endpoint "${key}"`);
    }
  }
  assert.deepEqual(discoverySubjects("STATS", { name: "echo-svc", id: discovery.id }), [
    "$SRV.STATS",
    "$SRV.STATS.echo-svc",
    `$SRV.STATS.echo-svc.${discovery.id}`,
  ]);
  await reference.stop();
  await service.stop();
  await nc.close();
});

Deno.test("startDiscovery() describes JetStream endpoints and refuses names micro cannot carry", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "js" });
  const service = createService(nc, {
    name: "echo-svc",
    logger: quiet,
    consumeMode: "jetstream",
    endpoints: echoService(nc).endpoints,
  });
  await using discovery = startDiscovery(service);
  assert.deepEqual(discovery.info().endpoints[1], {
    name: "jobs",
    subject: "test.jobs.>",
    queue_group: "echo-svc",
    metadata: { consume: "jetstream", stream: "TEST_JOBS", durable: "echo-svc" },
  });
  const dotted = createService(nc, { name: "a.b", logger: quiet, endpoints: [] });
  assert.throws(() => startDiscovery(dotted), TypeError);
  await nc.close();
});

Deno.test("startDiscovery() adds the data option's fields to every endpoint's STATS data", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "svc" });
  const service = echoService(nc);
  await service.start();
  let state = "open";
  await using discovery = startDiscovery(service, { data: () => ({ backends: { tts: state } }) });
  const [stats] = await ask<StatsResponse>(nc, `$SRV.STATS.echo-svc.${discovery.id}`, 1);
  assert.deepEqual(stats?.endpoints.map((e) => e.data.backends), [{ tts: "open" }, {
    tts: "open",
  }]);
  assert.equal(stats?.endpoints[0]?.data.concurrency, 16);
  state = "closed";
  assert.deepEqual(discovery.stats().endpoints[0]?.data.backends, { tts: "closed" });
  await service.stop({ graceMs: 100 });
  await nc.close();
});

Deno.test("$SRV.STATS counts a handler's whole time, and started is an RFC 3339 UTC time", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "slow" });
  const client = await connectNats({ servers: server.url, name: "client" });
  const service = createService(nc, {
    name: "slow-svc",
    logger: quiet,
    endpoints: [defineEndpoint({
      subject: "test.slow",
      name: "slow",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      // Several messages arrive in one read and start together; each then takes 40 ms of its own.
      handle: (req) =>
        new Promise((resolve) =>
          setTimeout(() => resolve({ status: "ok", message: req.text }), 40)
        ),
    })],
  });
  const before = Date.now();
  await service.start();
  const discovery = startDiscovery(service, {});
  try {
    await nc.flush();
    await Promise.all(
      ["a", "b", "c", "d"].map((text) =>
        request(client, "test.slow", TTSRequestSchema, { text }, TTSStatusSchema, { timeout: 5000 })
      ),
    );
    const [stats] = await ask<StatsResponse>(client, "$SRV.STATS.slow-svc", 1);
    const slow = stats!.endpoints.find((e) => e.name === "slow")!;
    assert.equal(slow.num_requests, 4);
    assert.ok(slow.average_processing_time >= 40e6, `${slow.average_processing_time} ns`);
    assert.match(stats!.started, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const started = Date.parse(stats!.started);
    assert.ok(started >= before - 1 && started <= Date.now(), stats!.started);
  } finally {
    await discovery.stop();
    await service.stop({ graceMs: 1000 });
    await Promise.all([nc.close(), client.close()]);
  }
});
