import assert from "node:assert/strict";
import { isWav, parseWav } from "../clients/wav.ts";
import {
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeXtts,
  startTestService,
} from "../testing/mod.ts";
import { chatService } from "../../services/chat/service.ts";
import { runIn, tempDir } from "./testdata/cli_helpers.ts";

async function startChat(reply = "Streams keep messages on disk.") {
  const llm = startFakeLlm({ reply, delayMs: 5 });
  const embeddings = startFakeEmbeddings();
  const milvus = startFakeMilvus();
  const reranker = startFakeReranker();
  const xtts = startFakeXtts();
  const service = await startTestService({
    definition: chatService,
    env: {
      VLLM_URL: llm.url,
      EMBEDDINGS_URL: embeddings.url,
      RERANKER_URL: reranker.url,
      MILVUS_HOST: "127.0.0.1",
      MILVUS_PORT: new URL(milvus.url).port,
      TTS_URL: xtts.url,
      CHAT_STREAM_MIN_INTERVAL_MS: "0",
    },
  });
  return {
    service,
    llm,
    async [Symbol.asyncDispose]() {
      await service[Symbol.asyncDispose]();
      for (const fake of [llm, embeddings, milvus, reranker, xtts]) {
        await fake[Symbol.asyncDispose]();
      }
    },
  };
}

Deno.test("cli chat --rag --stream prints the tokens and the answer of chat-handler", async () => {
  await using chat = await startChat();
  const run = await runIn(chat.service.url, [
    "chat",
    "What does JetStream add?",
    "--rag",
    "--stream",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "Streams keep messages on disk.\n");
  assert.match(run.stderr, /used_rag=true, [1-9]\d* chunks/);
  assert.match(run.stderr, /Sources: JetStream adds persistence to NATS\./);
});

Deno.test("cli chat --json writes tokens then one result, each line one JSON object", async () => {
  await using chat = await startChat();
  const run = await runIn(chat.service.url, ["chat", "Hi", "--stream", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, "");
  const tokens = run.events.filter((e) => e.type === "token");
  assert.ok(tokens.length > 1, JSON.stringify(run.events));
  assert.equal(tokens.map((t) => t.content).join(""), "Streams keep messages on disk.");
  const last = run.events.at(-1)!;
  assert.equal(last.type, "result");
  assert.equal(last.command, "chat");
  assert.equal(last.response, "Streams keep messages on disk.");
  assert.equal(last.chunks, tokens.length);
  assert.equal(run.events.indexOf(last), run.events.length - 1);
});

Deno.test("cli chat without --stream prints the whole answer, and --tts writes a WAV", async () => {
  await using chat = await startChat("Short answer.");
  await using dir = await tempDir();
  const file = `${dir.path}/answer.wav`;
  const run = await runIn(chat.service.url, ["chat", "Hi", "--tts", file]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "Short answer.\n");
  const wav = await Deno.readFile(file);
  assert.ok(isWav(wav));
  assert.ok(parseWav(wav).data.length > 0);
});

Deno.test("cli greet prints chat-handler's greeting", async () => {
  await using chat = await startChat("Hello Ada, welcome back!");
  const run = await runIn(chat.service.url, ["greet", "ada", "--nickname", "Ada", "--json"]);
  assert.equal(run.code, 0, JSON.stringify(run.events));
  assert.deepEqual(run.events, [{
    type: "result",
    command: "greet",
    userId: "ada",
    greeting: "Hello Ada, welcome back!",
  }]);
});

Deno.test("cli chat: chat-handler's refusal of an empty question is exit code 1", async () => {
  await using chat = await startChat();
  const run = await runIn(chat.service.url, ["chat", " "]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^error: chat-handler answered: Cannot chat: .+\n$/m);
});

Deno.test("cli chat with no chat-handler is exit code 4 with a one-line hint", async () => {
  await using chat = await startChat();
  await chat.service.stop();
  const run = await runIn(chat.service.url, ["chat", "Hi"]);
  assert.equal(run.code, 4);
  assert.equal(
    run.stderr.split("\n").filter((l) => l.startsWith("error:")).join("\n"),
    "error: No service answers on ai.chat.request (is chat-handler running?)",
  );
});
