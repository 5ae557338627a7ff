import assert from "node:assert/strict";
import { ConfigError, configVarNames, loadConfig } from "@homelab/handler-base/config";
import { DEFAULT_TTS_URL } from "./config.ts";
import { ttsService } from "./service.ts";

const ttsConfigSpec = ttsService.spec;

Deno.test("the tts-module permission set allows exactly the variables the config reads", async () => {
  const denoJson = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  const permissions = denoJson.permissions["tts-module"];
  assert.deepEqual(permissions.env, configVarNames(ttsConfigSpec));
  assert.deepEqual(permissions.read, ["/voices"]);
  assert.ok(permissions.net.includes(new URL(DEFAULT_TTS_URL).host));
  assert.ok(permissions.net.includes("nats.ai-ml.svc.cluster.local:4222"));
});

Deno.test("ttsConfigSpec has the documented defaults", () => {
  const config = loadConfig(ttsConfigSpec, {});
  assert.equal(config.ttsUrl, DEFAULT_TTS_URL);
  assert.equal(config.ttsApi, "xtts");
  assert.equal(config.ttsTimeoutMs, 60_000);
  assert.equal(config.ttsDefaultSpeaker, undefined);
  assert.equal(config.ttsVoicesDir, undefined);
  assert.equal(config.ttsVoicesRefreshMs, 60_000);
  assert.equal(config.ttsMaxChars, 5000);
  assert.equal(config.ttsMaxReferenceBytes, 10 * 1024 * 1024);
  assert.equal(config.ttsMaxConcurrency, 4);
  assert.equal(config.ttsRequestTimeoutMs, 300_000);
});

Deno.test("ttsConfigSpec reports every bad variable at once", () => {
  assert.throws(
    () =>
      loadConfig(ttsConfigSpec, {
        TTS_URL: "nats://tts:1",
        TTS_API: "coqui",
        TTS_MAX_CHARS: "0",
        TTS_MAX_CONCURRENCY: "many",
        TTS_VOICES_REFRESH_MS: "soon",
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((p) => p.name), [
        "TTS_URL",
        "TTS_API",
        "TTS_VOICES_REFRESH_MS",
        "TTS_MAX_CHARS",
        "TTS_MAX_CONCURRENCY",
      ]);
      return true;
    },
  );
});
