import assert from "node:assert/strict";
import { type HealthServer, startHealthServer } from "./health.ts";
import { createLogger } from "./log.ts";
import { deadline } from "./async.ts";

const HOST = "127.0.0.1";

function start(options: { checkTimeoutMs?: number; signal?: AbortSignal } = {}): HealthServer {
  return startHealthServer({ port: 0, hostname: HOST, ...options });
}

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

async function probe(health: HealthServer, path: string, method = "GET"): Promise<Answer> {
  const res = await fetch(`http://${HOST}:${health.port}${path}`, { method });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === "" ? undefined : JSON.parse(text),
  };
}

Deno.test("startHealthServer() with port 0 listens on a free port", async () => {
  await using health = start();
  assert.ok(health.port > 0);
  assert.equal(health.hostname, HOST);
  const answer = await probe(health, "/health");
  assert.equal(answer.status, 200);
});

Deno.test("GET /health answers 200 ok as JSON, not cached", async () => {
  await using health = start();
  const answer = await probe(health, "/health");
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { status: "ok" });
  assert.equal(answer.headers.get("content-type"), "application/json");
  assert.equal(answer.headers.get("cache-control"), "no-store");
});

Deno.test("GET /ready answers 200 ready with no checks or passing checks", async () => {
  await using health = start();
  assert.deepEqual(await probe(health, "/ready").then((a) => [a.status, a.body]), [200, {
    status: "ready",
  }]);
  health.setCheck("nats", () => true);
  health.setCheck("warm", async () => await Promise.resolve(true));
  const answer = await probe(health, "/ready");
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { status: "ready" });
  assert.equal(answer.headers.get("content-type"), "application/json");
  assert.equal(answer.headers.get("cache-control"), "no-store");
});

Deno.test("GET /ready answers 503 naming every failing check and its reason", async () => {
  await using health = start();
  health.setCheck("ok", () => true);
  health.setCheck("nats", () => "disconnected");
  health.setCheck("endpoint:ai.chat.request", async () => await Promise.resolve("not subscribed"));
  health.setCheck("plain", () => false);
  const answer = await probe(health, "/ready");
  assert.equal(answer.status, 503);
  assert.equal(answer.headers.get("content-type"), "application/json");
  assert.deepEqual(answer.body, {
    status: "not ready",
    failing: {
      nats: "disconnected",
      "endpoint:ai.chat.request": "not subscribed",
      plain: "not ready",
    },
  });
});

Deno.test("a readiness check that throws or rejects fails with its message", async () => {
  await using health = start();
  health.setCheck("sync", () => {
    throw new Error("boom");
  });
  health.setCheck("async", () => Promise.reject(new RangeError("bad state")));
  const answer = await probe(health, "/ready");
  assert.equal(answer.status, 503);
  assert.deepEqual(answer.body, {
    status: "not ready",
    failing: { sync: "check failed: boom", async: "check failed: bad state" },
  });
});

Deno.test("a readiness check that never answers times out and its signal aborts", async () => {
  await using health = start({ checkTimeoutMs: 20 });
  let seen: AbortSignal | undefined;
  health.setCheck("stuck", (signal) => {
    seen = signal;
    return new Promise<boolean>(() => {});
  });
  health.setCheck("fine", () => true);
  const answer = await probe(health, "/ready");
  assert.equal(answer.status, 503);
  assert.deepEqual(answer.body, {
    status: "not ready",
    failing: { stuck: "check timed out after 20 ms" },
  });
  assert.ok(seen?.aborted);
  assert.equal((seen.reason as DOMException).name, "TimeoutError");
});

Deno.test("setCheck() replaces a check of the same name and removeCheck() drops it", async () => {
  await using health = start();
  health.setCheck("nats", () => "disconnected");
  assert.equal((await probe(health, "/ready")).status, 503);
  health.setCheck("nats", () => true);
  assert.equal((await probe(health, "/ready")).status, 200);
  health.setCheck("nats", () => "closed");
  assert.equal(health.removeCheck("nats"), true);
  assert.equal(health.removeCheck("nats"), false);
  assert.equal((await probe(health, "/ready")).status, 200);
  assert.throws(() => health.setCheck("", () => true), TypeError);
});

Deno.test("setShuttingDown() makes /ready answer 503 while /health stays 200", async () => {
  await using health = start();
  let checked = 0;
  health.setCheck("nats", () => {
    checked++;
    return true;
  });
  assert.equal((await probe(health, "/ready")).status, 200);
  assert.equal(health.shuttingDown, false);
  health.setShuttingDown();
  assert.equal(health.shuttingDown, true);
  const ready = await probe(health, "/ready");
  assert.equal(ready.status, 503);
  assert.deepEqual(ready.body, { status: "shutting down" });
  assert.equal(checked, 1, "checks are not run once shutting down");
  const live = await probe(health, "/health");
  assert.equal(live.status, 200);
  assert.deepEqual(live.body, { status: "ok" });
});

Deno.test("HEAD answers like GET without a body", async () => {
  await using health = start();
  health.setCheck("nats", () => "disconnected");
  for (const [path, status] of [["/health", 200], ["/ready", 503], ["/nope", 404]] as const) {
    const res = await fetch(`http://${HOST}:${health.port}${path}`, { method: "HEAD" });
    assert.equal(res.status, status, path);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(await res.text(), "");
  }
});

Deno.test("other paths answer 404 and other methods 405", async () => {
  await using health = start();
  for (const path of ["/", "/healthz", "/ready/", "/health/x"]) {
    const answer = await probe(health, path);
    assert.equal(answer.status, 404, path);
    assert.deepEqual(answer.body, { status: "not found" });
  }
  for (const method of ["POST", "PUT", "DELETE"]) {
    const answer = await probe(health, "/ready", method);
    assert.equal(answer.status, 405, method);
    assert.equal(answer.headers.get("allow"), "GET, HEAD");
    assert.equal(answer.headers.get("content-type"), "application/json");
  }
});

Deno.test("readiness() evaluates the checks in process", async () => {
  await using health = start();
  health.setCheck("nats", () => "disconnected");
  assert.deepEqual(await health.readiness(), {
    status: "not ready",
    failing: { nats: "disconnected" },
  });
});

async function assertRefused(port: number): Promise<void> {
  await assert.rejects(Deno.connect({ hostname: HOST, port }), Deno.errors.ConnectionRefused);
}

Deno.test("close() stops listening, resolves closed and can be called again", async () => {
  const health = start();
  assert.equal((await probe(health, "/health")).status, 200);
  const closing = health.close();
  assert.equal(health.close(), closing);
  await closing;
  await deadline(health.closed, 10_000, { what: "the health server to close" });
  await assertRefused(health.port);
});

Deno.test("the server closes when its signal aborts", async () => {
  const shutdown = new AbortController();
  const health = start({ signal: shutdown.signal });
  assert.equal((await probe(health, "/health")).status, 200);
  shutdown.abort();
  await deadline(health.closed, 10_000, { what: "the health server to close" });
  await assertRefused(health.port);
  await health.close();
});

Deno.test("startHealthServer() throws when its signal is already aborted", () => {
  const signal = AbortSignal.abort(new Error("stopped"));
  assert.throws(() => start({ signal }), { message: "stopped" });
});

Deno.test("the server logs where it listens and each change of readiness", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ service: "test", write: (line) => lines.push(JSON.parse(line)) });
  await using health = startHealthServer({ port: 0, hostname: HOST, logger });
  let connected = false;
  health.setCheck("nats", () => connected || "disconnected");
  await probe(health, "/ready");
  await probe(health, "/ready");
  connected = true;
  await probe(health, "/ready");
  health.setShuttingDown();
  await probe(health, "/ready");
  assert.deepEqual(lines.map(({ level, msg }) => [level, msg]), [
    ["info", "Health server listening"],
    ["warn", "Not ready"],
    ["info", "Ready"],
    ["info", "Shutting down: readiness now fails"],
  ]);
  assert.equal(lines[0]?.port, health.port);
  assert.deepEqual(lines[1]?.failing, { nats: "disconnected" });
});

Deno.test("GET /ready shows details without letting them decide readiness", async () => {
  await using health = start();
  let state = "open";
  health.setDetail("backends", () => ({ tts: { state } }));
  health.setDetail("broken", () => {
    throw new Error("no data");
  });
  let answer = await probe(health, "/ready");
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, {
    status: "ready",
    details: { backends: { tts: { state: "open" } }, broken: { error: "no data" } },
  });
  state = "closed";
  health.setCheck("nats", () => "disconnected");
  answer = await probe(health, "/ready");
  assert.equal(answer.status, 503);
  assert.deepEqual(answer.body, {
    status: "not ready",
    failing: { nats: "disconnected" },
    details: { backends: { tts: { state: "closed" } }, broken: { error: "no data" } },
  });
  assert.throws(() => health.setDetail("", () => 1), TypeError);
});
