import assert from "node:assert/strict";
import { settlesWithin } from "./async.ts";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { HandlerError, InvalidArgumentError, RemoteError } from "./errors.ts";
import { createService, defineEndpoint, type Endpoint } from "./handler.ts";
import { createLogger, type Logger } from "./log.ts";
import {
  decode,
  encode,
  ErrorResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
} from "./messages.ts";
import { connectNats, request } from "./natsutil.ts";
import { eventually } from "./testing/eventually.ts";
import { startNatsServer } from "./testing/nats_server.ts";

const quiet: Logger = createLogger({ service: "test", level: "error", write: () => {} });

/** An endpoint that answers `TTSStatus{message: text}` after running `work`. */
function echoEndpoint(
  options: {
    subject?: string;
    concurrency?: number;
    maxPending?: number;
    timeoutMs?: number;
    work?: (text: string, signal: AbortSignal) => Promise<void>;
  } = {},
): Endpoint {
  return defineEndpoint({
    subject: options.subject ?? "test.echo",
    request: TTSRequestSchema,
    response: TTSStatusSchema,
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    ...(options.maxPending ? { maxPending: options.maxPending } : {}),
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    async handle(req, ctx) {
      if (req.text === "throw-typed") throw new InvalidArgumentError("Cannot echo: bad text");
      if (req.text === "throw-plain") throw new Error("secret=hunter2 went wrong");
      await options.work?.(req.text, ctx.signal);
      return { status: "ok", message: req.text, sessionId: ctx.tokens.at(-1) ?? "" };
    },
  });
}

async function setup(endpoints: Endpoint[], name = "echo-service") {
  const server = await startNatsServer({ jetstream: false });
  const serviceConn = await connectNats({ servers: server.url, name });
  const client = await connectNats({ servers: server.url, name: "client" });
  const service = createService(serviceConn, { name, endpoints, logger: quiet });
  await service.start();
  return {
    server,
    service,
    client,
    echo: (text: string, subject = "test.echo") =>
      request(client, subject, TTSRequestSchema, { text }, TTSStatusSchema, { timeout: 5000 }),
    async [Symbol.asyncDispose]() {
      await service.stop({ graceMs: 1000 });
      await serviceConn.close();
      await client.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

/** A promise the test opens; `wait()` is its bounded wait (a handler that never starts fails). */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => open = resolve);
  return {
    open,
    opened,
    async wait(timeoutMs = 10_000) {
      if (!(await settlesWithin(opened, timeoutMs))) throw new Error("Gate not opened in time");
    },
  };
}

Deno.test("createService() answers a request through a typed handler", async () => {
  await using t = await setup([echoEndpoint({ subject: "test.echo.*" })]);
  const reply = await t.echo("hello", "test.echo.session-9");
  assert.equal(reply.message, "hello");
  assert.equal(reply.sessionId, "session-9");
  assert.equal(t.service.stats()[0]?.numRequests, 1);
});

Deno.test("two instances of one service share a queue group's load", async () => {
  await using t = await setup([echoEndpoint()]);
  const second = await connectNats({ servers: t.server.url, name: "second" });
  let handledBySecond = 0;
  const other = createService(second, {
    name: "echo-service",
    logger: quiet,
    endpoints: [
      echoEndpoint({
        work: () => {
          handledBySecond++;
          return Promise.resolve();
        },
      }),
    ],
  });
  await other.start();
  const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => t.echo(`m${i}`)));
  assert.deepEqual(replies.map((r) => r.message), Array.from({ length: 60 }, (_, i) => `m${i}`));
  const handledByFirst = t.service.stats()[0]!.numRequests;
  assert.equal(handledByFirst + handledBySecond, 60, "each request handled exactly once");
  assert.ok(handledByFirst > 0 && handledBySecond > 0, "both instances got work");
  await other.stop();
  await second.close();
});

Deno.test("a malformed payload is answered InvalidMessage and the service keeps serving", async () => {
  await using t = await setup([echoEndpoint()]);
  const raw = await t.client.request("test.echo", new Uint8Array([0xff, 0xff, 0x01]), {
    timeout: 5000,
  });
  assert.equal(raw.headers?.get("Msg-Type"), "messages.v1.ErrorResponse");
  const error = decode(ErrorResponseSchema, raw.data);
  assert.equal(error.error, true);
  assert.equal(error.type, "InvalidMessage");
  assert.match(error.message, /^Cannot decode messages\.v1\.TTSRequest/);
  assert.equal((await t.echo("still here")).message, "still here");
});

Deno.test("a message of the wrong type is answered InvalidMessage", async () => {
  await using t = await setup([echoEndpoint()]);
  const h = natsHeaders();
  h.set("Msg-Type", "messages.v1.ChatRequest");
  const raw = await t.client.request("test.echo", encode(TTSRequestSchema, { text: "x" }), {
    timeout: 5000,
    headers: h,
  });
  const error = decode(ErrorResponseSchema, raw.data);
  assert.equal(error.type, "InvalidMessage");
  assert.match(error.message, /Msg-Type header says messages\.v1\.ChatRequest/);
});

Deno.test("a handler's typed error becomes its ErrorResponse; others become Internal", async () => {
  await using t = await setup([echoEndpoint()]);
  await assert.rejects(
    t.echo("throw-typed"),
    (e: unknown) =>
      e instanceof RemoteError && e.type === "InvalidArgument" &&
      e.message === "Cannot echo: bad text",
  );
  await assert.rejects(
    t.echo("throw-plain"),
    (e: unknown) =>
      e instanceof RemoteError && e.type === "Internal" && e.message === "Internal error",
  );
  const [stats] = t.service.stats();
  assert.equal(stats?.numErrors, 2);
  assert.equal(stats?.lastError, "Internal: Internal error");
});

Deno.test("a handler past its deadline is answered Timeout; other requests are unaffected", async () => {
  let aborted = false;
  await using t = await setup([
    echoEndpoint({
      timeoutMs: 200,
      work: async (text, signal) => {
        if (text !== "slow") return;
        await new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => {
            aborted = true;
            resolve();
          }, { once: true });
        });
      },
    }),
  ]);
  const slow = t.echo("slow");
  const fast = await Promise.all([t.echo("a"), t.echo("b")]);
  assert.deepEqual(fast.map((r) => r.message), ["a", "b"]);
  await assert.rejects(
    slow,
    (e: unknown) => e instanceof RemoteError && e.type === "Timeout" && /deadline/.test(e.message),
  );
  assert.ok(aborted, "the handler's signal fired");
});

Deno.test("the concurrency limit holds under a burst of 10x the limit and nothing is lost", async () => {
  const limit = 4;
  let running = 0;
  let maxRunning = 0;
  await using t = await setup([
    echoEndpoint({
      concurrency: limit,
      work: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
      },
    }),
  ]);
  const burst = Array.from({ length: limit * 10 }, (_, i) => t.echo(`b${i}`));
  const replies = await Promise.all(burst);
  assert.equal(replies.length, limit * 10);
  assert.deepEqual(
    new Set(replies.map((r) => r.message)),
    new Set(Array.from({ length: limit * 10 }, (_, i) => `b${i}`)),
  );
  assert.equal(maxRunning, limit);
});

Deno.test("beyond its pending bound an endpoint answers Overloaded instead of buffering", async () => {
  const release = gate();
  let started = 0;
  const allStarted = gate();
  await using t = await setup([
    echoEndpoint({
      concurrency: 2,
      maxPending: 3,
      work: async () => {
        if (++started === 2) allStarted.open();
        await release.opened;
      },
    }),
  ]);
  const accepted = [t.echo("1"), t.echo("2")];
  await allStarted.wait();
  const waiting = [t.echo("3"), t.echo("4"), t.echo("5")];
  await t.client.flush();
  await assert.rejects(
    t.echo("6"),
    (e: unknown) => e instanceof RemoteError && e.type === "Overloaded",
  );
  release.open();
  const replies = await Promise.all([...accepted, ...waiting]);
  assert.deepEqual(replies.map((r) => r.message), ["1", "2", "3", "4", "5"]);
});

Deno.test("a handler that ignores its signal keeps its slot until it returns", async () => {
  const release = gate();
  let running = 0;
  let maxRunning = 0;
  await using t = await setup([
    echoEndpoint({
      concurrency: 1,
      timeoutMs: 100,
      work: async (text) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (text === "stubborn") await release.opened;
        running--;
      },
    }),
  ]);
  const stubborn = t.echo("stubborn");
  await assert.rejects(stubborn, (e: unknown) => e instanceof RemoteError && e.type === "Timeout");
  const next = t.echo("next");
  // "next" waits for the slot the stubborn handler still holds.
  await eventually(() => Promise.resolve(t.service.stats()[0]?.pending === 1), { intervalMs: 5 });
  assert.equal(running, 1);
  release.open();
  assert.equal((await next).message, "next");
  assert.equal(maxRunning, 1);
});

Deno.test("stop() stops taking messages and waits for in-flight handlers", async () => {
  const release = gate();
  const started = gate();
  await using t = await setup([
    echoEndpoint({
      work: async (text) => {
        if (text !== "inflight") return;
        started.open();
        await release.opened;
      },
    }),
  ]);
  const inflight = t.echo("inflight");
  await started.wait();
  const stopping = t.service.stop({ graceMs: 5000 });
  assert.equal(t.service.ready, false);
  release.open();
  await stopping;
  assert.equal((await inflight).message, "inflight");
  await assert.rejects(
    t.echo("after"),
    (e: unknown) => e instanceof HandlerError && e.type === "BackendUnavailable",
  );
});

Deno.test("stop() aborts handlers that outlive the grace period", async () => {
  const started = gate();
  let sawAbort = false;
  await using t = await setup([
    echoEndpoint({
      work: async (_text, signal) => {
        started.open();
        await new Promise<void>((resolve) =>
          signal.addEventListener("abort", () => {
            sawAbort = true;
            resolve();
          }, { once: true })
        );
      },
    }),
  ]);
  const pending = t.echo("forever");
  await started.wait();
  await t.service.stop({ graceMs: 100 });
  assert.ok(sawAbort);
  await assert.rejects(pending, (e: unknown) => e instanceof RemoteError && e.type === "Timeout");
});

Deno.test("ctx.addLogFields() puts a request id on the handler's lines and the runtime's failure line", async () => {
  const server = await startNatsServer({ jetstream: false });
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    service: "logging",
    level: "info",
    write: (line) => lines.push(JSON.parse(line)),
  });
  const serviceConn = await connectNats({ servers: server.url, name: "logging" });
  const client = await connectNats({ servers: server.url, name: "client" });
  const service = createService(serviceConn, {
    name: "logging",
    logger,
    endpoints: [defineEndpoint({
      subject: "test.log",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle(req, ctx) {
        ctx.addLogFields({ request_id: req.speaker });
        ctx.log.info("Working");
        throw new InvalidArgumentError("Cannot work: no reason");
      },
    })],
  });
  try {
    await service.start();
    await assert.rejects(
      request(client, "test.log", TTSRequestSchema, { speaker: "r-77" }, TTSStatusSchema, {
        timeout: 5000,
      }),
      RemoteError,
    );
    const working = lines.find((l) => l.msg === "Working");
    const failure = lines.find((l) => l.msg === "Cannot handle message");
    assert.equal(working?.request_id, "r-77");
    assert.equal(working?.subject, "test.log");
    assert.equal(failure?.request_id, "r-77");
    assert.equal(failure?.error_type, "InvalidArgument");
  } finally {
    await service.stop();
    await serviceConn.close();
    await client.close();
    await server[Symbol.asyncDispose]();
  }
});

Deno.test("with telemetry off, what a handler publishes carries the caller's trace context on", async () => {
  const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  await using t = await setup([
    defineEndpoint({
      subject: "test.relay",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle(req, ctx) {
        ctx.publish("test.relayed", TTSStatusSchema, { status: req.text });
        return Promise.resolve({ status: "ok" });
      },
    }),
  ]);
  const relayed = t.client.subscribe("test.relayed", { max: 2 });
  const h = natsHeaders();
  h.set("traceparent", traceparent);
  await t.client.request("test.relay", encode(TTSRequestSchema, { text: "traced" }), {
    timeout: 5000,
    headers: h,
  });
  await t.client.request("test.relay", encode(TTSRequestSchema, { text: "untraced" }), {
    timeout: 5000,
  });
  const seen: Array<[string, string | undefined]> = [];
  for await (const msg of relayed) {
    seen.push([decode(TTSStatusSchema, msg.data).status, msg.headers?.get("traceparent")]);
  }
  assert.deepEqual(seen, [["traced", traceparent], ["untraced", ""]]);
});

Deno.test("ready only once the server has the subscriptions (start() has flushed)", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "ready-test" });
  try {
    const service = createService(nc, {
      name: "ready",
      endpoints: [echoEndpoint()],
      logger: quiet,
    });
    const starting = service.start();
    // The SUB is written, the server's PONG not read yet: a request sent now could go unanswered.
    assert.equal(service.ready, false);
    await starting;
    assert.equal(service.ready, true);
    await service.stop({ graceMs: 1000 });
  } finally {
    await nc.close();
  }
});
