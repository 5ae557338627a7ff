import assert from "node:assert/strict";
import { createService, defineEndpoint } from "./handler.ts";
import { createLogger } from "./log.ts";
import { TTSRequestSchema, TTSStatusSchema } from "./messages.ts";
import {
  connectNats,
  messageHeaders,
  type MsgHdrs,
  type NatsConnection,
  request,
} from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";
import { fastReplies, replyBytesOf, respondFast } from "./fast_reply.ts";

interface Protocol {
  sendCommand(command: string | Uint8Array, ...payloads: Uint8Array[]): void;
  outBytes: number;
  outMsgs: number;
  noMorePublishing: boolean;
}

/** What one call queues on `nc`, as bytes, and the counters it moved; nothing is sent. */
function queued(nc: NatsConnection, write: () => unknown): { bytes: number[]; outBytes: number } {
  const protocol = (nc as unknown as { protocol: Protocol }).protocol;
  const original = protocol.sendCommand;
  const bytes: number[] = [];
  protocol.sendCommand = (command, ...payloads) => {
    const head = typeof command === "string" ? new TextEncoder().encode(command) : command;
    for (const part of [head, ...payloads]) bytes.push(...part);
  };
  const before = { outBytes: protocol.outBytes, outMsgs: protocol.outMsgs };
  try {
    write();
  } finally {
    protocol.sendCommand = original;
  }
  if (bytes.length > 0) assert.equal(protocol.outMsgs, before.outMsgs + 1);
  return { bytes, outBytes: protocol.outBytes - before.outBytes };
}

Deno.test("respondFast queues the bytes nats.js would, headers and counters included", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "fast-reply" });
  try {
    const cases: [string, MsgHdrs, Uint8Array][] = [
      ["_INBOX.abc.1", messageHeaders("homelab.v1.TTSStatus"), new Uint8Array([8, 1, 18, 2])],
      ["_INBOX.x", messageHeaders("homelab.v1.TTSStatus"), new Uint8Array(0)],
      ["reply.with.tokens.9", messageHeaders("t", {}), new Uint8Array(70_000).fill(7)],
    ];
    const traced = messageHeaders("homelab.v1.ChatResponse");
    traced.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    cases.push(["_INBOX.t", traced, new TextEncoder().encode("héllo")]);
    for (const [reply, headers, data] of cases) {
      const byNats = queued(nc, () => nc.publish(reply, data, { headers }));
      const fast = queued(nc, () => assert.equal(respondFast(nc, reply, headers, data), true));
      assert.deepEqual(fast, byNats, reply);
      const asBytes = new TextEncoder().encode(reply);
      const fromBytes = queued(nc, () => respondFast(nc, asBytes, headers, data));
      assert.deepEqual(fromBytes, byNats, `${reply} as bytes`);
    }
  } finally {
    await nc.close();
  }
});

Deno.test("respondFast writes every length as nats.js does, and a UTF-8 reply subject given as bytes", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "fast-reply-lengths" });
  try {
    const headers = messageHeaders("t");
    const head = (headers as MsgHdrs & { encode(): Uint8Array }).encode().length;
    // Payload sizes whose totals (headers and payload) cross each power of ten.
    const sizes = [0, 1];
    for (const boundary of [100, 1000, 10_000, 100_000]) {
      sizes.push(boundary - head - 1, boundary - head, boundary - head + 1);
    }
    for (const size of sizes) {
      const data = new Uint8Array(size).fill(size % 251);
      const byNats = queued(nc, () => nc.publish("_INBOX.len", data, { headers }));
      const fast = queued(nc, () => respondFast(nc, "_INBOX.len", headers, data));
      assert.deepEqual(fast, byNats, `${size} bytes`);
    }
    const data = new Uint8Array([1, 2, 3]);
    const byNats = queued(nc, () => nc.publish("_INBOX.ü", data, { headers }));
    const fast = queued(
      nc,
      () =>
        assert.equal(respondFast(nc, new TextEncoder().encode("_INBOX.ü"), headers, data), true),
    );
    assert.deepEqual(fast, byNats);
  } finally {
    await nc.close();
  }
});

Deno.test("replyBytesOf gives a delivered message's reply subject as it arrived", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "reply-bytes" });
  try {
    const seen: [Uint8Array | undefined, string][] = [];
    const sub = nc.subscribe("test.reply-bytes", {
      callback: (_error, msg) => {
        seen.push([replyBytesOf(msg), msg.reply ?? ""]);
      },
    });
    nc.publish("test.reply-bytes", new Uint8Array(1), { reply: "_INBOX.some.reply.7" });
    nc.publish("test.reply-bytes", new Uint8Array(1));
    nc.publish("test.reply-bytes", new Uint8Array(1), {
      reply: "r.2",
      headers: messageHeaders("t"),
    });
    await nc.flush();
    await sub.drain();
    const text = seen.map(([bytes, reply]) => [new TextDecoder().decode(bytes), reply]);
    assert.deepEqual(text, [
      ["_INBOX.some.reply.7", "_INBOX.some.reply.7"],
      ["", ""],
      ["r.2", "r.2"],
    ]);
    // A message of another shape: the caller reads msg.reply instead.
    assert.equal(
      replyBytesOf({ reply: "x" } as unknown as Parameters<typeof replyBytesOf>[0]),
      undefined,
    );
  } finally {
    await nc.close();
  }
});

Deno.test("respondFast declines what only nats.js handles, and queues nothing then", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "fast-reply-declines" });
  const headers = messageHeaders("t");
  const protocol = (nc as unknown as { protocol: Protocol }).protocol;
  const declined = fastReplies.declined;
  const none = (write: () => boolean) => {
    const result = queued(nc, () => assert.equal(write(), false));
    assert.deepEqual(result, { bytes: [], outBytes: 0 });
  };
  // A reply subject that is not ASCII: nats.js encodes it as UTF-8.
  none(() => respondFast(nc, "_INBOX.ü", headers, new Uint8Array(1)));
  // No reply subject.
  none(() => respondFast(nc, new Uint8Array(0), headers, new Uint8Array(1)));
  // Over the server's max_payload (1 MiB): nats.js throws its own error.
  none(() => respondFast(nc, "_INBOX.big", headers, new Uint8Array(1024 * 1024 + 1)));
  // Draining: nats.js refuses to publish.
  protocol.noMorePublishing = true;
  none(() => respondFast(nc, "_INBOX.d", headers, new Uint8Array(1)));
  protocol.noMorePublishing = false;
  // Not nats-core's protocol handler.
  none(() =>
    respondFast(
      { isClosed: () => false } as unknown as NatsConnection,
      "r",
      headers,
      new Uint8Array(1),
    )
  );
  await nc.close();
  // Closed: nats.js throws ClosedConnectionError.
  none(() => respondFast(nc, "_INBOX.c", headers, new Uint8Array(1)));
  assert.equal(fastReplies.declined, declined + 6);
});

Deno.test("an endpoint's replies take the fast path with the nats-core this project pins", async () => {
  await using server = await startNatsServer();
  const serviceConn = await connectNats({ servers: server.url, name: "svc" });
  const client = await connectNats({ servers: server.url, name: "client" });
  const service = createService(serviceConn, {
    name: "fast",
    logger: createLogger({ service: "fast", level: "error" }),
    endpoints: [defineEndpoint({
      subject: "test.fast",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle: (req) => Promise.resolve({ status: "ok", message: req.text.toUpperCase() }),
    })],
  });
  try {
    await service.start();
    const written = fastReplies.written;
    const replies = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          request(client, "test.fast", TTSRequestSchema, { text: `r${i}` }, TTSStatusSchema, {
            timeout: 5000,
          }),
      ),
    );
    assert.deepEqual(replies.map((r) => r.message), replies.map((_, i) => `R${i}`));
    assert.equal(fastReplies.written, written + 20);
  } finally {
    await service.stop({ graceMs: 1000 });
    await Promise.all([serviceConn.close(), client.close()]);
  }
});
