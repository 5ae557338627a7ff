import assert from "node:assert/strict";
import {
  dueBy,
  gcPause,
  overheads,
  parseLoadReport,
  percentile,
  scheduledAt,
  seqOfText,
  summarize,
} from "./stats.ts";

Deno.test("the schedule sends request i at start + i / rate, whatever the replies do", () => {
  assert.equal(scheduledAt(0, 0, 500), 0);
  assert.equal(scheduledAt(10, 1, 500), 12);
  assert.equal(scheduledAt(10, 500, 500), 1010);
  assert.equal(scheduledAt(0, 3, 1000), 3);
});

Deno.test("dueBy counts the requests due by a time, the one due exactly then included", () => {
  assert.equal(dueBy(100, 99.9, 500), 0);
  assert.equal(dueBy(100, 100, 500), 1);
  assert.equal(dueBy(100, 101.9, 500), 1);
  assert.equal(dueBy(100, 102, 500), 2);
  // A client that woke 20 ms late owes ten requests at once, not one.
  assert.equal(dueBy(100, 120, 500), 11);
  // Float steps: 0.1 s at 30/s is 3 requests after the first.
  assert.equal(dueBy(0, 100, 30), 4);
  for (let i = 0; i < 1000; i++) assert.equal(dueBy(7, scheduledAt(7, i, 333), 333), i + 1);
});

Deno.test("percentile takes the nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile(values, 0), 1);
  assert.equal(percentile([5], 99), 5);
  assert.equal(percentile([1, 2, 3], 50), 2);
  assert.throws(() => percentile([], 50), RangeError);
});

Deno.test("summarize sorts a copy and reports p50, p90, p99 and max", () => {
  const values = [9, 1, 8, 2, 7, 3, 6, 4, 5, 10];
  assert.deepEqual(summarize(values), { n: 10, p50: 5, p90: 9, p99: 10, max: 10 });
  assert.equal(values[0], 9);
  // One stall in a thousand is the max, not the p99.
  const tail = [...Array(999).fill(1), 50];
  assert.deepEqual([summarize(tail).p99, summarize(tail).max], [1, 50]);
});

Deno.test("parseLoadReport reads the client's lines, unanswered ones included", () => {
  const report = parseLoadReport(
    "0 0.0 12.5 800.0 0\n1 2000.0 3.0 -1 0\n2 4000.0 1.0 1500.5 1\ncpu_ms 12.0 wall_ms 6001.5\n",
  );
  assert.deepEqual(report.samples, [
    { seq: 0, schedMs: 0, lagMs: 0.0125, latencyMs: 0.8, error: false },
    { seq: 1, schedMs: 2, lagMs: 0.003, latencyMs: undefined, error: false },
    { seq: 2, schedMs: 4, lagMs: 0.001, latencyMs: 1.5005, error: true },
  ]);
  assert.deepEqual([report.cpuMs, report.wallMs], [12, 6001.5]);
  assert.throws(() => parseLoadReport("0 0 0 1 0\n"), /no cpu_ms line/);
});

Deno.test("overheads subtract the backend's time of the same request, answered ones only", () => {
  const samples = [
    { seq: 0, schedMs: 0, lagMs: 0, latencyMs: 5, error: false },
    { seq: 1, schedMs: 2, lagMs: 0, latencyMs: 9, error: false },
    { seq: 2, schedMs: 4, lagMs: 0, latencyMs: undefined, error: false },
    { seq: 3, schedMs: 6, lagMs: 0, latencyMs: 4, error: true },
    { seq: 4, schedMs: 8, lagMs: 0, latencyMs: 7, error: false },
  ];
  const backend = new Map([[0, 3], [1, 2.5], [2, 2], [3, 2]]);
  assert.deepEqual(overheads(samples, backend), [2, 6.5]);
});

Deno.test("seqOfText reads the ten digits the client wrote over the placeholder", () => {
  assert.equal(seqOfText("overhead 0000000042"), 42);
  assert.equal(seqOfText("overhead 0000012345"), 12345);
  assert.equal(seqOfText("no number"), undefined);
});

Deno.test("gcPause reads the main-thread pause of a --trace-gc line", () => {
  assert.equal(
    gcPause(
      "[30690:0x55b06da6a000]       44 ms: Scavenge 4.0 (4.8) -> 3.5 (5.5) MB, pooled: 0.0 MB, " +
        "3.45 / 0.00 ms (average mu = 1.000, current mu = 1.000) allocation failure; ",
    ),
    3.45,
  );
  assert.equal(
    gcPause(
      "[1:0x1]     5120 ms: Mark-Compact 40.1 (52.3) -> 30.2 (50.1) MB, pooled: 0 MB, " +
        "12.50 / 0.10 ms  (+ 3.2 ms in 12 steps since start of marking) finalize incremental marking",
    ),
    12.5,
  );
  assert.equal(gcPause('{"level":"info","msg":"Serving"}'), undefined);
});
