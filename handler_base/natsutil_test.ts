import assert from "node:assert/strict";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { DecodeError, RemoteError } from "./errors.ts";
import {
  encode,
  ErrorResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
} from "./messages.ts";
import {
  connectNats,
  decodeMsg,
  messageHeaders,
  type Msg,
  NoRespondersError,
  publish,
  request,
  RequestTimeoutError,
  watchConnection,
} from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";
import { deadline } from "./async.ts";
import { makeTlsFiles } from "./testdata/tls_files.ts";

const ask = { timeout: 2000 };

Deno.test("request() decodes a reply sent without Msg-Type, as Go services send it", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  nc.subscribe("go.voices", {
    callback: (_err, msg) => {
      msg.respond(encode(TTSVoiceListResponseSchema, { defaultSpeaker: "default" }));
    },
  });
  const reply = await request(
    nc,
    "go.voices",
    TTSRequestSchema,
    {},
    TTSVoiceListResponseSchema,
    ask,
  );
  assert.equal(reply.defaultSpeaker, "default");
  await nc.close();
});

Deno.test("request() turns an ErrorResponse reply into a RemoteError, with or without Msg-Type", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  const error = encode(ErrorResponseSchema, {
    error: true,
    message: "Cannot chat: the query is empty",
    type: "InvalidArgument",
  });
  nc.subscribe("go.error", {
    callback: (_err, msg) => {
      msg.respond(error);
    },
  });
  nc.subscribe("ts.error", {
    callback: (_err, msg) => {
      msg.respond(error, { headers: messageHeaders(ErrorResponseSchema.typeName) });
    },
  });
  for (const subject of ["go.error", "ts.error"]) {
    await assert.rejects(
      request(nc, subject, TTSRequestSchema, {}, TTSStatusSchema, ask),
      (e: unknown) =>
        e instanceof RemoteError && e.type === "InvalidArgument" &&
        e.message === "Cannot chat: the query is empty",
      subject,
    );
  }
  await nc.close();
});

Deno.test("request() tells a timeout from nobody listening", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  nc.subscribe("silent", { callback: () => {} });
  await nc.flush();
  await assert.rejects(
    request(nc, "silent", TTSRequestSchema, {}, TTSStatusSchema, { timeout: 100 }),
    (e: unknown) =>
      e instanceof RequestTimeoutError && e.type === "Timeout" && e.subject === "silent",
  );
  await assert.rejects(
    request(nc, "nobody", TTSRequestSchema, {}, TTSStatusSchema, ask),
    (e: unknown) =>
      e instanceof NoRespondersError && e.type === "BackendUnavailable" && e.subject === "nobody",
  );
  await nc.close();
});

Deno.test("request() stops waiting when its signal aborts", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  nc.subscribe("slow", { callback: () => {} });
  const controller = new AbortController();
  const pending = request(nc, "slow", TTSRequestSchema, {}, TTSStatusSchema, {
    timeout: 2000,
    signal: controller.signal,
  });
  controller.abort(new Error("caller gave up"));
  await assert.rejects(pending, /caller gave up/);
  await nc.close();
});

Deno.test("request() rejects a reply of another type as a DecodeError", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  nc.subscribe("wrong", {
    callback: (_err, msg) => {
      msg.respond(encode(TTSStatusSchema, { status: "ok" }), {
        headers: messageHeaders(TTSStatusSchema.typeName),
      });
    },
  });
  await assert.rejects(
    request(nc, "wrong", TTSRequestSchema, {}, TTSVoiceListResponseSchema, ask),
    (e: unknown) => e instanceof DecodeError && /Msg-Type header says/.test(e.message),
  );
  await nc.close();
});

Deno.test("publish() sets Msg-Type and the trace context of the active span", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  const received: Msg[] = [];
  const sub = nc.subscribe("out", {
    max: 2,
    callback: (_err, msg) => {
      received.push(msg);
    },
  });
  publish(nc, "out", TTSStatusSchema, { status: "plain" });
  const parent = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
  });
  publish(nc, "out", TTSStatusSchema, { status: "traced" }, { context: parent });
  await deadline(sub.closed, 10_000, { what: "the subscription to close" });
  const [plain, traced] = received;
  assert.equal(plain?.headers?.get("Msg-Type"), "messages.v1.TTSStatus");
  assert.equal(plain?.headers?.get("traceparent"), "");
  assert.equal(decodeMsg(TTSStatusSchema, traced!).status, "traced");
  assert.equal(
    traced?.headers?.get("traceparent"),
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  );
  await nc.close();
});

Deno.test("connectNats() authenticates with user and password, or a token", async () => {
  await using withUser = await startNatsServer({
    jetstream: false,
    args: ["--user", "svc", "--pass", "s3cret"],
  });
  const good = await connectNats({
    servers: withUser.url,
    name: "t",
    user: "svc",
    password: "s3cret",
  });
  await good.flush();
  await good.close();
  await assert.rejects(
    connectNats({ servers: withUser.url, name: "t", user: "svc", password: "wrong" }),
    (e: unknown) => e instanceof Error && e.name === "AuthorizationError",
  );

  await using withToken = await startNatsServer({ jetstream: false, args: ["--auth", "tok"] });
  const byToken = await connectNats({ servers: withToken.url, name: "t", token: "tok" });
  await byToken.flush();
  await byToken.close();
});

Deno.test("watchConnection() follows a broker that goes away and comes back", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t", reconnectTimeWaitMs: 50 });
  const states: string[] = [];
  const changed = () => new Promise<void>((resolve) => waiters.push(resolve));
  const waiters: Array<() => void> = [];
  const watch = watchConnection(nc, (state) => {
    states.push(state);
    waiters.splice(0).forEach((resolve) => resolve());
  });
  assert.equal(watch.state, "connected");
  const down = changed();
  await server.kill();
  await down;
  assert.equal(watch.state, "disconnected");
  const up = changed();
  await server.restart();
  await up;
  assert.equal(watch.state, "connected");
  await nc.close();
  assert.equal(watch.state, "closed");
  assert.deepEqual(states, ["disconnected", "connected", "closed"]);
});

Deno.test("connectNats() verifies the server against the TLS CA it is given", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nats-tls-" });
  try {
    const tls = await makeTlsFiles(dir);
    await using server = await startNatsServer({
      jetstream: false,
      args: ["--tls", "--tlscert", tls.cert, "--tlskey", tls.key],
    });
    const nc = await connectNats({ servers: server.url, name: "t", tlsCaFile: tls.ca });
    nc.subscribe("tls.echo", {
      callback: (_err, msg) => {
        msg.respond(encode(TTSStatusSchema, { status: "over tls" }));
      },
    });
    const reply = await request(nc, "tls.echo", TTSRequestSchema, {}, TTSStatusSchema, ask);
    assert.equal(reply.status, "over tls");
    await nc.close();

    await assert.rejects(
      connectNats({ servers: server.url, name: "t", tlsCaFile: tls.otherCa }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
