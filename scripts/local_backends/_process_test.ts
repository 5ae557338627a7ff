import assert from "node:assert/strict";
import { abortable, delay } from "../../handler_base/async.ts";
import { findProgram, Limiter, runProcess } from "./_process.ts";

Deno.test("findProgram() finds programs on PATH", () => {
  assert.match(findProgram("sh") ?? "", /\/sh$/);
  assert.equal(findProgram("no-such-program-here"), undefined);
});

Deno.test("runProcess() passes stdin, returns output and exit code", async () => {
  const result = await runProcess("sh", ["-c", "cat; echo oops >&2; exit 3"], {
    stdin: new TextEncoder().encode("hello"),
  });
  assert.equal(new TextDecoder().decode(result.stdout), "hello");
  assert.equal(result.stderr, "oops");
  assert.equal(result.code, 3);
});

Deno.test("runProcess() kills the program when the signal fires or the time is up", async () => {
  const caller = new AbortController();
  const running = runProcess("sleep", ["30"], { signal: caller.signal });
  caller.abort(new Error("client went away"));
  await assert.rejects(abortable(running, AbortSignal.timeout(5000)), /client went away/);
  await assert.rejects(
    abortable(runProcess("sleep", ["30"], { timeoutMs: 50 }), AbortSignal.timeout(5000)),
    /Cannot run sleep: it ran longer than 50 ms/,
  );
  await assert.rejects(
    runProcess("sh", ["-c", "head -c 5000 /dev/zero; sleep 30"], { maxOutputBytes: 100 }),
    /wrote more than 100 bytes/,
  );
});

Deno.test("Limiter runs at most max tasks at once; a waiter can give up", async () => {
  const limiter = new Limiter(1);
  const gate = Promise.withResolvers<void>();
  const order: string[] = [];
  const first = limiter.run(async () => {
    order.push("first");
    await gate.promise;
  });
  const quitter = new AbortController();
  const gaveUp = limiter.run(() => Promise.resolve(order.push("never")), quitter.signal);
  const second = limiter.run(() => Promise.resolve(order.push("second")));
  await delay(10);
  assert.deepEqual(order, ["first"]);
  quitter.abort(new Error("gave up"));
  await assert.rejects(gaveUp, /gave up/);
  gate.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["first", "second"]);
});
