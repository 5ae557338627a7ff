import assert from "node:assert/strict";
import { ConfigError, configVarNames, loadConfig } from "@homelab/handler-base/config";
import { milvusBaseUrl } from "@homelab/handler-base/clients/milvus";
import { chatClientsFromConfig, chatHandlerOptionsFromConfig } from "./config.ts";
import { chatService } from "./service.ts";
import { DEFAULT_SYSTEM_PROMPT } from "./prompt.ts";

const chatConfigSpec = chatService.spec;

const DENO_JSON = new URL("../../deno.json", import.meta.url);

Deno.test("the chat-handler permission set allows exactly the variables of chatConfigSpec", async () => {
  const { permissions } = JSON.parse(await Deno.readTextFile(DENO_JSON));
  const declared = permissions?.["chat-handler"];
  assert.ok(declared, "deno.json has no chat-handler permission set");
  assert.deepEqual(declared.env, configVarNames(chatConfigSpec));
  for (const host of ["127.0.0.1", "localhost", "0.0.0.0", "nats.ai-ml.svc.cluster.local:4222"]) {
    assert.ok(declared.net.includes(host), host);
  }
});

Deno.test("the chat-handler permission set reaches every default backend host", async () => {
  const { permissions } = JSON.parse(await Deno.readTextFile(DENO_JSON));
  const net: string[] = permissions["chat-handler"].net;
  const config = loadConfig(chatConfigSpec, {});
  const urls = [
    config.vllmUrl,
    config.embeddingsUrl,
    config.rerankerUrl,
    config.ttsUrl,
    milvusBaseUrl(config.milvusHost, config.milvusPort),
  ];
  for (const url of urls) {
    const { hostname, host } = new URL(url);
    assert.ok(net.includes(host) || net.includes(hostname), `${url} is not in the net list`);
  }
});

Deno.test("chatConfigSpec defaults follow SYSTEM.md section 6", () => {
  const config = loadConfig(chatConfigSpec, {});
  assert.equal(config.vllmUrl, "http://llm-draft.ai-ml.svc.cluster.local:8000");
  assert.equal(config.collection, "knowledge_base");
  assert.equal(config.enableTts, false);
  assert.equal(config.llmPremiumModel, undefined);
  assert.equal(config.systemPrompt, DEFAULT_SYSTEM_PROMPT);
  assert.equal(config.streamMinIntervalMs, 20);
  assert.equal(
    milvusBaseUrl(config.milvusHost, config.milvusPort),
    "http://milvus.ai-ml.svc.cluster.local:19530",
  );
});

Deno.test("chatConfigSpec reports every bad variable at once", () => {
  let error: unknown;
  try {
    loadConfig(chatConfigSpec, {
      VLLM_URL: "llm:8000",
      ENABLE_TTS: "maybe",
      CHAT_STREAM_MIN_INTERVAL_MS: "-5",
      MILVUS_PORT: "99999",
    });
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(
    error.problems.map((p) => p.name).sort(),
    ["CHAT_STREAM_MIN_INTERVAL_MS", "ENABLE_TTS", "MILVUS_PORT", "VLLM_URL"],
  );
});

Deno.test("milvusBaseUrl() takes a host name or a URL", () => {
  assert.equal(milvusBaseUrl("127.0.0.1", 19530), "http://127.0.0.1:19530");
  assert.equal(milvusBaseUrl("https://milvus.example.com", 443), "https://milvus.example.com");
  assert.equal(milvusBaseUrl("http://milvus:1/ignored", 2), "http://milvus:2");
});

Deno.test("chatClientsFromConfig() and chatHandlerOptionsFromConfig() carry the settings", () => {
  const config = loadConfig(chatConfigSpec, {
    ENABLE_TTS: "true",
    TTS_API: "openai",
    CHAT_SYSTEM_PROMPT: "Be brief.",
    CHAT_STREAM_MIN_INTERVAL_MS: "0",
    CHAT_TIMEOUT_MS: "30s",
  });
  assert.equal(chatClientsFromConfig(config).tts?.api, "openai");
  const options = chatHandlerOptionsFromConfig(config);
  assert.equal(options.enableTts, true);
  assert.equal(options.systemPrompt, "Be brief.");
  assert.equal(options.streamMinIntervalMs, 0);
  assert.equal(options.timeoutMs, 30_000);
});
