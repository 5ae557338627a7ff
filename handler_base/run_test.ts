import assert from "node:assert/strict";
import { TTSRequestSchema, TTSStatusSchema } from "./messages.ts";
import { connectNats, request } from "./natsutil.ts";
import { type NatsServer, startNatsServer } from "./testing/nats_server.ts";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { startOtlpReceiver } from "./testing/otlp_receiver.ts";
import { permissions } from "./testdata/echo_service.ts";

const ECHO_SERVICE = new URL("./testdata/echo_service.ts", import.meta.url).pathname;

/** Starts the echo service as a subprocess with exactly its declared permissions. */
async function startEcho(server: NatsServer, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...permissions(`127.0.0.1:${server.port}`),
      ECHO_SERVICE,
    ],
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      NATS_URL: server.url,
      HEALTH_PORT: "0",
      LOG_LEVEL: "warn",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let healthPort = 0;
  while (!healthPort) {
    const { value, done } = await lines.read();
    if (done) {
      lines.releaseLock();
      const status = await child.status;
      throw new Error(`Echo service exited with ${status.code}: ${await stderr}`);
    }
    buffered += value;
    const match = buffered.match(/HEALTH_PORT=(\d+)/);
    if (match) healthPort = Number(match[1]);
  }
  lines.cancel();
  const ready = () => fetch(`http://127.0.0.1:${healthPort}/ready`);
  return { child, healthPort, stderr, ready };
}

async function readyStatus(ready: () => Promise<Response>): Promise<number> {
  try {
    const response = await ready();
    await response.body?.cancel();
    return response.status;
  } catch {
    return 0; // Not listening (any more).
  }
}

async function waitForReady(ready: () => Promise<Response>, status: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await readyStatus(ready) === status) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`/ready never answered ${status}`);
}

Deno.test("SIGTERM with 50 requests in flight: all answered, /ready 503 first, exit 0", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const echo = await startEcho(server, { ECHO_DELAY_MS: "700", SHUTDOWN_GRACE_MS: "20s" });
  await waitForReady(echo.ready, 200);
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
  await client.flush();
  // Let the service receive all 50 before the signal (each takes 700 ms to answer).
  await new Promise((resolve) => setTimeout(resolve, 200));
  echo.child.kill("SIGTERM");
  await waitForReady(echo.ready, 503);
  const answered = await replies;
  assert.deepEqual(answered.map((r) => r.message), Array.from({ length: 50 }, (_, i) => `r${i}`));
  const status = await echo.child.status;
  assert.equal(status.code, 0, await echo.stderr);
  await client.close();
});

Deno.test("the broker is killed and restarted: /ready goes 503 then 200, requests work again", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const echo = await startEcho(server);
  await waitForReady(echo.ready, 200);
  const client = await connectNats({
    servers: server.url,
    name: "client",
    reconnectTimeWaitMs: 100,
  });
  const ask = (text: string) =>
    request(client, "test.echo", TTSRequestSchema, { text }, TTSStatusSchema, { timeout: 5000 });
  assert.equal((await ask("before")).message, "before");

  await server.kill();
  await waitForReady(echo.ready, 503);
  const body = await (await echo.ready()).json();
  assert.equal(body.status, "not ready");
  assert.ok("nats" in body.failing, JSON.stringify(body));

  await server.restart();
  await waitForReady(echo.ready, 200);
  let reply;
  for (let attempt = 0; !reply && attempt < 100; attempt++) {
    reply = await ask("after").catch(() => undefined);
    if (!reply) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(reply?.message, "after");

  echo.child.kill("SIGTERM");
  assert.equal((await echo.child.status).code, 0, await echo.stderr);
  await client.close();
});

Deno.test("a service reports every bad variable at once and exits", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions(`127.0.0.1:${server.port}`), ECHO_SERVICE],
    env: { HEALTH_PORT: "http", SHUTDOWN_GRACE_MS: "soon", NATS_URL: "not a url" },
    stdout: "null",
    stderr: "piped",
  });
  const { code, stderr } = await child.output();
  const message = new TextDecoder().decode(stderr);
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
  await waitForReady(downstream.ready, 200);
  await waitForReady(upstream.ready, 200);
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
    service.child.kill("SIGTERM");
    assert.equal((await service.child.status).code, 0, await service.stderr);
  }
});
