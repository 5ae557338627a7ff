/**
 * The same failure matrix for every client, each against its own fake:
 * 500 and 400 are not retried, 503 is, a timeout and a caller abort close
 * the request, and malformed or oversized bodies are InvalidResponseError.
 */
import assert from "node:assert/strict";
import { BackendError, InvalidResponseError, TimeoutError } from "../errors.ts";
import {
  type FakeServer,
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeWhisper,
  startFakeXtts,
} from "../testing/mod.ts";
import type { ClientOptions } from "./http.ts";
import { createEmbeddingsClient } from "./embeddings.ts";
import { createLlmClient } from "./llm.ts";
import { createMilvusClient } from "./milvus.ts";
import { createRerankerClient } from "./reranker.ts";
import { createSttClient } from "./stt.ts";
import { createTtsClient } from "./tts.ts";
import { deadline } from "../async.ts";

type Call = (options: ClientOptions, signal?: AbortSignal) => Promise<unknown>;

const latents = { speakerEmbedding: [1], gptCondLatent: [[1]] };

const CLIENTS: { name: string; start: () => FakeServer; call: Call }[] = [
  {
    name: "llm generate",
    start: () => startFakeLlm(),
    call: (o, signal) => createLlmClient(o).generate([{ role: "user", content: "hi" }], { signal }),
  },
  {
    name: "llm stream",
    start: () => startFakeLlm(),
    call: (o, signal) =>
      Array.fromAsync(createLlmClient(o).stream([{ role: "user", content: "hi" }], { signal })),
  },
  {
    name: "embeddings",
    start: () => startFakeEmbeddings(),
    call: (o, signal) => createEmbeddingsClient(o).embed(["a", "b"], { signal }),
  },
  {
    name: "reranker",
    start: () => startFakeReranker(),
    call: (o, signal) =>
      createRerankerClient({ ...o, api: "cohere" }).rerank("q", ["a", "b"], { signal }),
  },
  {
    name: "milvus",
    start: () => startFakeMilvus(),
    call: (o, signal) => createMilvusClient(o).search([1, 2], { signal }),
  },
  {
    name: "stt",
    start: () => startFakeWhisper(),
    call: (o, signal) => createSttClient(o).transcribe(new Uint8Array(320), { signal }),
  },
  {
    name: "tts synthesize",
    start: () => startFakeXtts(),
    call: (o, signal) => createTtsClient(o).synthesize("Hello", { speaker: latents, signal }),
  },
  {
    name: "tts stream",
    start: () => startFakeXtts(),
    call: (o, signal) =>
      Array.fromAsync(createTtsClient(o).synthesizeStream("Hello", { speaker: latents, signal })),
  },
];

for (const { name, start, call } of CLIENTS) {
  const options = (fake: FakeServer, extra: Partial<ClientOptions> = {}): ClientOptions => ({
    baseUrl: fake.url,
    sleep: () => Promise.resolve(),
    ...extra,
  });

  Deno.test(`${name}: answers, retries 503, not 500 or 400`, async () => {
    await using fake = start();
    await call(options(fake));
    fake.failNext(503, { times: 2 });
    await call(options(fake));
    assert.equal(fake.requests.length, 4);
    for (const status of [500, 400]) {
      fake.failNext(status, { body: JSON.stringify({ detail: `status ${status}` }) });
      const error = await call(options(fake)).catch((e) => e);
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.status, status);
      assert.equal(error.excerpt, `status ${status}`);
    }
    assert.equal(fake.requests.length, 6);
  });

  Deno.test(`${name}: a timeout and a caller abort close the request`, async () => {
    await using fake = start();
    fake.hangNext(2);
    const timedOut = call(options(fake, { timeoutMs: 200 }));
    const first = await deadline(fake.nextRequest(), 10_000, { what: "the request" });
    await assert.rejects(timedOut, TimeoutError);
    await deadline(first.disconnected, 10_000, { what: "the client to close the request" });

    const controller = new AbortController();
    const cancelled = call(options(fake), controller.signal);
    const second = await deadline(fake.nextRequest(), 10_000, { what: "the request" });
    const reason = new Error("caller gave up");
    controller.abort(reason);
    assert.equal(await cancelled.catch((e) => e), reason);
    await deadline(second.disconnected, 10_000, { what: "the client to close the request" });
  });

  if (!name.endsWith("stream")) {
    Deno.test(`${name}: malformed and oversized bodies are InvalidResponseError`, async () => {
      await using fake = start();
      fake.override(() =>
        new Response("{oops", { headers: { "content-type": "application/json" } })
      );
      await assert.rejects(call(options(fake)), InvalidResponseError);
      fake.override(() => Response.json({ padding: "x".repeat(2000) }));
      const error = await call(options(fake, { maxBodyBytes: 1000 })).catch((e) => e);
      assert.ok(error instanceof InvalidResponseError);
      assert.match(error.message, /larger than 1000 bytes/);
    });
  }
}
