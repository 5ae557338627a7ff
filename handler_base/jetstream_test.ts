import assert from "node:assert/strict";
import { headers as natsHeaders, type Subscription } from "@nats-io/nats-core";
import { AckPolicy, jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { ConfigError, loadConfig } from "./config.ts";
import { BackendUnavailableError } from "./errors.ts";
import { createService, defineEndpoint, type Endpoint } from "./handler.ts";
import {
  consumeConfigSpec,
  consumeJetStream,
  type ConsumerState,
  consumeSettingsFromConfig,
  DEAD_LETTER_HEADERS,
  ensureStreams,
  type JetStreamConsumerOptions,
  publishDurable,
  type StreamDefinition,
  STREAMS,
  StreamSetupError,
} from "./jetstream.ts";
import { delay, settlesWithin } from "./async.ts";
import { createLogger, type Logger } from "./log.ts";
import {
  ChatRequestSchema,
  ChatResponseSchema,
  decode,
  encode,
  PipelineTriggerSchema,
  TTSRequestSchema,
  TTSStatusSchema,
} from "./messages.ts";
import { connectNats, type Msg, type NatsConnection, request } from "./natsutil.ts";
import { runService } from "./run.ts";
import { type NatsServer, startNatsServer } from "./testing/nats_server.ts";
import { eventually } from "./testing/eventually.ts";
import { startServiceProcess } from "./testing/service_process.ts";
import { permissions as jobsPermissions } from "./testdata/jetstream_service.ts";

const quiet: Logger = createLogger({ service: "test", level: "error", write: () => {} });

const TEST_STREAMS: Record<string, StreamDefinition> = {
  TEST_JOBS: {
    description: "Test jobs",
    subjects: ["test.jobs.>"],
    storage: "file",
    maxAgeMs: 3_600_000,
    replicas: 1,
  },
  DEAD_LETTERS: STREAMS.DEAD_LETTERS,
};

/** A server with the test streams, a client connection and its JetStream manager. */
async function setup(streams: Record<string, StreamDefinition> = TEST_STREAMS) {
  const server = await startNatsServer({ jetstream: true });
  const client = await connectNats({ servers: server.url, name: "client" });
  await ensureStreams(client, { streams });
  const jsm = await jetstream(client).jetstreamManager();
  return {
    server,
    client,
    jsm,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

/** Runs a service in JetStream mode on its own connection. */
async function startService(
  server: NatsServer,
  endpoints: Endpoint[],
  options: { concurrency?: number; jetstream?: JetStreamConsumerOptions; logger?: Logger } = {},
) {
  const nc = await connectNats({ servers: server.url, name: "jobs", reconnectTimeWaitMs: 100 });
  const service = createService(nc, {
    name: "jobs",
    endpoints,
    logger: options.logger ?? quiet,
    consumeMode: "jetstream",
    concurrency: options.concurrency ?? 8,
  });
  await service.start();
  const consumers = consumeJetStream(service, { ackWaitMs: 5000, ...options.jetstream });
  return {
    nc,
    service,
    consumers,
    async [Symbol.asyncDispose]() {
      await service.stop({ graceMs: 2000 });
      await nc.close();
    },
  };
}

/** An endpoint on `test.jobs.>` whose request text is a job id. */
function jobEndpoint(
  work: (id: string, attempt: number, nc: NatsConnection) => Promise<void>,
): Endpoint {
  return defineEndpoint({
    subject: "test.jobs.>",
    stream: "TEST_JOBS",
    request: TTSRequestSchema,
    handle: (req, ctx) => work(req.text, ctx.attempt, ctx.nc),
  });
}

/** Counts handled ids and resolves waits on the count. */
function tally() {
  const counts = new Map<string, number>();
  const waiters: Array<{ done: () => boolean; resolve: () => void }> = [];
  return {
    counts,
    record(id: string) {
      counts.set(id, (counts.get(id) ?? 0) + 1);
      for (const w of [...waiters]) {
        if (w.done()) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    /** Resolves once `done()` holds; rejects after `timeoutMs`. */
    until(done: () => boolean, timeoutMs = 20_000): Promise<void> {
      if (done()) return Promise.resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      return new Promise<void>((resolve, reject) => {
        const waiter = { done, resolve };
        waiters.push(waiter);
        timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`Not done within ${timeoutMs} ms: ${counts.size} ids seen`));
        }, timeoutMs);
      }).finally(() => clearTimeout(timer));
    },
  };
}

async function nothingPending(jsm: JetStreamManager, stream = "TEST_JOBS", durable = "jobs") {
  await eventually(async () => {
    const info = await jsm.consumers.info(stream, durable);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  });
}

async function publishJobs(nc: NatsConnection, ids: string[]): Promise<void> {
  const js = jetstream(nc);
  for (let i = 0; i < ids.length; i += 100) {
    await Promise.all(
      ids.slice(i, i + 100).map((id) =>
        js.publish(`test.jobs.${id}`, encode(TTSRequestSchema, { text: id }))
      ),
    );
  }
}

/** The next `count` messages of a subscription; throws when they do not come in time. */
async function collect(sub: Subscription, count: number, timeoutMs = 20_000): Promise<Msg[]> {
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  const got: Msg[] = [];
  try {
    for await (const msg of sub) {
      got.push(msg);
      if (got.length === count) break;
    }
  } finally {
    clearTimeout(timer);
  }
  if (got.length < count) throw new Error(`Got ${got.length} of ${count} messages in time`);
  return got;
}

const ids = (n: number, prefix = "j") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

Deno.test("consumeJetStream() handles 1000 messages stored while no service ran, each once", async () => {
  await using t = await setup();
  await publishJobs(t.client, ids(1000));
  const handled = tally();
  const concurrency = 8;
  let running = 0;
  let maxRunning = 0;
  let maxAckPending = 0;
  await using _s = await startService(t.server, [
    jobEndpoint(async (id, _attempt, nc) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      // Hold the slot across a turn of the event loop, so that handlers overlap.
      await delay(1);
      if (id.endsWith("00")) {
        // Delivered but unacked messages never exceed the free slots.
        const jsm = await jetstream(nc).jetstreamManager();
        const info = await jsm.consumers.info("TEST_JOBS", "jobs");
        maxAckPending = Math.max(maxAckPending, info.num_ack_pending);
      }
      running--;
      handled.record(id);
    }),
  ], { concurrency });
  await handled.until(() => handled.counts.size === 1000);
  await nothingPending(t.jsm);
  assert.deepEqual(
    [...handled.counts.values()].filter((n) => n !== 1),
    [],
    "every message handled exactly once",
  );
  assert.equal(maxRunning, concurrency, `${maxRunning} handlers ran at once`);
  assert.ok(maxAckPending > 0 && maxAckPending <= concurrency, `${maxAckPending} unacked`);
});

Deno.test("a retryable failure is redelivered with growing delays and handled once", async () => {
  await using t = await setup();
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    service: "jobs",
    level: "info",
    write: (line) => lines.push(JSON.parse(line)),
  });
  const attempts: Array<{ attempt: number; at: number }> = [];
  const handled = tally();
  await using _s = await startService(t.server, [
    jobEndpoint((id, attempt) => {
      attempts.push({ attempt, at: performance.now() });
      if (attempt < 3) return Promise.reject(new BackendUnavailableError("llm"));
      handled.record(id);
      return Promise.resolve();
    }),
  ], { logger, jetstream: { retryDelayMs: 200 } });
  await publishJobs(t.client, ["flaky"]);
  await handled.until(() => handled.counts.get("flaky") === 1);
  await nothingPending(t.jsm);
  assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3]);
  const planned = lines.filter((l) => l.msg === "Retrying message later").map((l) => l.retry_in_ms);
  assert.deepEqual(planned, [200, 400]);
  // The server holds a nak'd message for its delay: the gaps are at least that long.
  const gaps = attempts.slice(1).map((a, i) => a.at - attempts[i]!.at);
  assert.ok(gaps[0]! >= 190 && gaps[1]! >= 390, `gaps ${gaps}`);
  assert.equal(handled.counts.get("flaky"), 1);
});

Deno.test("a poison message is dead-lettered after max_deliver and the service keeps going", async () => {
  await using t = await setup();
  const deadLetters = t.client.subscribe("dlq.>");
  const handled = tally();
  const poisonAttempts: number[] = [];
  await using _s = await startService(t.server, [
    jobEndpoint((id, attempt) => {
      if (id === "poison") {
        poisonAttempts.push(attempt);
        return Promise.reject(new BackendUnavailableError("llm", { detail: "connection refused" }));
      }
      handled.record(id);
      return Promise.resolve();
    }),
  ], { jetstream: { maxDeliver: 3, retryDelayMs: 50 } });

  const js = jetstream(t.client);
  const h = natsHeaders();
  h.set("X-Request-Id", "req-7");
  h.set("Msg-Type", "messages.v1.TTSRequest");
  h.set("Nats-Msg-Id", "poison-1");
  const poison = encode(TTSRequestSchema, { text: "poison" });
  await js.publish("test.jobs.poison", poison, { headers: h });
  await js.publish("test.jobs.garbage", new Uint8Array([0xff, 0xff, 0x01]));
  await publishJobs(t.client, ["good"]);

  const letters = await collect(deadLetters, 2);
  await handled.until(() => handled.counts.get("good") === 1);
  const bySubject = Object.fromEntries(letters.map((m) => [m.subject, m]));
  const dead = bySubject["dlq.jobs.test.jobs.poison"];
  assert.ok(dead, Object.keys(bySubject).join(", "));
  assert.deepEqual(new Uint8Array(dead.data), poison);
  assert.equal(dead.headers?.get("X-Request-Id"), "req-7", "original headers kept");
  assert.equal(dead.headers?.get("Msg-Type"), "messages.v1.TTSRequest");
  assert.equal(dead.headers?.get(DEAD_LETTER_HEADERS.errorType), "BackendUnavailable");
  assert.equal(
    dead.headers?.get(DEAD_LETTER_HEADERS.reason),
    'Cannot reach backend "llm": connection refused',
  );
  assert.equal(dead.headers?.get(DEAD_LETTER_HEADERS.stream), "TEST_JOBS");
  assert.equal(dead.headers?.get(DEAD_LETTER_HEADERS.sequence), "1");
  assert.equal(dead.headers?.get(DEAD_LETTER_HEADERS.deliveries), "3");
  assert.deepEqual(poisonAttempts, [1, 2, 3]);

  // A message that cannot be decoded is not retried: dead-lettered at once.
  const garbage = bySubject["dlq.jobs.test.jobs.garbage"];
  assert.equal(garbage?.headers?.get(DEAD_LETTER_HEADERS.errorType), "InvalidMessage");
  assert.equal(garbage?.headers?.get(DEAD_LETTER_HEADERS.deliveries), "1");

  const stored = await t.jsm.streams.info("DEAD_LETTERS");
  assert.equal(stored.state.messages, 2, "DEAD_LETTERS keeps them");
  await nothingPending(t.jsm);
});

Deno.test("a handler that outlives the ack wait sends in-progress acks and is not redelivered", async () => {
  await using t = await setup();
  const attempts: number[] = [];
  const handled = tally();
  // The in-progress acks the service sends, seen on the ack subject: one every
  // third of the ack wait, so 7 of them span more than two ack waits.
  const progress = tally();
  const acks = t.client.subscribe("$JS.ACK.TEST_JOBS.jobs.>", {
    callback: (_error, msg) => {
      if (new TextDecoder().decode(msg.data) === "+WPI") progress.record("wpi");
    },
  });
  await t.client.flush();
  await using _s = await startService(t.server, [
    jobEndpoint(async (id, attempt) => {
      attempts.push(attempt);
      if (attempt === 1) await progress.until(() => (progress.counts.get("wpi") ?? 0) >= 7);
      handled.record(id);
    }),
  ], { jetstream: { ackWaitMs: 1000 } });
  await publishJobs(t.client, ["slow"]);
  await handled.until(() => handled.counts.has("slow"));
  await nothingPending(t.jsm);
  acks.unsubscribe();
  assert.deepEqual(attempts, [1], "one delivery despite more than two ack waits");
});

/** Resolves when a consumer state matching `wanted` is reported. */
function stateWatch() {
  const seen: ConsumerState[] = [];
  const waiters: Array<{ wanted: (s: ConsumerState) => boolean; resolve: () => void }> = [];
  return {
    seen,
    onStateChange(state: ConsumerState) {
      seen.push(state);
      for (const w of [...waiters]) {
        if (w.wanted(state)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    /** Resolves when a matching state is reported; rejects after `timeoutMs`. */
    next(wanted: (s: ConsumerState) => boolean, timeoutMs = 20_000): Promise<void> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      return new Promise<void>((resolve, reject) => {
        const waiter = { wanted, resolve };
        waiters.push(waiter);
        timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`No matching consumer state within ${timeoutMs} ms`));
        }, timeoutMs);
      }).finally(() => clearTimeout(timer));
    },
  };
}

Deno.test("the broker is killed and restarted during 1000 messages: none lost, the consumer resumes", async () => {
  await using t = await setup();
  await publishJobs(t.client, ids(1000));
  const handled = tally();
  const states = stateWatch();
  await using s = await startService(t.server, [
    jobEndpoint(async (id) => {
      await new Promise((resolve) => setTimeout(resolve, 2));
      handled.record(id);
    }),
  ], { concurrency: 4, jetstream: { onStateChange: states.onStateChange } });
  await handled.until(() => handled.counts.size >= 200);
  const outage = states.next((state) => state.status === "recovering");
  await t.server.kill();
  const handledAtKill = handled.counts.size;
  await outage;
  assert.equal(s.consumers.ready, false);
  assert.match(String(s.consumers.check()), /TEST_JOBS\/jobs recovering: disconnected/);

  const resumed = states.next((state) => state.status === "consuming");
  await t.server.restart();
  await resumed;
  await handled.until(() => handled.counts.size === 1000, 60_000);
  assert.ok(handledAtKill < 1000, "the broker went away mid-run");
  assert.equal(s.consumers.check(), true);
  await nothingPending(t.jsm);
});

Deno.test("a deleted consumer is detected and recreated where it left off", async () => {
  await using t = await setup();
  const handled = tally();
  const states = stateWatch();
  await using s = await startService(t.server, [
    jobEndpoint((id) => {
      handled.record(id);
      return Promise.resolve();
    }),
  ], { jetstream: { onStateChange: states.onStateChange, fetchExpiresMs: 2000 } });
  await publishJobs(t.client, ids(10, "a"));
  await handled.until(() => handled.counts.size === 10);
  const lost = states.next((state) => state.status === "recovering");
  const back = states.next((state) => state.status === "consuming");
  await t.jsm.consumers.delete("TEST_JOBS", "jobs");
  await lost;
  await back;
  assert.equal(s.consumers.ready, true);
  await publishJobs(t.client, ids(10, "b"));
  await handled.until(() => ids(10, "b").every((id) => handled.counts.has(id)));
  const info = await t.jsm.consumers.info("TEST_JOBS", "jobs");
  assert.equal(info.config.filter_subject, "test.jobs.>");
  await nothingPending(t.jsm);
});

Deno.test("stop() hands back what it pulled and waits for in-flight messages to be acked", async () => {
  await using t = await setup();
  let release = () => {};
  const released = new Promise<void>((resolve) => release = resolve);
  let started = 0;
  let allStarted = () => {};
  const bothStarted = new Promise<void>((resolve) => allStarted = resolve);
  const s = await startService(t.server, [
    jobEndpoint(async () => {
      if (++started === 2) allStarted();
      await released;
    }),
  ], { concurrency: 2 });
  await publishJobs(t.client, ids(2));
  assert.ok(await settlesWithin(bothStarted, 20_000), "both jobs started");
  const stopping = s.service.stop({ graceMs: 10_000 });
  release();
  await stopping;
  assert.deepEqual(s.consumers.states().map((state) => state.status), ["stopped"]);
  await nothingPending(t.jsm);
  await publishJobs(t.client, ["after"]);
  const info = await t.jsm.consumers.info("TEST_JOBS", "jobs");
  assert.equal(info.num_pending, 1, "a stopped service takes nothing more");
  await s.nc.close();
});

Deno.test("publishDurable() stores a trigger published twice with one request id once", async () => {
  await using t = await setup({ AI_PIPELINE: STREAMS.AI_PIPELINE });
  const trigger = { requestId: "r-1", pipeline: "batch-inference" };
  const first = await publishDurable(
    t.client,
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    trigger,
    {
      msgId: "r-1",
    },
  );
  const second = await publishDurable(
    jetstream(t.client),
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    trigger,
    { msgId: "r-1" },
  );
  assert.deepEqual(first, { stream: "AI_PIPELINE", seq: 1, duplicate: false });
  assert.deepEqual(second, { stream: "AI_PIPELINE", seq: 1, duplicate: true });
  const info = await t.jsm.streams.info("AI_PIPELINE");
  assert.equal(info.state.messages, 1);
  const stored = await t.jsm.streams.getMessage("AI_PIPELINE", { seq: 1 });
  assert.equal(stored?.header.get("Msg-Type"), "messages.v1.PipelineTrigger");
  assert.equal(stored?.header.get("Nats-Msg-Id"), "r-1");
});

Deno.test("publishDurable() retries through a broker restart, and gives up at its deadline", async () => {
  await using t = await setup({ AI_PIPELINE: STREAMS.AI_PIPELINE });
  await t.server.kill();
  const pending = publishDurable(t.client, "ai.pipeline.trigger", PipelineTriggerSchema, {
    requestId: "r-2",
  }, { msgId: "r-2", timeoutMs: 30_000 });
  await t.server.restart();
  assert.deepEqual(await pending, { stream: "AI_PIPELINE", seq: 1, duplicate: false });

  await assert.rejects(
    publishDurable(t.client, "test.nowhere", PipelineTriggerSchema, {}, { timeoutMs: 300 }),
    (e: unknown) => e instanceof BackendUnavailableError && /no stream stored/.test(e.message),
  );
  const abort = new AbortController();
  const aborted = publishDurable(t.client, "test.nowhere", PipelineTriggerSchema, {}, {
    signal: abort.signal,
  });
  abort.abort(new Error("stop now"));
  await assert.rejects(aborted, /stop now/);
});

/** A chat endpoint on COMPANIONS_CHAT and a TTS endpoint on AI_VOICE_STREAM, counting calls. */
function trapEndpoints(calls: string[]): Endpoint[] {
  return [
    defineEndpoint({
      subject: "ai.chat.user.*.message",
      stream: "COMPANIONS_CHAT",
      request: ChatRequestSchema,
      response: ChatResponseSchema,
      handle(req, ctx) {
        calls.push(ctx.subject);
        const reply = { userId: req.userId, response: `echo ${req.message}`, success: true };
        ctx.publish(`ai.chat.response.${req.requestId}`, ChatResponseSchema, reply);
        return Promise.resolve(reply);
      },
    }),
    defineEndpoint({
      subject: "ai.voice.tts.request.>",
      stream: "AI_VOICE_STREAM",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle(req, ctx) {
        calls.push(ctx.subject);
        const sessionId = ctx.tokens.at(-1) ?? "";
        const status = { sessionId, status: "completed", message: req.text };
        ctx.publish(`ai.voice.tts.status.${sessionId}`, TTSStatusSchema, status);
        return Promise.resolve(status);
      },
    }),
  ];
}

const TRAP_STREAMS = {
  COMPANIONS_CHAT: STREAMS.COMPANIONS_CHAT,
  AI_VOICE_STREAM: STREAMS.AI_VOICE_STREAM,
};

Deno.test("JetStream mode: a request on a captured subject is answered by the stream's ack", async () => {
  await using t = await setup(TRAP_STREAMS);
  const calls: string[] = [];
  const nc = await connectNats({ servers: t.server.url, name: "trap" });
  const service = createService(nc, {
    name: "trap",
    endpoints: trapEndpoints(calls),
    logger: quiet,
    consumeMode: "jetstream",
  });
  await service.start();
  const consumers = consumeJetStream(service);
  const results = t.client.subscribe("ai.chat.response.r1");
  const statuses = t.client.subscribe("ai.voice.tts.status.s1");

  const chat = encode(ChatRequestSchema, { requestId: "r1", userId: "u1", message: "hi" });
  const ack = await t.client.request("ai.chat.user.u1.message", chat, { timeout: 5000 });
  assert.deepEqual(JSON.parse(new TextDecoder().decode(ack.data)), {
    stream: "COMPANIONS_CHAT",
    seq: 1,
  });
  const [result] = await collect(results, 1);
  assert.equal(decode(ChatResponseSchema, result!.data).response, "echo hi");

  // AI_VOICE_STREAM is no_ack: nobody answers the request, the result comes per id.
  await assert.rejects(
    t.client.request("ai.voice.tts.request.s1", encode(TTSRequestSchema, { text: "t" }), {
      timeout: 300,
    }),
  );
  const [status] = await collect(statuses, 1);
  assert.equal(decode(TTSStatusSchema, status!.data).status, "completed");
  assert.deepEqual(calls, ["ai.chat.user.u1.message", "ai.voice.tts.request.s1"], "once each");
  assert.deepEqual(consumers.states().map((s) => s.durable), ["trap", "trap"]);
  await service.stop();
  await nc.close();
});

Deno.test("core mode: a request on a no_ack stream's subject is answered by the service", async () => {
  await using t = await setup(TRAP_STREAMS);
  const calls: string[] = [];
  const nc = await connectNats({ servers: t.server.url, name: "trap" });
  const service = createService(nc, {
    name: "trap",
    endpoints: trapEndpoints(calls),
    logger: quiet,
  });
  await service.start();
  assert.deepEqual(service.jetstreamEndpoints, []);
  const reply = await request(
    t.client,
    "ai.voice.tts.request.s2",
    TTSRequestSchema,
    { text: "hello" },
    TTSStatusSchema,
    { timeout: 5000 },
  );
  assert.deepEqual([reply.sessionId, reply.message], ["s2", "hello"]);
  const stored = await t.jsm.streams.info("AI_VOICE_STREAM");
  assert.equal(stored.state.messages, 2, "the stream kept the request and the status, silently");
  assert.deepEqual(calls, ["ai.voice.tts.request.s2"]);
  await service.stop();
  await nc.close();
});

Deno.test("ensureStreams() creates the platform streams, then changes nothing and never drops data", async () => {
  await using server = await startNatsServer({ jetstream: true });
  const nc = await connectNats({ servers: server.url, name: "operator" });
  const jsm = await jetstream(nc).jetstreamManager();
  const created = await ensureStreams(nc);
  assert.deepEqual(
    created.map((r) => [r.name, r.action]),
    Object.keys(STREAMS).map((name) => [name, "created"]),
  );
  const voice = await jsm.streams.info("AI_VOICE_STREAM");
  assert.equal(voice.config.no_ack, true);
  assert.deepEqual(voice.config.subjects, ["ai.voice.>"]);
  const pipeline = await jsm.streams.info("AI_PIPELINE");
  assert.equal(pipeline.config.duplicate_window, 120_000_000_000);
  assert.equal((await jsm.streams.info("AI_CHAT_STREAM")).config.storage, "memory");
  assert.deepEqual(
    (await ensureStreams(nc)).map((r) => r.action),
    Object.keys(STREAMS).map(() => "unchanged"),
  );

  // Drift: a shorter max age and duplicate window get the table's values back,
  // and the stored trigger survives the update.
  await publishDurable(nc, "ai.pipeline.trigger", PipelineTriggerSchema, { requestId: "k" });
  await jsm.streams.update("AI_PIPELINE", {
    max_age: 3_600_000_000_000,
    duplicate_window: 30_000_000_000,
  });
  const dry = await ensureStreams(nc, { only: ["AI_PIPELINE"], dryRun: true });
  assert.equal(dry[0]?.action, "updated");
  assert.equal((await jsm.streams.info("AI_PIPELINE")).config.duplicate_window, 30_000_000_000);
  const [updated] = await ensureStreams(nc, { only: ["AI_PIPELINE"] });
  assert.deepEqual(updated?.changes, ["max_age 1h -> 7d", "duplicate_window 30s -> 2m"]);
  assert.equal((await jsm.streams.info("AI_PIPELINE")).state.messages, 1);

  // A longer max age is kept: shortening it would delete messages.
  await jsm.streams.update("COMPANIONS_LOGINS", { max_age: 30 * 86_400_000_000_000 });
  const [kept] = await ensureStreams(nc, { only: ["COMPANIONS_LOGINS"] });
  assert.equal(kept?.action, "unchanged");
  assert.match(kept?.kept[0] ?? "", /^max_age 30d \(the table says 7d/);

  // A storage change is refused, the other streams are still applied.
  await assert.rejects(
    ensureStreams(nc, {
      streams: {
        AI_CHAT_STREAM: { ...STREAMS.AI_CHAT_STREAM, storage: "file" },
        EXTRA: { ...STREAMS.DEAD_LETTERS, subjects: ["extra.>"] },
      },
    }),
    (e: unknown) =>
      e instanceof StreamSetupError && /AI_CHAT_STREAM: its storage is memory/.test(e.message) &&
      e.results[1]?.action === "created",
  );
  assert.equal((await jsm.streams.info("AI_CHAT_STREAM")).config.storage, "memory");
  await nc.close();
});

Deno.test("consumeConfigSpec reads CONSUME_MODE and the consumer settings", () => {
  assert.deepEqual(consumeSettingsFromConfig(loadConfig(consumeConfigSpec, {})), {
    consumeMode: "core",
    ensureStreams: false,
    streamReplicas: 1,
    jetstream: { maxDeliver: 5, ackWaitMs: 30_000 },
  });
  const config = loadConfig(consumeConfigSpec, {
    CONSUME_MODE: "jetstream",
    ENSURE_STREAMS: "true",
    JETSTREAM_REPLICAS: "3",
    JETSTREAM_MAX_DELIVER: "3",
    JETSTREAM_ACK_WAIT_MS: "45s",
  });
  assert.deepEqual(consumeSettingsFromConfig(config), {
    consumeMode: "jetstream",
    ensureStreams: true,
    streamReplicas: 3,
    jetstream: { maxDeliver: 3, ackWaitMs: 45_000 },
  });
  assert.throws(
    () =>
      loadConfig(consumeConfigSpec, {
        CONSUME_MODE: "both",
        JETSTREAM_MAX_DELIVER: "0",
        JETSTREAM_REPLICAS: "6",
      }),
    (e: unknown) =>
      e instanceof ConfigError && /CONSUME_MODE/.test(e.message) &&
      /JETSTREAM_MAX_DELIVER/.test(e.message) && /JETSTREAM_REPLICAS/.test(e.message),
  );
});

Deno.test("createService() refuses two JetStream endpoints on one durable consumer", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "svc" });
  const endpoint = (subject: string, durable?: string) =>
    defineEndpoint({
      subject,
      stream: "COMPANIONS_CHAT",
      ...(durable ? { durable } : {}),
      request: TTSRequestSchema,
      handle: () => Promise.resolve(),
    });
  const two = [endpoint("ai.chat.user.*.message"), endpoint("ai.chat.user.*.greeting.request")];
  assert.throws(
    () =>
      createService(nc, { name: "chat", endpoints: two, logger: quiet, consumeMode: "jetstream" }),
    /endpoints "ai.chat.user.\*.message" and "ai.chat.user.\*.greeting.request" would share/,
  );
  createService(nc, { name: "chat", endpoints: two, logger: quiet }); // core: no consumers
  const named = [two[0]!, endpoint("ai.chat.user.*.greeting.request", "chat-greetings")];
  const service = createService(nc, {
    name: "chat",
    endpoints: named,
    logger: quiet,
    consumeMode: "jetstream",
  });
  assert.deepEqual(service.stats().map((s) => s.queueGroup), ["chat", "chat-greetings"]);
  assert.throws(() => consumeJetStream(service, { ackWaitMs: 10 }), RangeError);
  await nc.close();
});

const JOBS_SERVICE = new URL("./testdata/jetstream_service.ts", import.meta.url).pathname;

/** Starts the jobs service as a subprocess with exactly its declared permissions. */
function startJobs(server: NatsServer, env: Record<string, string> = {}) {
  return startServiceProcess({
    entry: JOBS_SERVICE,
    flags: jobsPermissions(`127.0.0.1:${server.port}`),
    env: { NATS_URL: server.url, CONSUME_MODE: "jetstream", JETSTREAM_ACK_WAIT_MS: "1s", ...env },
  });
}

Deno.test("kill -9 of the service in the middle of 500 messages: a restart handles every one", async () => {
  await using t = await setup();
  const handled = tally();
  const outputs = t.client.subscribe("test.handled", {
    callback: (_error, msg) => handled.record(decode(TTSStatusSchema, msg.data).sessionId),
  });
  await t.client.flush();
  await publishJobs(t.client, ids(500));

  const first = await startJobs(t.server, { JOB_DELAY_MS: "20" });
  await handled.until(() => handled.counts.size >= 100);
  await first.stop("SIGKILL");
  const handledAtKill = handled.counts.size;
  assert.ok(handledAtKill < 500, `killed after ${handledAtKill} of 500`);

  const second = await startJobs(t.server);
  await eventually(async () => (await second.readiness())?.body.status === "ready");
  await handled.until(() => handled.counts.size === 500, 30_000);
  await nothingPending(t.jsm);
  assert.equal((await second.stop()).code, 0, second.lines.join("\n"));
  outputs.unsubscribe();
});

Deno.test("runService() reports the JetStream consumer on /ready and its counters over $SRV.STATS", async () => {
  await using t = await setup();
  const jobs = await startJobs(t.server);
  await eventually(async () => (await jobs.readiness())?.body.status === "ready");
  await publishJobs(t.client, ids(20));
  await nothingPending(t.jsm);
  const reply = await t.client.request("$SRV.STATS.jobs", "", { timeout: 5000 });
  const stats = reply.json<{ endpoints: Array<Record<string, unknown>> }>();
  assert.equal(stats.endpoints[0]?.num_requests, 20);
  assert.equal(stats.endpoints[0]?.queue_group, "jobs");

  await t.jsm.consumers.delete("TEST_JOBS", "jobs");
  // Deleted under a waiting pull: /ready fails until the consumer is back.
  await eventually(async () => {
    const body = (await jobs.readiness())?.body;
    return body?.status === "not ready" &&
      /TEST_JOBS\/jobs recovering/.test(JSON.stringify(body.failing));
  });
  await eventually(async () => (await jobs.readiness())?.body.status === "ready");
  assert.equal((await jobs.stop()).code, 0, jobs.lines.join("\n"));
});

Deno.test("runService() with ensureStreams creates the platform streams before it consumes", async () => {
  await using server = await startNatsServer({ jetstream: true });
  const stop = new AbortController();
  let started = () => {};
  const serving = new Promise<void>((resolve) => started = resolve);
  const running = runService({
    name: "pipeline-bridge",
    endpoints: [
      defineEndpoint({
        subject: "ai.pipeline.trigger",
        stream: "AI_PIPELINE",
        request: PipelineTriggerSchema,
        handle: () => Promise.resolve(),
      }),
    ],
    nats: { servers: server.url },
    healthPort: 0,
    healthHostname: "127.0.0.1",
    logger: quiet,
    signal: stop.signal,
    consumeMode: "jetstream",
    ensureStreams: true,
    onStart: () => Promise.resolve(started()),
  });
  await serving;
  const nc = await connectNats({ servers: server.url, name: "check" });
  const jsm = await jetstream(nc).jetstreamManager();
  const names = await jsm.streams.names().next();
  assert.deepEqual(names.sort(), Object.keys(STREAMS).sort());
  await eventually(async () => {
    const info = await jsm.consumers.info("AI_PIPELINE", "pipeline-bridge");
    return info.config.filter_subject === "ai.pipeline.trigger";
  });
  stop.abort();
  await running;
  await nc.close();
});

Deno.test("a message whose deliveries all died without an outcome is dead-lettered too", async () => {
  await using t = await setup();
  const deadLetters = t.client.subscribe("dlq.>");
  // The consumer as the service makes it; two replicas take the message and die.
  await t.jsm.consumers.add("TEST_JOBS", {
    durable_name: "jobs",
    ack_policy: AckPolicy.Explicit,
    ack_wait: 1_000_000_000,
    max_deliver: 2,
    filter_subject: "test.jobs.>",
  });
  await publishJobs(t.client, ["doomed"]);
  const consumer = await jetstream(t.client).consumers.get("TEST_JOBS", "jobs");
  for (const delivery of [1, 2]) {
    const m = await consumer.next({ expires: 5000 });
    assert.equal(m?.info.deliveryCount, delivery, "taken and never acked");
  }
  const handled = tally();
  await using _s = await startService(t.server, [
    jobEndpoint((id) => {
      handled.record(id);
      return Promise.resolve();
    }),
  ], { jetstream: { maxDeliver: 2, ackWaitMs: 1000 } });
  const [letter] = await collect(deadLetters, 1);
  assert.equal(letter?.subject, "dlq.jobs.test.jobs.doomed");
  assert.equal(letter?.headers?.get(DEAD_LETTER_HEADERS.deliveries), "2");
  assert.equal(letter?.headers?.get(DEAD_LETTER_HEADERS.errorType), "Internal");
  assert.match(letter?.headers?.get(DEAD_LETTER_HEADERS.reason) ?? "", /without an outcome/);
  assert.equal(handled.counts.size, 0, "never handed to the handler a third time");
});

Deno.test("a stop whose grace runs out hands the running messages back unacked, for another replica", async () => {
  await using t = await setup();
  const { promise: never, resolve: releaseStubborn } = Promise.withResolvers<void>();
  const firstAttempts = tally();
  const s = await startService(t.server, [
    jobEndpoint(async (id) => {
      firstAttempts.record(id);
      await never; // Ignores its signal: only the grace can end it.
    }),
  ], { concurrency: 2 });
  await publishJobs(t.client, ids(2));
  await firstAttempts.until(() => firstAttempts.counts.size === 2);
  assert.ok(await settlesWithin(s.service.stop({ graceMs: 300 }), 10_000), "the stop is bounded");
  await s.nc.close();

  const redelivered = tally();
  await using _other = await startService(t.server, [
    jobEndpoint((id, attempt) => {
      redelivered.record(`${id}@${attempt}`);
      return Promise.resolve();
    }),
  ]);
  await redelivered.until(() => redelivered.counts.size === 2);
  assert.deepEqual([...redelivered.counts.keys()].sort(), ["j0@2", "j1@2"]);
  await nothingPending(t.jsm);
  releaseStubborn();
});
