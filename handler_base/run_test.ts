import assert from "node:assert/strict";
import { TTSRequestSchema, TTSStatusSchema } from "./messages.ts";
import { RemoteError } from "./errors.ts";
import { connectNats, type NatsConnection, request } from "./natsutil.ts";
import { type NatsServer, startNatsServer } from "./testing/nats_server.ts";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { startOtlpReceiver } from "./testing/otlp_receiver.ts";
import { closedPortUrl } from "./testing/ports.ts";
import { eventually } from "./testing/eventually.ts";
import {
  runEntryToExit,
  type ServiceProcess,
  startServiceProcess,
} from "./testing/service_process.ts";
import { permissions } from "./testdata/echo_service.ts";

const ECHO_SERVICE = new URL("./testdata/echo_service.ts", import.meta.url).pathname;

/** Starts the echo service as a subprocess with exactly its declared permissions. */
function startEcho(server: NatsServer, env: Record<string, string> = {}) {
  return startServiceProcess({
    entry: ECHO_SERVICE,
    flags: permissions(`127.0.0.1:${server.port}`),
    env: { NATS_URL: server.url, ...env },
  });
}

Deno.test("SIGTERM with 50 requests in flight: all answered, /ready 503 first, exit 0", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const echo = await startEcho(server, { ECHO_DELAY_MS: "700", SHUTDOWN_GRACE_MS: "20s" });
  await echo.waitForReadiness(200);
  const client = await connectNats({ servers: server.url, name: "client" });
  const replies = Promise.all(
    Array.from(
      { length: 50 },
      (_, i) =>
        request(client, "test.echo", TTSRequestSchema, { text: `r${i}` }, TTSStatusSchema, {
          timeout: 15_000,
        }),
    ),
  );
  // The service has all 50 in hand before the signal (each takes 700 ms to answer).
  await eventually(async () => (await echoLoad(client)).in_flight === 50, { intervalMs: 20 });
  echo.child.kill("SIGTERM");
  await echo.waitForReadiness(503);
  const answered = await replies;
  assert.deepEqual(answered.map((r) => r.message), Array.from({ length: 50 }, (_, i) => `r${i}`));
  const status = await echo.status;
  assert.equal(status.code, 0, echo.lines.join("\n"));
  await client.close();
});

Deno.test("the broker is killed and restarted: /ready goes 503 then 200, requests work again", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const echo = await startEcho(server);
  await echo.waitForReadiness(200);
  const client = await connectNats({
    servers: server.url,
    name: "client",
    reconnectTimeWaitMs: 100,
  });
  const ask = (text: string) =>
    request(client, "test.echo", TTSRequestSchema, { text }, TTSStatusSchema, { timeout: 5000 });
  assert.equal((await ask("before")).message, "before");

  await server.kill();
  await echo.waitForReadiness(503);
  const body = (await echo.readiness())?.body;
  assert.equal(body?.status, "not ready");
  assert.ok("nats" in (body?.failing as object), JSON.stringify(body));

  await server.restart();
  await echo.waitForReadiness(200);
  const replies: string[] = [];
  await eventually(async () => Boolean(replies.push((await ask("after")).message)), {
    timeoutMs: 10_000,
  });
  assert.deepEqual(replies, ["after"]);

  assert.equal((await echo.stop()).code, 0, echo.lines.join("\n"));
  await client.close();
});

Deno.test("a service reports every bad variable at once and exits", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const { code, stderr: message } = await runEntryToExit({
    entry: ECHO_SERVICE,
    flags: permissions(`127.0.0.1:${server.port}`),
    env: { HEALTH_PORT: "http", SHUTDOWN_GRACE_MS: "soon", NATS_URL: "not a url" },
  });
  assert.equal(code, 78);
  for (const name of ["HEALTH_PORT", "SHUTDOWN_GRACE_MS", "NATS_URL"]) {
    assert.match(message, new RegExp(name), `names ${name}: ${message}`);
  }
});

Deno.test("a trace crosses two services over NATS: one trace id, parent and child spans", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using receiver = startOtlpReceiver();
  const downstream = await startEcho(server, {
    ...receiver.exporterEnv("echo-b"),
    ECHO_NAME: "echo-b",
    ECHO_SUBJECT: "test.b",
  });
  const upstream = await startEcho(server, {
    ...receiver.exporterEnv("echo-a"),
    ECHO_NAME: "echo-a",
    ECHO_SUBJECT: "test.a",
    ECHO_FORWARD_SUBJECT: "test.b",
  });
  await downstream.waitForReadiness(200);
  await upstream.waitForReadiness(200);
  const client = await connectNats({ servers: server.url, name: "client" });
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const callerSpanId = "00f067aa0ba902b7";
  const h = natsHeaders();
  h.set("traceparent", `00-${traceId}-${callerSpanId}-01`);
  const reply = await request(client, "test.a", TTSRequestSchema, { text: "t" }, TTSStatusSchema, {
    timeout: 10_000,
    headers: h,
  });
  assert.equal(reply.message, "t");

  const spans = await receiver.waitForSpans(
    (span) => span.traceId === traceId && span.kind === "consumer",
    { count: 2, timeoutMs: 15_000 },
  );
  const consumerA = spans.find((span) => span.serviceName === "echo-a");
  const consumerB = spans.find((span) => span.serviceName === "echo-b");
  assert.ok(consumerA && consumerB, JSON.stringify(spans));
  assert.equal(consumerA.parentSpanId, callerSpanId, "A continues the caller's trace");
  assert.equal(consumerA.name, "process test.a");
  const [clientSpan] = await receiver.waitForSpans(
    (span) => span.traceId === traceId && span.kind === "client" && span.serviceName === "echo-a",
  );
  assert.equal(clientSpan?.parentSpanId, consumerA.spanId, "A's request is a child of A's span");
  assert.equal(consumerB.parentSpanId, clientSpan?.spanId, "B's span is a child of A's request");

  await client.close();
  for (const service of [upstream, downstream]) {
    assert.equal((await service.stop()).code, 0, service.lines.join("\n"));
  }
});

/**
 * Starts the echo service where it cannot serve (no broker, wrong password):
 * `startServiceProcess` waits for "Serving", which never comes.
 */
function spawnUnservedEcho(natsUrl: string, env: Record<string, string> = {}) {
  const { port } = new URL(natsUrl);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions(`127.0.0.1:${port}`), ECHO_SERVICE],
    env: { NATS_URL: natsUrl, HEALTH_PORT: "0", LOG_LEVEL: "info", ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const output = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      lines.push(...text.split("\n").filter(Boolean));
    }
  })();
  return {
    child,
    lines,
    /** Waits (bounded) until some line matches. */
    async waitForLine(pattern: RegExp, count = 1): Promise<void> {
      for (let i = 0; i < 1000; i++) {
        if (lines.filter((l) => pattern.test(l)).length >= count) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`No ${count} lines match ${pattern}:\n${lines.join("\n")}`);
    },
    healthPort: () => JSON.parse(lines.find((l) => l.includes("Health server listening"))!).port,
    /** SIGTERM, with a guard that kills a process that does not stop (failing the test). */
    async stop(): Promise<Deno.CommandStatus> {
      child.kill("SIGTERM");
      const guard = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const status = await child.status;
      clearTimeout(guard);
      await output;
      return status;
    },
  };
}

Deno.test("SIGTERM before NATS was ever reachable: the service exits 0 instead of hanging", async () => {
  const echo = spawnUnservedEcho(closedPortUrl("nats"));
  await echo.waitForLine(/Health server listening/);
  const ready = await fetch(`http://127.0.0.1:${echo.healthPort()}/ready`);
  assert.equal(ready.status, 503);
  assert.match(JSON.stringify(await ready.json()), /not connected yet/);
  const { code, signal } = await echo.stop();
  assert.equal(signal, null, "killed by the guard: the service did not stop on SIGTERM");
  assert.equal(code, 0, echo.lines.join("\n"));
});

Deno.test("wrong NATS credentials: the service logs, retries and stays up instead of crashing", async () => {
  await using server = await startNatsServer({
    jetstream: false,
    args: ["--user", "svc", "--pass", "right"],
  });
  const echo = spawnUnservedEcho(server.url, { NATS_USER: "svc", NATS_PASSWORD: "wrong" });
  // Each refused attempt ends with the server resetting the socket; none of them may crash it.
  await echo.waitForLine(/Cannot connect to NATS yet.*Authorization Violation/, 5);
  const ready = await fetch(`http://127.0.0.1:${echo.healthPort()}/ready`);
  assert.equal(ready.status, 503);
  await ready.body?.cancel();
  assert.ok(!echo.lines.some((l) => l.includes("wrong")), "the password is never logged");
  const { code, signal } = await echo.stop();
  assert.equal(signal, null, "killed by the guard");
  assert.equal(code, 0, echo.lines.join("\n"));
});

/** The exit of a process, or "hung" when it outlives `timeoutMs` (it is then killed). */
async function exitWithin(
  child: Deno.ChildProcess,
  timeoutMs: number,
): Promise<Deno.CommandStatus | "hung"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<"hung">((resolve) => {
    timer = setTimeout(() => resolve("hung"), timeoutMs);
  });
  const result = await Promise.race([child.status, hung]);
  clearTimeout(timer);
  if (result === "hung") {
    child.kill("SIGKILL");
    await child.status;
  }
  return result;
}

/** `$SRV.STATS` of the echo service's one endpoint. */
async function echoLoad(client: NatsConnection): Promise<{ in_flight: number; pending: number }> {
  const reply = await client.request("$SRV.STATS.echo", "", { timeout: 2000 });
  return reply.json<{ endpoints: Array<{ data: { in_flight: number; pending: number } }> }>()
    .endpoints[0]!.data;
}

Deno.test("SIGTERM with 4 running and 64 queued against a slow backend: nothing queued starts after the grace", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const client = await connectNats({ servers: server.url, name: "client" });
  // The slow backend: it takes every call and answers none (slower than any grace).
  let backendCalls = 0;
  const backend = client.subscribe("test.backend", { callback: () => void backendCalls++ });
  await client.flush();
  const echo = await startEcho(server, {
    ECHO_FORWARD_SUBJECT: "test.backend",
    ECHO_CONCURRENCY: "4",
    SHUTDOWN_GRACE_MS: "1s",
  });
  await echo.waitForReadiness(200);
  const replies = Promise.allSettled(
    Array.from(
      { length: 68 },
      (_, i) =>
        request(client, "test.echo", TTSRequestSchema, { text: `r${i}` }, TTSStatusSchema, {
          timeout: 15_000,
        }),
    ),
  );
  await eventually(async () => {
    const load = await echoLoad(client);
    return load.in_flight === 4 && load.pending === 64 && backendCalls === 4;
  }, { timeoutMs: 10_000 });

  echo.child.kill("SIGTERM");
  const status = await exitWithin(echo.child, 15_000);
  if (status === "hung") assert.fail(`still alive 15 s after SIGTERM:\n${echo.lines.join("\n")}`);
  assert.equal(status.code, 0, echo.lines.join("\n"));
  await client.flush();
  assert.equal(backendCalls, 4, "no queued request reached the backend");
  const types = (await replies).map((r) =>
    r.status === "rejected" && r.reason instanceof RemoteError ? r.reason.type : String(r.status)
  );
  assert.equal(types.filter((t) => t === "Overloaded").length, 64, types.join(","));
  assert.equal(types.filter((t) => t === "Timeout").length, 4, types.join(","));
  assert.ok(echo.lines.some((l) => l.includes("Grace period over")));
  backend.unsubscribe();
  await client.close();
});

/** Starts the echo service with requests that run until its grace (2 s) ends. */
async function startBusyEcho(server: NatsServer) {
  const client = await connectNats({
    servers: server.url,
    name: "client",
    reconnectTimeWaitMs: 100,
  });
  let backendCalls = 0;
  client.subscribe("test.backend", { callback: () => void backendCalls++ });
  await client.flush();
  const echo = await startEcho(server, {
    ECHO_FORWARD_SUBJECT: "test.backend",
    SHUTDOWN_GRACE_MS: "2s",
  });
  await echo.waitForReadiness(200);
  const replies = Promise.allSettled(
    Array.from(
      { length: 8 },
      (_, i) =>
        request(client, "test.echo", TTSRequestSchema, { text: `r${i}` }, TTSStatusSchema, {
          timeout: 10_000,
        }),
    ),
  );
  await eventually(() => Promise.resolve(backendCalls === 8), { timeoutMs: 10_000 });
  return {
    echo,
    async [Symbol.asyncDispose]() {
      await client.close(); // Rejects the requests the broker's death left waiting.
      await replies;
    },
  };
}

/** Waits (bounded) until a line of the service matches. */
function lineSeen(lines: readonly string[], pattern: RegExp): Promise<void> {
  return eventually(() => Promise.resolve(lines.some((l) => pattern.test(l))), {
    timeoutMs: 10_000,
    intervalMs: 10,
  });
}

for (
  const [when, stop] of [
    ["before the stop", async (echo: ServiceProcess, server: NatsServer) => {
      await server.kill();
      await echo.waitForReadiness(503);
      echo.child.kill("SIGTERM");
    }],
    ["during the drain", async (echo: ServiceProcess, server: NatsServer) => {
      echo.child.kill("SIGTERM");
      await lineSeen(echo.lines, /"msg":"Stopping"/);
      await server.kill();
    }],
    ["at the same time as the stop", async (echo: ServiceProcess, server: NatsServer) => {
      await Promise.all([server.kill(), Promise.resolve(echo.child.kill("SIGTERM"))]);
    }],
  ] as const
) {
  Deno.test(`the broker is killed ${when}: runService returns and the process exits`, async () => {
    await using server = await startNatsServer({ jetstream: false });
    await using busy = await startBusyEcho(server);
    const { echo } = busy;
    await stop(echo, server);
    const status = await exitWithin(echo.child, 20_000);
    if (status === "hung") assert.fail(`still alive 20 s after SIGTERM:\n${echo.lines.join("\n")}`);
    assert.equal(status.code, 0, echo.lines.join("\n"));
    assert.ok(echo.lines.some((l) => l.includes('"msg":"Stopped"')), echo.lines.join("\n"));
  });
}

/**
 * A TCP proxy to `target` that holds every byte from its clients for `delayMs` before passing it
 * on (the other direction goes at once): a broker far away, as the client sees it.
 */
function slowUpstreamProxy(target: number, delayMs: number): Deno.TcpListener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
      void upstream.readable.pipeTo(client.writable).catch(() => {});
      void client.readable.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform: (chunk, controller) =>
            new Promise((resolve) =>
              setTimeout(() => {
                controller.enqueue(chunk);
                resolve();
              }, delayMs)
            ),
        }),
      ).pipeTo(upstream.writable).catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

Deno.test("runService says ready only once the broker has its subscriptions, $SRV ones too", async () => {
  await using server = await startNatsServer({ jetstream: false });
  // Everything the service sends reaches the broker 300 ms late: its subscriptions too.
  using proxy = slowUpstreamProxy(server.port, 300);
  const { port } = proxy.addr as Deno.NetAddr;
  const echo = await startServiceProcess({
    entry: ECHO_SERVICE,
    flags: [
      ...permissions(`127.0.0.1:${port}`).filter((f) => !f.startsWith("--allow-net")),
      `--allow-net=127.0.0.1:${port},0.0.0.0`,
    ],
    env: { NATS_URL: `nats://127.0.0.1:${port}` },
  });
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    const deadline = Date.now() + 20_000;
    while ((await echo.readiness())?.status !== 200) {
      if (Date.now() > deadline) throw new Error(`/ready never answered 200: ${echo.lines}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    // The moment it says ready, a request straight to the broker finds both subscriptions
    // (without them NATS answers "no responders" at once).
    const ping = await client.request("$SRV.PING.echo", undefined, { timeout: 5000 });
    assert.equal(JSON.parse(new TextDecoder().decode(ping.data)).name, "echo");
    const reply = await request(
      client,
      "test.echo",
      TTSRequestSchema,
      { text: "ready" },
      TTSStatusSchema,
      { timeout: 5000 },
    );
    assert.equal(reply.message, "ready");
  } finally {
    await client.close();
    await echo.stop("SIGTERM");
  }
  // The "Started" line says where the start went: every round trip to the broker took 300 ms
  // more, one in the connection's handshake and two in subscribing (the endpoints' flush, then
  // discovery's); the health server waits on nothing.
  const started = echo.logged("Started");
  assert.ok(started, echo.lines.join("\n"));
  const phases = started.phases_ms as Record<string, number>;
  assert.deepEqual(Object.keys(phases), ["health", "connect", "subscribe"]);
  assert.ok(phases.health! < 300, JSON.stringify(started));
  assert.ok(phases.connect! >= 300, JSON.stringify(started));
  assert.ok(phases.subscribe! >= 600, JSON.stringify(started));
  const sum = Object.values(phases).reduce((a, b) => a + b, 0);
  assert.ok(Number(started.startup_ms) >= sum, JSON.stringify(started));
});
