import assert from "node:assert/strict";
import {
  ChatRequestSchema,
  ChatResponseSchema,
  type ChatStreamChunk,
  ChatStreamChunkSchema,
  decode,
  encode,
  GreetingRequestSchema,
  GreetingResponseSchema,
} from "@homelab/handler-base/messages";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import { connectNats } from "@homelab/handler-base/natsutil";
import {
  collect,
  type NatsServer,
  runEntryToExit,
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeXtts,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";

const ROOT = new URL("../", import.meta.url).pathname;

/** Runs the real entry file with nothing but its permission set, until it serves. */
function startChatHandler(server: NatsServer, env: Record<string, string>) {
  return startServiceProcess({
    entry: "services/chat.ts",
    flags: ["-P=chat-handler"],
    cwd: ROOT,
    env: { NATS_URL: server.url, ...env },
  });
}

Deno.test("services/chat.ts runs with exactly -P=chat-handler and answers a full chat", async () => {
  await using server = await startNatsServer({ jetstream: false });
  await using llm = startFakeLlm({ reply: "Streams keep messages on disk." });
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  await using reranker = startFakeReranker();
  await using xtts = startFakeXtts();
  const service = await startChatHandler(server, {
    VLLM_URL: llm.url,
    LLM_PREMIUM_MODEL: "premium-model",
    EMBEDDINGS_URL: embeddings.url,
    RERANKER_URL: reranker.url,
    MILVUS_HOST: "127.0.0.1",
    MILVUS_PORT: new URL(milvus.url).port,
    TTS_URL: xtts.url,
    CHAT_STREAM_MIN_INTERVAL_MS: "0",
  });
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    const ready = await service.readiness();
    assert.equal(ready?.status, 200, JSON.stringify(ready?.body));

    const chunks: ChatStreamChunk[] = [];
    client.subscribe("ai.chat.response.stream.p1", {
      callback: (_, msg) => {
        chunks.push(decode(ChatStreamChunkSchema, msg.data));
      },
    });
    await client.flush();
    const msg = await client.request(
      "ai.chat.user.u1.message",
      encode(ChatRequestSchema, {
        requestId: "p1",
        message: "What does JetStream add to NATS?",
        enableRag: true,
        enableReranker: true,
        enableStreaming: true,
        enableTts: true,
        premium: true,
      }),
      { timeout: 20_000 },
    );
    const response = decode(ChatResponseSchema, msg.data);
    assert.equal(response.success, true, response.error);
    assert.equal(response.response, "Streams keep messages on disk.");
    assert.equal(response.userId, "u1");
    assert.equal(response.usedRag, true);
    assert.equal(response.ragSources[0], "JetStream adds persistence to NATS.");
    assert.equal(new TextDecoder().decode(response.audio.subarray(0, 4)), "RIFF");
    assert.equal(chunks.map((c) => c.content).join(""), response.response);
    assert.equal(chunks.at(-1)?.done, true);
    assert.equal((llm.requests[0]!.json as Record<string, unknown>).model, "premium-model");

    const greeting = await client.request(
      "ai.chat.user.u1.greeting.request",
      encode(GreetingRequestSchema, { nickname: "Ada" }),
      { timeout: 20_000 },
    );
    assert.equal(
      decode(GreetingResponseSchema, greeting.data).greeting,
      "Streams keep messages on disk.",
    );
  } finally {
    await client.close();
    const status = await service.stop();
    assert.equal(status.code, 0, service.lines.join("\n"));
  }
  const log = service.lines.join("\n");
  assert.ok(!log.includes("NotCapable"), log);
});

Deno.test("services/chat.ts exits 78 naming every bad variable", async () => {
  const { code, stderr: message } = await runEntryToExit({
    entry: "services/chat.ts",
    flags: ["-P=chat-handler"],
    cwd: ROOT,
    env: { VLLM_URL: "not a url", CHAT_MAX_QUERY_CHARS: "0" },
  });
  assert.equal(code, 78, message);
  assert.match(message, /VLLM_URL/);
  assert.match(message, /CHAT_MAX_QUERY_CHARS/);
});

Deno.test("services/chat.ts with CONSUME_MODE=jetstream answers what COMPANIONS_CHAT stored", async () => {
  await using server = await startNatsServer({ jetstream: true });
  await using llm = startFakeLlm({ reply: "From the stream." });
  const client = await connectNats({ servers: server.url, name: "client" });
  const responses = collect(client, "ai.chat.response.*", ChatResponseSchema);
  const chunks = collect(client, "ai.chat.response.stream.*", ChatStreamChunkSchema);
  const greetings = collect(client, "ai.chat.user.*.greeting.response", GreetingResponseSchema);
  const answered = (id: string) => (all: { subject: string }[]) =>
    all.some((m) => m.subject === `ai.chat.response.${id}`);
  let service: Awaited<ReturnType<typeof startChatHandler>> | undefined;
  try {
    await ensureStreams(client, { only: ["COMPANIONS_CHAT"] });
    // Stored while no chat-handler runs.
    client.publish(
      "ai.chat.user.u1.message",
      encode(ChatRequestSchema, { requestId: "early", message: "hi" }),
    );
    client.publish(
      "ai.chat.user.u1.greeting.request",
      encode(GreetingRequestSchema, { nickname: "Ada" }),
    );
    await client.flush();

    service = await startChatHandler(server, {
      VLLM_URL: llm.url,
      CONSUME_MODE: "jetstream",
      ENSURE_STREAMS: "true",
      CHAT_STREAM_MIN_INTERVAL_MS: "0",
    });
    const early = (await responses.until(answered("early"), { timeoutMs: 20_000 }))
      .find((m) => m.subject === "ai.chat.response.early")!;
    assert.equal(early.response, "From the stream.");
    assert.equal(early.userId, "u1");
    const [greeting] = await greetings.until((m) => m.length === 1, { timeoutMs: 20_000 });
    assert.equal(greeting!.subject, "ai.chat.user.u1.greeting.response");
    assert.equal(greeting!.greeting, "From the stream.");

    // A request on a stored subject is answered by the stream's ack; the
    // answer arrives on the per-id subjects.
    const ack = await client.request(
      "ai.chat.user.u2.message",
      encode(ChatRequestSchema, { requestId: "live", message: "hi", enableStreaming: true }),
      { timeout: 20_000 },
    );
    assert.equal(JSON.parse(new TextDecoder().decode(ack.data)).stream, "COMPANIONS_CHAT");
    // Both collectors see messages in arrival order on one connection: when
    // the response is in, so is every chunk before it, the last one done.
    let chunksBefore: ChatStreamChunk[] = [];
    await responses.until((all) => {
      chunksBefore = chunks.messages.filter((c) => c.subject === "ai.chat.response.stream.live");
      return answered("live")(all);
    }, { timeoutMs: 20_000 });
    assert.equal(chunksBefore.at(-1)?.done, true);
    assert.equal(chunksBefore.map((c) => c.content).join(""), "From the stream.");

    // ai.chat.request is in no stream: still request-reply from the service.
    const reply = await client.request(
      "ai.chat.request",
      encode(ChatRequestSchema, { message: "direct" }),
      { timeout: 20_000 },
    );
    assert.equal(decode(ChatResponseSchema, reply.data).response, "From the stream.");
    const log = service.lines.join("\n");
    assert.ok(log.includes("jetstream_endpoints"), log);
  } finally {
    responses.close();
    chunks.close();
    greetings.close();
    await client.close();
    if (service) {
      const status = await service.stop();
      assert.equal(status.code, 0, service.lines.join("\n"));
    }
  }
});
