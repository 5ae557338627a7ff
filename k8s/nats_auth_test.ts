import assert from "node:assert/strict";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import {
  ChatRequestSchema,
  EmptySchema,
  encode,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
} from "@homelab/handler-base/messages";
import { connectNats, type NatsConnection, request } from "@homelab/handler-base/natsutil";
import {
  closedPortUrl,
  collect,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";
import { natsAuthorization, passwordVariable } from "../scripts/nats_auth.ts";
import { SERVICES } from "../services/table.ts";

const root = new URL("../", import.meta.url).pathname;
const password = (user: string) => `pw-${user}`;

/** A nats-server with the generated authorization block, passwords filled in. */
async function startAuthorizedServer() {
  let block = natsAuthorization(SERVICES);
  for (const user of ["admin", ...SERVICES.map((s) => s.name)]) {
    block = block.replace(`$${passwordVariable(user)}`, JSON.stringify(password(user)));
  }
  const conf = await Deno.makeTempFile({ suffix: ".conf" });
  await Deno.writeTextFile(conf, block);
  const server = await startNatsServer({ args: ["-c", conf] });
  return {
    server,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      await Deno.remove(conf);
    },
  };
}

function connectAs(url: string, user: string): Promise<NatsConnection> {
  return connectNats({ servers: url, name: `auth-test-${user}`, user, password: password(user) });
}

function serviceEnv(url: string, user: string, extra: Record<string, string> = {}) {
  const env: Record<string, string> = {
    NATS_URL: url,
    NATS_USER: user,
    NATS_PASSWORD: password(user),
    ...extra,
  };
  for (const name of ["VLLM_URL", "EMBEDDINGS_URL", "RERANKER_URL", "TTS_URL", "WHISPER_URL"]) {
    env[name] = closedPortUrl();
  }
  return env;
}

Deno.test("each service works with its own broker user", async () => {
  await using auth = await startAuthorizedServer();
  const url = auth.server.url;
  const admin = await connectAs(url, "admin");
  try {
    {
      await using tts = await startServiceProcess({
        entry: `${root}services/tts.ts`,
        flags: ["-P=tts-module"],
        env: serviceEnv(url, "tts-module"),
      });
      const voices = await request(
        admin,
        "ai.voice.tts.voices.list",
        EmptySchema,
        {},
        TTSVoiceListResponseSchema,
        { timeout: 5000 },
      );
      assert.equal(typeof voices.defaultSpeaker, "string");
      await tts.stop();
    }
    {
      await using chat = await startServiceProcess({
        entry: `${root}services/chat.ts`,
        flags: ["-P=chat-handler"],
        env: serviceEnv(url, "chat-handler"),
      });
      await assert.rejects(
        request(admin, "ai.chat.request", ChatRequestSchema, {}, ChatRequestSchema, {
          timeout: 5000,
        }),
        (error: unknown) => (error as { type?: string }).type === "InvalidArgument",
      );
      await chat.stop();
    }
  } finally {
    await admin.close();
  }
});

Deno.test("tts-module consumes its durable JetStream consumer with its own user", async () => {
  await using auth = await startAuthorizedServer();
  const url = auth.server.url;
  const admin = await connectAs(url, "admin");
  try {
    await ensureStreams(admin, { only: ["AI_VOICE_STREAM"] });
    using statuses = collect(admin, "ai.voice.tts.status.s1", TTSStatusSchema);
    await using tts = await startServiceProcess({
      entry: `${root}services/tts.ts`,
      flags: ["-P=tts-module"],
      env: serviceEnv(url, "tts-module", { CONSUME_MODE: "jetstream", JETSTREAM_MAX_DELIVER: "1" }),
    });
    admin.publish("ai.voice.tts.request.s1", encode(TTSRequestSchema, { text: "hello" }));
    const seen = await statuses.until((all) => all.some((s) => s.status === "error"));
    assert.ok(seen.some((s) => s.status === "processing"), "the consumer took the message");
    await tts.stop();
  } finally {
    await admin.close();
  }
});

Deno.test("a service's user cannot publish outside its rights", async () => {
  await using auth = await startAuthorizedServer();
  const url = auth.server.url;
  const admin = await connectAs(url, "admin");
  const tts = await connectAs(url, "tts-module");
  try {
    const received: string[] = [];
    admin.subscribe("ai.>", { callback: (_e, msg) => void received.push(msg.subject) });
    await admin.flush();
    tts.publish("ai.chat.response.r1", new Uint8Array([1]));
    tts.publish("ai.voice.tts.status.s1", new Uint8Array([1]));
    await tts.flush();
    await admin.flush();
    for (let i = 0; i < 100 && received.length === 0; i++) await admin.flush();
    assert.deepEqual(received, ["ai.voice.tts.status.s1"]);
  } finally {
    await tts.close().catch(() => {});
    await admin.close();
  }
});
