import assert from "node:assert/strict";
import { formatReadiness, startLocalBackends } from "./mod.ts";

Deno.test("startLocalBackends() starts every stand-in and says where and what each is", async () => {
  await using backends = await startLocalBackends({ llm: { tokenIntervalMs: 1 } });
  assert.deepEqual(Object.keys(backends.urls), [
    "llm",
    "embeddings",
    "reranker",
    "milvus",
    "tts",
    "stt",
  ]);
  assert.equal(new Set(Object.values(backends.urls)).size, 6);
  assert.equal(backends.env.WHISPER_URL, backends.urls.stt);
  assert.equal(backends.env.COLLECTION_NAME, "knowledge_base");
  assert.equal(
    `http://${backends.env.MILVUS_HOST}:${backends.env.MILVUS_PORT}`,
    backends.urls.milvus,
  );
  const lines = backends.summary();
  assert.equal(lines.length, 6);
  assert.match(lines[4]!, /^tts +http:\/\/127\.0\.0\.1:\d+ +stand-in: real speech: flite-slt/);
  for (const url of Object.values(backends.urls)) {
    const response = await fetch(`${url}/nowhere`);
    assert.equal(response.status, 404);
    await response.body?.cancel();
  }
});

Deno.test("formatReadiness() names the fallback and what to install", () => {
  assert.equal(
    formatReadiness({
      backend: "stt",
      url: "http://127.0.0.1:1",
      standIn: "a placeholder text",
      ok: false,
      hint: "apt-get install pocketsphinx",
    }),
    "stt        http://127.0.0.1:1     FALLBACK: a placeholder text (missing: apt-get install pocketsphinx)",
  );
});
