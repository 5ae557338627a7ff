import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type QueuedTask, Semaphore } from "./semaphore.ts";

/** V8's full collection, exposed for this test only. */
function exposeGc(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

/** A task that holds a payload the way a queued message holds its bytes. */
function taskHolding(payload: Uint8Array, onStart: () => void): QueuedTask {
  return { start: () => void (payload.length > 0 && onStart()), reject: () => {} };
}

Deno.test("Semaphore runs queued tasks in FIFO order and refuses beyond maxPending", () => {
  const slots = new Semaphore(1, 2);
  const order: number[] = [];
  assert.equal(slots.tryAcquire(), true);
  for (const n of [1, 2]) {
    assert.equal(slots.enqueue({ start: () => order.push(n), reject: () => {} }), true);
  }
  assert.equal(slots.enqueue({ start: () => order.push(3), reject: () => {} }), false);
  slots.release();
  slots.release();
  assert.deepEqual(order, [1, 2]);
  slots.release();
  assert.equal(slots.idle, true);
});

Deno.test("Semaphore lets go of a queued task once it started (its message is collectable)", async () => {
  // Found by the soak of issue #18: the consumed part of the queue kept every handled message
  // (up to 1 MiB each) alive until 1,024 had gone through, hundreds of MiB in voice-assistant.
  const gc = exposeGc();
  const slots = new Semaphore(1, 16);
  const refs: WeakRef<Uint8Array>[] = [];
  let started = 0;
  assert.equal(slots.tryAcquire(), true);
  const queue = () => {
    const payload = new Uint8Array(1024 * 1024);
    refs.push(new WeakRef(payload));
    return slots.enqueue(taskHolding(payload, () => started++));
  };
  for (let i = 0; i < 8; i++) assert.equal(queue(), true);
  for (let i = 0; i < 8; i++) slots.release();
  assert.equal(started, 8);
  assert.equal(slots.pending, 0);
  // WeakRef targets stay alive until the current job ends.
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc();
  assert.deepEqual(refs.map((ref) => ref.deref() === undefined), refs.map(() => true));
  slots.release();
  assert.equal(slots.idle, true);
});

Deno.test("Semaphore keeps its order across many tasks and a queue that never drains", () => {
  const slots = new Semaphore(1, 4);
  const order: number[] = [];
  assert.equal(slots.tryAcquire(), true);
  let next = 0;
  const add = () => {
    const n = next++;
    assert.equal(slots.enqueue({ start: () => order.push(n), reject: () => {} }), true);
  };
  add();
  for (let i = 0; i < 3000; i++) {
    add();
    slots.release();
  }
  assert.deepEqual(order, Array.from({ length: 3000 }, (_, i) => i));
  assert.equal(slots.pending, 1);
  const rejected: number[] = [];
  assert.equal(slots.enqueue({ start: () => {}, reject: () => rejected.push(1) }), true);
  slots.close();
  assert.equal(slots.pending, 0);
  assert.deepEqual(rejected, [1]);
});
