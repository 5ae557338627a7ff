import assert from "node:assert/strict";
import { Deadlines, type Expirable } from "./deadlines.ts";
import { TimeoutError } from "./errors.ts";

function item(name: string, deadlineAt: number, log: string[]): Expirable {
  return {
    deadlineAt,
    expire(reason?: TimeoutError) {
      log.push(reason ? `${name}: ${reason.message}` : name);
    },
  };
}

Deno.test("Deadlines expires only what is watched and past its deadline", () => {
  let now = 0;
  const log: string[] = [];
  const deadlines = new Deadlines({ now: () => now });
  try {
    const items = [10, 20, 30, 40, 50].map((at, i) => item(`i${i}`, at, log));
    for (const it of items) deadlines.watch(it, 100);
    deadlines.watch(items[0]!, 100); // watching twice watches once
    assert.equal(deadlines.size, 5);
    deadlines.unwatch(items[1]!);
    deadlines.unwatch(items[1]!); // unwatching twice is harmless
    deadlines.unwatch(items[4]!);
    assert.equal(deadlines.size, 3);
    now = 35;
    deadlines.check();
    assert.deepEqual(log.sort(), ["i0", "i2"]);
    assert.equal(deadlines.size, 1);
    deadlines.unwatch(items[0]!); // already expired: nothing happens
    assert.equal(deadlines.size, 1);
    deadlines.watch(items[1]!, 100);
    deadlines.expireAll(new TimeoutError("stopping"));
    assert.deepEqual(log.slice(2).sort(), ["i1: stopping", "i3: stopping"]);
    assert.equal(deadlines.size, 0);
    now = 1000;
    deadlines.check();
    assert.equal(log.length, 4);
  } finally {
    deadlines.stop();
  }
});

Deno.test("Deadlines lets an expiring item unwatch others", () => {
  let now = 0;
  const log: string[] = [];
  const deadlines = new Deadlines({ now: () => now });
  try {
    const b = item("b", 10, log);
    const a: Expirable = {
      deadlineAt: 10,
      expire() {
        log.push("a");
        deadlines.unwatch(b);
      },
    };
    deadlines.watch(a, 100);
    deadlines.watch(b, 100);
    now = 20;
    deadlines.check();
    assert.equal(log.length, 1);
    assert.equal(deadlines.size, 0);
  } finally {
    deadlines.stop();
  }
});

Deno.test("Deadlines gives one arrival time per synchronous run, and a new one after its microtasks", async () => {
  let reads = 0;
  const deadlines = new Deadlines({ now: () => ++reads * 10 });
  const first = deadlines.arrivalTime();
  assert.equal(deadlines.arrivalTime(), first);
  assert.equal(reads, 1);
  await Promise.resolve();
  const next = deadlines.arrivalTime();
  assert.equal(reads, 2);
  assert.ok(next > first);
  // now() always reads the clock.
  assert.equal(deadlines.now(), 30);
  assert.equal(deadlines.now(), 40);
});

Deno.test("Deadlines does not mistake an item for a watched one by its slot alone", () => {
  const log: string[] = [];
  const deadlines = new Deadlines({ now: () => 100 });
  try {
    const watched = item("watched", 10, log);
    const stranger = item("stranger", 10, log);
    deadlines.watch(watched, 100);
    // A slot that points at another item, one out of range, and -1.
    for (const slot of [0, 5, -1]) {
      stranger.deadlineSlot = slot;
      deadlines.unwatch(stranger);
      assert.equal(deadlines.size, 1);
    }
    deadlines.watch(stranger, 100);
    assert.equal(deadlines.size, 2);
    deadlines.check();
    assert.deepEqual(log.sort(), ["stranger", "watched"]);
  } finally {
    deadlines.stop();
  }
});
