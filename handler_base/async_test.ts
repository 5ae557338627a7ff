import assert from "node:assert/strict";
import { abortable, deadline, delay, settlesWithin } from "./async.ts";

Deno.test("abortable() settles like the promise when the signal stays quiet", async () => {
  const controller = new AbortController();
  assert.equal(await abortable(Promise.resolve("done"), controller.signal), "done");
  await assert.rejects(abortable(Promise.reject(new Error("own")), controller.signal), /own/);
  assert.equal(await abortable(Promise.resolve(1)), 1);
});

Deno.test("abortable() rejects with the signal's reason as soon as it fires", async () => {
  const controller = new AbortController();
  const never = new Promise<never>(() => {});
  const waiting = abortable(never, controller.signal);
  controller.abort(new Error("caller gave up"));
  await assert.rejects(waiting, /caller gave up/);
  await assert.rejects(abortable(Promise.resolve(1), controller.signal), /caller gave up/);
});

Deno.test("delay() resolves after the time, and rejects at once when aborted", async () => {
  await delay(1);
  const controller = new AbortController();
  const waiting = delay(60_000, { signal: controller.signal });
  controller.abort(new Error("stopping"));
  // A timer left running would fail this test (Deno's sanitizer).
  await assert.rejects(waiting, /stopping/);
  await assert.rejects(delay(1, { signal: controller.signal }), /stopping/);
});

Deno.test("settlesWithin() says whether a promise settled in time, and leaves no timer", async () => {
  assert.equal(await settlesWithin(Promise.resolve(1), 60_000), true);
  assert.equal(await settlesWithin(Promise.reject(new Error("settled too")), 60_000), true);
  assert.equal(await settlesWithin(new Promise(() => {}), 1), false);
});

Deno.test("deadline() settles like the promise in time, and names what it waited for after", async () => {
  assert.equal(await deadline(delay(1).then(() => 7), 10_000), 7);
  await assert.rejects(deadline(Promise.reject(new Error("own")), 10_000), /own/);
  const never = new Promise<never>(() => {});
  await assert.rejects(deadline(never, 5, { what: "the reply" }), (error: unknown) => {
    assert.ok(error instanceof DOMException);
    assert.equal(error.name, "TimeoutError");
    assert.equal(error.message, "Timed out after 5 ms waiting for the reply");
    return true;
  });
  const controller = new AbortController();
  const waiting = deadline(never, 60_000, { signal: controller.signal });
  controller.abort(new Error("stopping"));
  await assert.rejects(waiting, /stopping/);
});
