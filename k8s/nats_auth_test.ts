import assert from "node:assert/strict";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import { Kvm } from "@nats-io/kv";
import {
  AudioEncoding,
  ChatRequestSchema,
  EmptySchema,
  encode,
  ErrorResponseSchema,
  PipelineStatusSchema,
  PipelineTriggerSchema,
  STTStreamMessageSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
  VoiceRequestSchema,
  VoiceResponseSchema,
} from "@homelab/handler-base/messages";
import { connectNats, type NatsConnection, publish, request } from "@homelab/handler-base/natsutil";
import {
  closedPortUrl,
  collect,
  startFakeKubernetes,
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

/** How each service of the table shows it works with its own user: one exchange on its subjects. */
const PROBES: Record<string, (url: string, admin: NatsConnection) => Promise<void>> = {
  async "tts-module"(url, admin) {
    await using _tts = await startServiceProcess({
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
  },
  async "chat-handler"(url, admin) {
    await using _chat = await startServiceProcess({
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
  },
  async "pipeline-bridge"(url, admin) {
    // Its default mode: the durable consumer on AI_PIPELINE, with the JetStream API of its user.
    await ensureStreams(admin, { only: ["AI_PIPELINE"] });
    await using k8s = startFakeKubernetes({ namespace: "ai-ml" });
    const kubeconfig = await Deno.makeTempFile({ suffix: ".kubeconfig" });
    try {
      await Deno.writeTextFile(kubeconfig, k8s.kubeconfig());
      using statuses = collect(admin, "ai.pipeline.status.auth-1", PipelineStatusSchema);
      await using _bridge = await startServiceProcess({
        entry: `${root}services/pipeline_bridge.ts`,
        flags: ["-P=pipeline-bridge", `--allow-read=${kubeconfig}`],
        env: serviceEnv(url, "pipeline-bridge", {
          KUBECONFIG: kubeconfig,
          KUBEFLOW_HOST: closedPortUrl(),
        }),
      });
      publish(admin, "ai.pipeline.trigger", PipelineTriggerSchema, {
        requestId: "auth-1",
        pipeline: "no-such-pipeline",
      });
      const [status] = await statuses.until((all) => all.length > 0);
      assert.equal(status?.status, "error");
      assert.ok(status?.availablePipelines.includes("document-ingestion"));
    } finally {
      await Deno.remove(kubeconfig);
    }
  },
  async "voice-assistant"(url, admin) {
    using responses = collect(admin, "ai.voice.response.auth-1", VoiceResponseSchema);
    await using _voice = await startServiceProcess({
      entry: `${root}services/voice.ts`,
      flags: ["-P=voice-assistant"],
      env: serviceEnv(url, "voice-assistant"),
    });
    await assert.rejects(
      request(
        admin,
        "ai.voice.request",
        VoiceRequestSchema,
        {
          requestId: "auth-1",
          audio: new Uint8Array([1, 2, 3]),
        },
        VoiceResponseSchema,
        { timeout: 5000 },
      ),
      (error: unknown) => (error as { type?: string }).type === "InvalidArgument",
    );
    const [response] = await responses.until((all) => all.length > 0);
    assert.match(response?.error ?? "", /not whole 16-bit samples/);
  },
  async "stt-module"(url, admin) {
    // Session affinity opens the stt_sessions bucket with the service's own user; /ready
    // stays 503 until it is open, so serving at all proves the key-value rights.
    using results = collect(admin, "ai.voice.transcription.auth-1", ErrorResponseSchema);
    await using stt = await startServiceProcess({
      entry: `${root}services/stt.ts`,
      flags: ["-P=stt-module"],
      env: serviceEnv(url, "stt-module", { STT_AFFINITY: "kv" }),
    });
    await stt.waitForReadiness(200);
    publish(admin, "ai.voice.stream.auth-1", STTStreamMessageSchema, {
      type: "start",
      audioEncoding: AudioEncoding.MP3,
    });
    const [error] = await results.until((all) => all.length > 0);
    assert.equal(error?.type, "InvalidArgument");
    const claims = await new Kvm(admin).open("stt_sessions");
    assert.ok(await claims.get("auth-1"), "the session was claimed in the bucket");
  },
};

Deno.test("every service of the table works with its own broker user", async (t) => {
  assert.deepEqual(
    SERVICES.map((s) => s.name).filter((name) => !(name in PROBES)),
    [],
    "a service without a probe here",
  );
  await using auth = await startAuthorizedServer();
  const admin = await connectAs(auth.server.url, "admin");
  try {
    for (const service of SERVICES) {
      await t.step(service.name, () => PROBES[service.name]!(auth.server.url, admin));
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
