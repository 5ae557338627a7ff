import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { publishConfirmed } from "./confirmed_publish.ts";
import { BackendUnavailableError, TimeoutError } from "./errors.ts";
import { ensureStreams, STREAMS } from "./jetstream.ts";
import { decode, MSG_TYPE_HEADER, TTSRequestSchema } from "./messages.ts";
import { connectNats } from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";

async function setup() {
  const server = await startNatsServer({ jetstream: true });
  const nc = await connectNats({ servers: server.url, name: "producer" });
  await ensureStreams(nc, { only: ["AI_VOICE_STREAM"] });
  const jsm = await jetstreamManager(nc);
  return {
    nc,
    jsm,
    async [Symbol.asyncDispose]() {
      await nc.close();
      await server[Symbol.asyncDispose]();
    },
  };
}

Deno.test("publishConfirmed() stores a message on the no_ack AI_VOICE_STREAM and says where", async () => {
  await using t = await setup();
  const info = await t.jsm.streams.info("AI_VOICE_STREAM");
  assert.equal(STREAMS.AI_VOICE_STREAM.noAck, true);
  assert.equal(info.config.no_ack, true);
  // The stream sends no ack: a plain request on a captured subject gets no answer from it.
  await assert.rejects(
    t.nc.request("ai.voice.tts.request.probe", new Uint8Array(0), { timeout: 300 }),
  );

  const stored = await publishConfirmed(t.nc, "ai.voice.tts.request.s1", TTSRequestSchema, {
    text: "Hello.",
  }, { msgId: "r-1" });
  assert.equal(stored.stream, "AI_VOICE_STREAM");
  assert.equal(stored.publishes, 1);
  const message = await t.jsm.streams.getMessage("AI_VOICE_STREAM", { seq: stored.seq });
  assert.ok(message);
  assert.equal(message.subject, "ai.voice.tts.request.s1");
  assert.equal(message.header.get("Nats-Msg-Id"), "r-1");
  assert.equal(message.header.get(MSG_TYPE_HEADER), "messages.v1.TTSRequest");
  assert.equal(decode(TTSRequestSchema, message.data).text, "Hello.");
});

Deno.test("publishConfirmed() with the same id again finds the one stored copy", async () => {
  await using t = await setup();
  const subject = "ai.voice.tts.request.s2";
  const first = await publishConfirmed(t.nc, subject, TTSRequestSchema, { text: "Once." }, {
    msgId: "r-2",
    stream: "AI_VOICE_STREAM",
  });
  const again = await publishConfirmed(t.nc, subject, TTSRequestSchema, { text: "Once." }, {
    msgId: "r-2",
    stream: "AI_VOICE_STREAM",
  });
  // The stream dropped the second publish as a duplicate; the helper found the first copy.
  assert.equal(again.seq, first.seq);
  assert.equal((await t.jsm.streams.info("AI_VOICE_STREAM")).state.messages, 1);
});

Deno.test("publishConfirmed() tells apart concurrent messages on one subject by their ids", async () => {
  await using t = await setup();
  const subject = "ai.voice.tts.request.shared";
  t.nc.publish(subject, new Uint8Array([1])); // an earlier message, no id
  await t.nc.flush();
  const results = await Promise.all(
    Array.from(
      { length: 8 },
      (_, i) =>
        publishConfirmed(t.nc, subject, TTSRequestSchema, { text: `n${i}` }, { msgId: `m-${i}` }),
    ),
  );
  assert.equal(new Set(results.map((r) => r.seq)).size, 8);
  for (const [i, result] of results.entries()) {
    const message = await t.jsm.streams.getMessage("AI_VOICE_STREAM", { seq: result.seq });
    assert.equal(decode(TTSRequestSchema, message!.data).text, `n${i}`);
  }
  assert.equal((await t.jsm.streams.info("AI_VOICE_STREAM")).state.messages, 9);
});

Deno.test("publishConfirmed() republishes a message it cannot find, and gives up at its deadline", async () => {
  await using t = await setup();
  // A subject the named stream does not capture: every look misses.
  const error = await publishConfirmed(t.nc, "demo.not.captured", TTSRequestSchema, {
    text: "lost",
  }, { stream: "AI_VOICE_STREAM", timeoutMs: 400 }).catch((e) => e);
  assert.ok(error instanceof TimeoutError, String(error));
  assert.match(error.message, /not found in stream AI_VOICE_STREAM within 400 ms/);

  const missing = await publishConfirmed(t.nc, "demo.no.stream", TTSRequestSchema, {
    text: "x",
  }, { timeoutMs: 2000 }).catch((e) => e);
  assert.ok(missing instanceof BackendUnavailableError, String(missing));
});

Deno.test("publishConfirmed() stops at once when its signal aborts", async () => {
  await using t = await setup();
  const controller = new AbortController();
  controller.abort(new Error("caller gave up"));
  await assert.rejects(
    publishConfirmed(t.nc, "ai.voice.tts.request.s3", TTSRequestSchema, { text: "x" }, {
      signal: controller.signal,
    }),
    /caller gave up/,
  );
});
