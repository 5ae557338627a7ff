import assert from "node:assert/strict";
import { type CoalescerClock, createCoalescer } from "./coalesce.ts";

/** A clock that moves only when told, firing due timers in order. */
function manualClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const clock: CoalescerClock = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
  };
  return {
    clock,
    pending: () => timers.size,
    advance(ms: number) {
      now += ms;
      for (const [id, timer] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at > now) continue;
        timers.delete(id);
        timer.fn();
      }
    },
  };
}

Deno.test("createCoalescer() with interval 0 emits every delta on its own", () => {
  const pieces: string[] = [];
  const coalescer = createCoalescer((text) => pieces.push(text), { minIntervalMs: 0 });
  for (const delta of ["a", "b", "", "c"]) coalescer.push(delta);
  coalescer.flush();
  assert.deepEqual(pieces, ["a", "b", "c"]);
});

Deno.test("createCoalescer() emits the first delta at once and merges a burst after it", () => {
  const time = manualClock();
  const pieces: string[] = [];
  const coalescer = createCoalescer((text) => pieces.push(text), {
    minIntervalMs: 20,
    clock: time.clock,
  });
  coalescer.push("Hel");
  assert.deepEqual(pieces, ["Hel"]);
  time.advance(5);
  coalescer.push("lo");
  time.advance(5);
  coalescer.push(", ");
  assert.deepEqual(pieces, ["Hel"]);
  time.advance(10); // 20 ms after the first emission
  assert.deepEqual(pieces, ["Hel", "lo, "]);
  time.advance(50); // a pause longer than the interval: the next delta goes out at once
  coalescer.push("world");
  assert.deepEqual(pieces, ["Hel", "lo, ", "world"]);
  time.advance(1);
  coalescer.push("!");
  coalescer.flush();
  assert.deepEqual(pieces, ["Hel", "lo, ", "world", "!"]);
  assert.equal(time.pending(), 0);
});

Deno.test("createCoalescer() keeps every character in order whatever the timing", () => {
  const time = manualClock();
  const pieces: string[] = [];
  const coalescer = createCoalescer((text) => pieces.push(text), {
    minIntervalMs: 7,
    clock: time.clock,
  });
  const deltas = Array.from({ length: 200 }, (_, i) => `${i},`);
  deltas.forEach((delta, i) => {
    coalescer.push(delta);
    time.advance(i % 5); // irregular gaps: some within the interval, some after it
  });
  coalescer.flush();
  assert.equal(pieces.join(""), deltas.join(""));
  assert.ok(pieces.length < deltas.length, `${pieces.length} pieces for ${deltas.length} deltas`);
  assert.ok(pieces.every((piece) => piece !== ""));
  assert.equal(time.pending(), 0);
});

Deno.test("createCoalescer() flush with nothing buffered emits nothing", () => {
  const pieces: string[] = [];
  const coalescer = createCoalescer((text) => pieces.push(text), { minIntervalMs: 1000 });
  coalescer.flush();
  coalescer.push("x");
  coalescer.flush();
  coalescer.flush();
  assert.deepEqual(pieces, ["x"]);
});

Deno.test("createCoalescer() rejects a negative interval", () => {
  assert.throws(() => createCoalescer(() => {}, { minIntervalMs: -1 }), RangeError);
});
