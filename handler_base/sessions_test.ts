import assert from "node:assert/strict";
import { OverloadedError } from "./errors.ts";
import { type SessionCloseReason, SessionTable } from "./sessions.ts";

function deferred<T = void>() {
  return Promise.withResolvers<T>();
}

Deno.test("SessionTable.run() keeps one session's tasks in order while other sessions overtake", async () => {
  const order: string[] = [];
  await using table = new SessionTable<string[]>({ open: () => [] });
  const slow = deferred();
  const a1 = table.run("a", async () => {
    await slow.promise;
    order.push("a1");
  });
  const a2 = table.run("a", () => void order.push("a2"));
  await table.run("b", () => void order.push("b1"));
  assert.deepEqual(order, ["b1"]); // b did not wait for a
  slow.resolve();
  await Promise.all([a1, a2]);
  assert.deepEqual(order, ["b1", "a1", "a2"]);
});

Deno.test("SessionTable.run() rejects only the failing task; the session and others go on", async () => {
  await using table = new SessionTable<{ n: number }>({ open: () => ({ n: 0 }) });
  const failing = table.run("a", () => {
    throw new Error("bad chunk");
  });
  const next = table.run("a", (s) => ++s.n);
  const other = table.run("b", (s) => ++s.n);
  await assert.rejects(failing, /bad chunk/);
  assert.equal(await next, 1);
  assert.equal(await other, 1);
  assert.ok(table.has("a"));
});

Deno.test("SessionTable refuses sessions beyond maxSessions and tasks beyond maxQueued", async () => {
  await using table = new SessionTable<number>({ open: () => 0, maxSessions: 2, maxQueued: 2 });
  await table.run("a", () => {});
  await table.run("b", () => {});
  await assert.rejects(table.run("c", () => {}), OverloadedError);
  const gate = deferred();
  const held = [table.run("a", () => gate.promise), table.run("a", () => {})];
  await assert.rejects(table.run("a", () => {}), OverloadedError);
  gate.resolve();
  await Promise.all(held);
  await table.close("b", "end");
  await table.run("c", () => {}); // room again
  assert.deepEqual(table.ids().sort(), ["a", "c"]);
});

Deno.test("SessionTable.run() with open=false does not open a session", async () => {
  await using table = new SessionTable<number>({ open: () => 0 });
  assert.equal(await table.run("x", () => 1, { open: false }), undefined);
  assert.equal(table.size, 0);
});

Deno.test("SessionTable.close() runs after queued tasks, calls the hook once, and a new run reopens", async () => {
  const events: string[] = [];
  let opened = 0;
  await using table = new SessionTable<number>({
    open: () => ++opened,
    close: (state, id, reason) => void events.push(`close ${id} ${state} ${reason}`),
  });
  const gate = deferred();
  const task = table.run("a", async () => {
    await gate.promise;
    events.push("task");
  });
  const closing = table.close("a", "end");
  assert.equal(table.has("a"), false); // closing sessions take no more work
  gate.resolve();
  await Promise.all([task, closing, table.close("a", "end")]);
  assert.deepEqual(events, ["task", "close a 1 end"]);
  await table.run("a", (state) => assert.equal(state, 2));
});

Deno.test("SessionTable.sweep() closes only sessions idle for idleMs, on the injected clock", async () => {
  let now = 1000;
  const closed: Array<[string, SessionCloseReason]> = [];
  await using table = new SessionTable<number>({
    open: () => 0,
    idleMs: 30_000,
    now: () => now,
    close: (_s, id, reason) => void closed.push([id, reason]),
  });
  await table.run("quiet", () => {});
  now += 20_000;
  await table.run("busy", () => {});
  const gate = deferred();
  const running = table.run("running", () => gate.promise);
  now += 10_000;
  assert.deepEqual(await table.sweep(), ["quiet"]);
  now += 100_000;
  // "running" has a task in flight: never idle, however long it takes.
  assert.deepEqual(await table.sweep(), ["busy"]);
  gate.resolve();
  await running;
  now += 30_000;
  assert.deepEqual(await table.sweep(), ["running"]);
  assert.deepEqual(closed, [["quiet", "idle"], ["busy", "idle"], ["running", "idle"]]);
});

Deno.test("SessionTable: a close hook that throws is reported and the session is gone anyway", async () => {
  let now = 0;
  const errors: string[] = [];
  const table = new SessionTable<number>({
    open: () => 0,
    idleMs: 10,
    now: () => now,
    close: () => {
      throw new Error("flush failed");
    },
    onError: (error, id) => errors.push(`${id}: ${(error as Error).message}`),
  });
  await table.run("a", () => {});
  now = 100;
  await table.sweep();
  assert.deepEqual(errors, ["a: flush failed"]);
  assert.equal(table.size, 0);
});

Deno.test("SessionTable.start() sweeps on a timer until the signal fires; dispose closes with shutdown", async () => {
  const closed = deferred<SessionCloseReason>();
  const controller = new AbortController();
  const table = new SessionTable<number>({
    open: () => 0,
    idleMs: 20,
    close: (_s, _id, reason) => closed.resolve(reason),
  });
  table.start({ intervalMs: 10, signal: controller.signal });
  await table.run("a", () => {});
  assert.equal(await closed.promise, "idle");
  controller.abort();
  const reasons: SessionCloseReason[] = [];
  const second = new SessionTable<number>({
    open: () => 0,
    close: (_s, _id, reason) => void reasons.push(reason),
  });
  await second.run("b", () => {});
  await second[Symbol.asyncDispose]();
  assert.deepEqual(reasons, ["shutdown"]);
});
