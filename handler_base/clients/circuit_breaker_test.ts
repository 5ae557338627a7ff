import assert from "node:assert/strict";
import { BackendUnavailableError } from "../errors.ts";
import { startFakeHttpServer } from "../testing/fake_http.ts";
import { closedPortUrl } from "../testing/ports.ts";
import { CircuitBreaker, CircuitBreakers } from "./circuit_breaker.ts";
import { createHttpClient } from "./http.ts";

function clock() {
  const time = { now: 0 };
  return { time, now: () => time.now };
}

Deno.test("CircuitBreaker opens after consecutive connection failures, not after scattered ones", () => {
  const { now } = clock();
  const breaker = new CircuitBreaker("tts", { failureThreshold: 3, openMs: 1000, now });
  breaker.tryAcquire()!.failed("connection refused");
  breaker.tryAcquire()!.failed("connection refused");
  breaker.tryAcquire()!.succeeded();
  breaker.tryAcquire()!.failed("connection refused");
  breaker.tryAcquire()!.failed("connection refused");
  assert.equal(breaker.state, "closed");
  breaker.tryAcquire()!.failed("connection reset");
  assert.equal(breaker.state, "open");
  assert.equal(breaker.tryAcquire(), undefined);
  assert.deepEqual(breaker.snapshot(), {
    state: "open",
    consecutive_failures: 3,
    last_failure: "connection reset",
    opened_count: 1,
    retry_in_ms: 1000,
  });
});

Deno.test("CircuitBreaker lets one probe through when half-open; its success closes the circuit", () => {
  const { time, now } = clock();
  const breaker = new CircuitBreaker("tts", { failureThreshold: 1, openMs: 1000, now });
  breaker.tryAcquire()!.failed("connection refused");
  time.now = 999;
  assert.equal(breaker.tryAcquire(), undefined);
  assert.equal(breaker.snapshot().retry_in_ms, 1);
  time.now = 1000;
  assert.equal(breaker.state, "half-open");
  const probe = breaker.tryAcquire();
  assert.ok(probe);
  assert.equal(breaker.tryAcquire(), undefined, "a second caller waits for the probe");
  probe.succeeded();
  probe.failed("late"); // settled once: ignored
  assert.equal(breaker.state, "closed");
  assert.equal(breaker.snapshot().consecutive_failures, 0);
  assert.ok(breaker.tryAcquire());
});

Deno.test("CircuitBreaker opens again for a whole period when the probe fails", () => {
  const { time, now } = clock();
  const breaker = new CircuitBreaker("tts", { failureThreshold: 1, openMs: 1000, now });
  breaker.tryAcquire()!.failed("connection refused");
  time.now = 1500;
  breaker.tryAcquire()!.failed("connection refused");
  assert.equal(breaker.state, "open");
  assert.equal(breaker.snapshot().retry_in_ms, 1000);
  assert.equal(breaker.snapshot().opened_count, 2);
  time.now = 2500;
  assert.equal(breaker.state, "half-open");
});

Deno.test("CircuitBreaker lets the next caller probe when a probe ends without an answer", () => {
  const { time, now } = clock();
  const breaker = new CircuitBreaker("tts", { failureThreshold: 1, openMs: 10, now });
  breaker.tryAcquire()!.failed("connection refused");
  time.now = 10;
  breaker.tryAcquire()!.released();
  assert.equal(breaker.state, "half-open");
  assert.ok(breaker.tryAcquire());
});

Deno.test("CircuitBreaker refuses a bad threshold or open time", () => {
  assert.throws(() => new CircuitBreaker("x", { failureThreshold: 0 }), RangeError);
  assert.throws(() => new CircuitBreaker("x", { openMs: -1 }), RangeError);
});

Deno.test("CircuitBreakers gives one breaker per backend and snapshots them all", () => {
  const breakers = new CircuitBreakers({ failureThreshold: 1 });
  assert.equal(breakers.get("tts"), breakers.get("tts"));
  breakers.get("llm").tryAcquire()!.failed("connection refused");
  assert.deepEqual(Object.keys(breakers.snapshot()), ["tts", "llm"]);
  assert.equal(breakers.snapshot().llm?.state, "open");
  assert.equal(breakers.size, 2);
});

Deno.test("HttpClient fails fast without touching the network while the circuit is open", async () => {
  const { time, now } = clock();
  const url = closedPortUrl();
  let fetches = 0;
  const counting: typeof fetch = (input, init) => {
    fetches++;
    return fetch(input, init);
  };
  const breakers = new CircuitBreakers({ failureThreshold: 3, openMs: 5000, now });
  const delays: number[] = [];
  const http = createHttpClient("tts", {
    baseUrl: url,
    fetch: counting,
    breakers,
    retries: 5,
    sleep: (ms) => (delays.push(ms), Promise.resolve()),
  });
  assert.equal(http.circuitBreaker, breakers.get("tts"));
  // The first call retries until the third refused connection opens the circuit, then stops.
  const first = await http.json("/x").catch((e) => e);
  assert.ok(first instanceof BackendUnavailableError);
  assert.equal(first.message, 'Cannot reach backend "tts": connection refused');
  assert.equal(fetches, 3);
  assert.equal(delays.length, 2);
  // While open: refused at once, no connection, no backoff.
  for (let i = 0; i < 10; i++) {
    const error = await http.json("/x").catch((e) => e);
    assert.ok(error instanceof BackendUnavailableError);
    assert.equal(
      error.message,
      'Cannot reach backend "tts": the circuit is open after 3 failed connections ' +
        "(connection refused), next try in 5000 ms",
    );
  }
  assert.equal(fetches, 3);
  assert.equal(delays.length, 2);
  // Half-open: the probe connects (still refused), so the circuit opens again without a retry.
  time.now = 5000;
  await http.json("/x").catch((e) => e);
  assert.equal(fetches, 4);
  assert.equal(breakers.get("tts").state, "open");
});

Deno.test("HttpClient closes the circuit when the backend answers the probe", async () => {
  await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
  const { time, now } = clock();
  let down = true;
  const flaky: typeof fetch = (input, init) =>
    down ? Promise.reject(new TypeError("connection refused")) : fetch(input, init);
  const breaker = new CircuitBreaker("demo", { failureThreshold: 1, openMs: 100, now });
  const http = createHttpClient("demo", {
    baseUrl: fake.url,
    fetch: flaky,
    circuitBreaker: breaker,
  });
  await assert.rejects(http.json("/x"), BackendUnavailableError);
  assert.equal(breaker.state, "open");
  down = false;
  await assert.rejects(http.json("/x"), /the circuit is open/);
  time.now = 100;
  assert.deepEqual(await http.json("/x"), { ok: true });
  assert.equal(breaker.state, "closed");
  assert.equal(fake.requests.length, 1);
});

Deno.test("HttpClient counts an answer of any status as reachable", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  const breaker = new CircuitBreaker("demo", { failureThreshold: 1 });
  const http = createHttpClient("demo", { baseUrl: fake.url, circuitBreaker: breaker, retries: 0 });
  fake.failNext(503, { times: 3 });
  for (let i = 0; i < 3; i++) await assert.rejects(http.json("/x"), BackendUnavailableError);
  assert.equal(breaker.state, "closed");
  const none = createHttpClient("demo", { baseUrl: fake.url, circuitBreaker: false });
  assert.equal(none.circuitBreaker, undefined);
});
