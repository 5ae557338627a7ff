import assert from "node:assert/strict";
import {
  BackendError,
  BackendUnavailableError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import { createLogger } from "../log.ts";
import { startFakeHttpServer } from "../testing/fake_http.ts";
import { closedPortUrl } from "../testing/ports.ts";
import { createHttpClient, type HttpClientOptions } from "./http.ts";
import { deadline } from "../async.ts";

/** A sleep that records the delays and returns at once. */
function instantSleep(delays: number[]) {
  return (ms: number, signal: AbortSignal) => {
    signal.throwIfAborted();
    delays.push(ms);
    return Promise.resolve();
  };
}

function client(url: string, options: Partial<HttpClientOptions> = {}, delays: number[] = []) {
  return createHttpClient("demo", { baseUrl: url, sleep: instantSleep(delays), ...options });
}

Deno.test("HttpClient.json() sends JSON and parses the answer", async () => {
  await using fake = startFakeHttpServer((req) => Response.json({ got: req.json, path: req.path }));
  const http = client(`${fake.url}/base/`);
  const answer = await http.json("/echo", { json: { a: 1 } });
  assert.deepEqual(answer, { got: { a: 1 }, path: "/base/echo" });
  assert.equal(fake.requests[0]?.method, "POST");
  assert.equal(fake.requests[0]?.headers.get("content-type"), "application/json");
  assert.equal(http.baseUrl, `${fake.url}/base`);
});

Deno.test("HttpClient.json() does not retry a 500 and reports a BackendError with an excerpt", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(500, { body: JSON.stringify({ detail: "CUDA out of\nmemory" }) });
  const delays: number[] = [];
  const error = await client(fake.url, {}, delays).json("/x", { idempotent: true }).catch((e) => e);
  assert.ok(error instanceof BackendError && !(error instanceof InvalidResponseError));
  assert.equal(error.status, 500);
  assert.equal(error.excerpt, "CUDA out of memory");
  assert.equal(error.message, 'Backend "demo" failed with status 500: CUDA out of memory');
  assert.equal(error.retryable, false);
  assert.equal(fake.requests.length, 1);
  assert.deepEqual(delays, []);
});

Deno.test("HttpClient.json() does not retry a 400", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(400, { body: "bad request: field x", headers: { "content-type": "text/plain" } });
  const error = await client(fake.url).json("/x", { method: "GET" }).catch((e) => e);
  assert.ok(error instanceof BackendError);
  assert.equal(error.status, 400);
  assert.equal(error.excerpt, "bad request: field x");
  assert.equal(fake.requests.length, 1);
});

Deno.test("HttpClient.json() retries a 503 of an idempotent call with growing jittered delays", async () => {
  await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
  fake.failNext(503, { times: 2 });
  const delays: number[] = [];
  const lines: string[] = [];
  const http = client(fake.url, {
    retries: 2,
    retryDelayMs: 100,
    random: () => 0.5,
    logger: createLogger({ service: "t", write: (l) => lines.push(l) }),
  }, delays);
  assert.deepEqual(await http.json("/x", { json: {}, idempotent: true }), { ok: true });
  assert.equal(fake.requests.length, 3);
  assert.deepEqual(delays, [75, 150]);
  assert.equal(lines.length, 2);
  assert.equal(JSON.parse(lines[0]!).msg, "Retrying backend call");
  assert.equal(JSON.parse(lines[1]!).attempt, 2);
});

Deno.test("HttpClient retry delays stay within the jitter bounds and the cap", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  const max = [100, 200, 300, 300];
  for (const value of [0, 0.999]) {
    fake.failNext(502, { times: 4 });
    const delays: number[] = [];
    const options = { retries: 4, retryDelayMs: 100, maxRetryDelayMs: 300, random: () => value };
    await client(fake.url, options, delays).json("/x");
    assert.equal(delays.length, 4);
    delays.forEach((d, i) => assert.ok(d >= max[i]! / 2 && d <= max[i]!, `${d} for retry ${i}`));
  }
});

Deno.test("HttpClient gives up after its retries with BackendUnavailableError", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(504, { times: 10 });
  const error = await client(fake.url, { retries: 2 }).json("/x").catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError);
  assert.equal(error.message, 'Cannot reach backend "demo": the backend answered 504');
  assert.ok(error.retryable);
  assert.equal(fake.requests.length, 3);
});

Deno.test("HttpClient never retries a call that is not idempotent", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(503, { times: 3 });
  const error = await client(fake.url).json("/x", { json: {} }).catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError);
  assert.equal(fake.requests.length, 1);
});

Deno.test("HttpClient waits as long as Retry-After says, and not at all when it is too long", async () => {
  await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
  fake.failNext(429, { headers: { "retry-after": "2" } });
  const delays: number[] = [];
  await client(fake.url, {}, delays).json("/x");
  assert.deepEqual(delays, [2000]);

  fake.failNext(429, { headers: { "retry-after": "120" } });
  const later: number[] = [];
  const error = await client(fake.url, {}, later).json("/x").catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError);
  assert.deepEqual(later, []);

  const date = new Date(Date.now() + 60_000).toUTCString();
  fake.failNext(503, { headers: { "retry-after": date } });
  const dated: number[] = [];
  await client(fake.url, { maxRetryDelayMs: 120_000, timeoutMs: 0 }, dated).json("/x");
  assert.ok(dated[0]! > 50_000 && dated[0]! <= 60_000, String(dated[0]));
});

Deno.test("HttpClient never waits into its timeout: a retry that would end after it fails at once", async () => {
  await using fake = startFakeHttpServer(() => Response.json({ ok: true }));
  fake.failNext(503, { headers: { "retry-after": "20" } });
  const delays: number[] = [];
  const error = await client(fake.url, { maxRetryDelayMs: 60_000, timeoutMs: 10_000 }, delays)
    .json("/x").catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError, String(error));
  assert.equal(error.message, 'Cannot reach backend "demo": the backend answered 503');
  assert.deepEqual(delays, []);
  assert.equal(fake.requests.length, 1);
});

Deno.test("HttpClient retries a refused connection, then reports it without the URL", async () => {
  const url = closedPortUrl();
  const delays: number[] = [];
  const error = await client(url, { retries: 1 }, delays).json("/secret-path?token=abc")
    .catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError);
  assert.equal(error.message, 'Cannot reach backend "demo": connection refused');
  assert.equal(delays.length, 1);
});

Deno.test("HttpClient times out a call the backend never answers, and closes the request", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.hangNext();
  const call = client(fake.url, { timeoutMs: 200 }).json("/slow");
  const request = await deadline(fake.nextRequest(), 10_000, { what: "the request" });
  const error = await call.catch((e) => e);
  assert.ok(error instanceof TimeoutError);
  assert.equal(error.message, 'Backend "demo" did not answer within 200 ms');
  await deadline(request.disconnected, 10_000, { what: "the client to close the request" });
});

Deno.test("HttpClient times out a backend that never sends its response head", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  const late = Promise.withResolvers<Response>();
  fake.override(() => late.promise);
  const error = await client(fake.url, { timeoutMs: 100 }).json("/x").catch((e) => e);
  assert.ok(error instanceof TimeoutError);
  late.resolve(new Response("too late"));
});

Deno.test("HttpClient rejects with the caller's reason when the caller aborts, and closes the request", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.hangNext();
  const controller = new AbortController();
  const call = client(fake.url, { timeoutMs: 60_000 }).json("/slow", { signal: controller.signal });
  const request = await deadline(fake.nextRequest(), 10_000, { what: "the request" });
  const reason = new Error("user went away");
  controller.abort(reason);
  assert.equal(await call.catch((e) => e), reason);
  await deadline(request.disconnected, 10_000, { what: "the client to close the request" });
});

Deno.test("HttpClient lets the caller's abort win over its own timeout and skips the request", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  const reason = new Error("already gone");
  const error = await client(fake.url, { timeoutMs: 1 })
    .json("/x", { signal: AbortSignal.abort(reason) })
    .catch((e) => e);
  assert.equal(error, reason);
  assert.equal(fake.requests.length, 0);
});

Deno.test("HttpClient stops retrying when the caller aborts during the backoff", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(503, { times: 5 });
  const controller = new AbortController();
  const reason = new Error("stop");
  const http = createHttpClient("demo", {
    baseUrl: fake.url,
    sleep: (_ms, signal) => {
      controller.abort(reason);
      return Promise.reject(signal.reason);
    },
  });
  assert.equal(await http.json("/x", { signal: controller.signal }).catch((e) => e), reason);
  assert.equal(fake.requests.length, 1);
});

Deno.test("HttpClient.json() reports a body that is not JSON as InvalidResponseError", async () => {
  await using fake = startFakeHttpServer(() => new Response("{not json"));
  const error = await client(fake.url).json("/x").catch((e) => e);
  assert.ok(error instanceof InvalidResponseError);
  assert.equal(error.message, 'Backend "demo" failed: invalid response: the body is not JSON');
});

Deno.test("HttpClient bounds the body size, declared or streamed", async () => {
  await using fake = startFakeHttpServer((req) => {
    if (req.path === "/declared") return new Response(new Uint8Array(1000));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // Endless unless the client stops reading.
        sent += 100;
        controller.enqueue(new Uint8Array(100));
      },
    });
    return new Response(body);
  });
  const http = client(fake.url, { maxBodyBytes: 500 });
  for (const path of ["/declared", "/streamed"]) {
    const error = await http.bytes(path).catch((e) => e);
    assert.ok(error instanceof InvalidResponseError, path);
    assert.match(error.message, /larger than 500 bytes/);
  }
  const { body } = await http.bytes("/declared", { maxBodyBytes: 1000 });
  assert.equal(body.length, 1000);
});

Deno.test("HttpClient turns credentials in the base URL into a Basic header and never shows them", async () => {
  await using fake = startFakeHttpServer((req) =>
    Response.json(
      { detail: `denied for ${req.headers.get("authorization")}` },
      { status: 403 },
    )
  );
  const base = fake.url.replace("http://", "http://alice:s3cret-pass@");
  const http = client(base);
  assert.equal(http.baseUrl, fake.url);
  const error = await http.json("/x").catch((e) => e);
  assert.equal(
    fake.requests[0]?.headers.get("authorization"),
    `Basic ${btoa("alice:s3cret-pass")}`,
  );
  assert.ok(error instanceof BackendError);
  assert.equal(error.excerpt, "denied for [redacted]");
  assert.doesNotMatch(JSON.stringify([error.message, error.excerpt]), /s3cret|YWxpY2/);
});

Deno.test("HttpClient scrubs configured header values from excerpts and logs", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(503);
  fake.failNext(418, {
    body: "token tok-123456 is not welcome",
    headers: { "content-type": "text/plain" },
  });
  const lines: string[] = [];
  const http = client(fake.url, {
    headers: { authorization: "Bearer tok-123456" },
    logger: createLogger({ service: "t", write: (l) => lines.push(l) }),
  });
  const error = await http.json("/x").catch((e) => e);
  assert.equal(fake.requests[0]?.headers.get("authorization"), "Bearer tok-123456");
  assert.ok(error instanceof BackendError);
  assert.equal(error.excerpt, "token [redacted] is not welcome");
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines.join("\n") + error.message, /tok-123456/);
});

Deno.test("HttpClient.stream() yields chunks as they arrive", async () => {
  const release = Promise.withResolvers<void>();
  await using fake = startFakeHttpServer(() => {
    let step = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (step === 1) await release.promise;
          if (step === 2) return controller.close();
          controller.enqueue(new Uint8Array([step++]));
        },
      }),
    );
  });
  await using stream = await client(fake.url).stream("/s");
  assert.equal(stream.status, 200);
  const first = await stream.next();
  assert.deepEqual(first.value, new Uint8Array([0]));
  release.resolve();
  assert.deepEqual((await stream.next()).value, new Uint8Array([1]));
  assert.equal((await stream.next()).done, true);
});

Deno.test("HttpClient.stream() times out when no chunk comes for timeoutMs", async () => {
  await using fake = startFakeHttpServer((_req) =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array([1]));
        },
      }),
    )
  );
  const stream = await client(fake.url, { timeoutMs: 200 }).stream("/s");
  assert.deepEqual((await stream.next()).value, new Uint8Array([1]));
  const error = await stream.next().catch((e) => e);
  assert.ok(error instanceof TimeoutError, String(error));
  assert.equal((await stream.next()).done, true);
});

Deno.test("HttpClient.stream() reports a connection cut mid-body as BackendUnavailableError", async () => {
  await using fake = startFakeHttpServer(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array([1]));
        },
        pull(controller) {
          const cut = new Error("Fake backend cut the connection on purpose");
          cut.stack = cut.message;
          controller.error(cut);
        },
      }),
    )
  );
  const chunks: Uint8Array[] = [];
  const error = await (async () => {
    for await (const chunk of await client(fake.url).stream("/s")) chunks.push(chunk);
  })().catch((e) => e);
  assert.ok(error instanceof BackendUnavailableError, String(error));
  assert.match(error.message, /connection broke during the response/);
  assert.equal(chunks.length, 1);
});

Deno.test("HttpClient.stream() closes the request when the loop breaks early", async () => {
  const cancelled = Promise.withResolvers<void>();
  await using fake = startFakeHttpServer(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(10));
        },
        cancel() {
          cancelled.resolve();
        },
      }),
    )
  );
  const chunks: Uint8Array[] = [];
  for await (const chunk of await client(fake.url).stream("/s")) {
    chunks.push(chunk);
    break;
  }
  assert.equal(chunks.length, 1);
  // The backend's body is cancelled only when the client closes the request.
  await deadline(cancelled.promise, 10_000, { what: "the backend's body to be cancelled" });
});

Deno.test("HttpClient.stream() closes the request when disposed before iteration", async () => {
  const cancelled = Promise.withResolvers<void>();
  await using fake = startFakeHttpServer(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(10));
        },
        cancel() {
          cancelled.resolve();
        },
      }),
    )
  );
  let status = 0;
  {
    await using stream = await client(fake.url).stream("/s");
    status = stream.status;
  }
  assert.equal(status, 200);
  // The backend's body is cancelled only when the client closes the request.
  await deadline(cancelled.promise, 10_000, { what: "the backend's body to be cancelled" });
});

Deno.test("HttpClient.stream() retries before the head arrives but reports errors after", async () => {
  await using fake = startFakeHttpServer(() => new Response("ok"));
  fake.failNext(503);
  const delays: number[] = [];
  const stream = await client(fake.url, {}, delays).stream("/s", { idempotent: true });
  assert.equal(new TextDecoder().decode((await stream.next()).value), "ok");
  assert.equal(delays.length, 1);
  fake.failNext(500, { body: '{"message":"boom"}' });
  const error = await client(fake.url).stream("/s").catch((e) => e);
  assert.ok(error instanceof BackendError);
  assert.equal(error.excerpt, "boom");
});

Deno.test("HttpClient uses the injected fetch", async () => {
  const urls: string[] = [];
  const http = createHttpClient("demo", {
    baseUrl: "http://backend.invalid:1234/",
    fetch: (input) => {
      urls.push(String(input));
      return Promise.resolve(Response.json([1, 2]));
    },
  });
  assert.deepEqual(await http.json("/v1/x"), [1, 2]);
  assert.deepEqual(urls, ["http://backend.invalid:1234/v1/x"]);
});

Deno.test("HttpClient redacts bearer tokens it was not told about, but not ordinary words", async () => {
  await using fake = startFakeHttpServer(() => Response.json({}));
  fake.failNext(401, {
    body: JSON.stringify({
      error: { message: "Bearer eyJhbGciOiJIUzI1NiJ9.x is expired; basic checks ran" },
    }),
  });
  const error = await client(fake.url).json("/x").catch((e) => e);
  assert.ok(error instanceof BackendError);
  assert.equal(error.excerpt, "Bearer [redacted] is expired; basic checks ran");
});

Deno.test("HttpClient.stream() stops at the caller's abort even after a garbage collection", async () => {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--v8-flags=--expose-gc",
      new URL("testdata/abort_after_gc.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(success);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)), {
    read: 3,
    outcome: "aborted: enough",
  });
});
