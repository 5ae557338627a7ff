/**
 * The whole stack on one machine, in one command: a `nats-server` with
 * JetStream, fake ML backends that speak the real HTTP shapes (LLM,
 * embeddings, reranker, Milvus, XTTS), and every service run with exactly its
 * permission set from deno.json, as in production.
 *
 * Run: `deno task stack` (Ctrl-C stops everything), or
 * `deno task stack --smoke` to start it, send one chat and one TTS request
 * through NATS, print the answers and stop (CI runs this).
 *
 * Options: `--nats-port=4222` (0 for a free port), `--smoke`.
 *
 * @module
 */
import { connectNats } from "../handler_base/natsutil.ts";
import { chat } from "../handler_base/cli/chat.ts";
import { createUi } from "../handler_base/cli/output.ts";
import { tts } from "../handler_base/cli/speech.ts";
import {
  startFakeEmbeddings,
  startFakeLlm,
  startFakeMilvus,
  startFakeReranker,
  startFakeXtts,
} from "../handler_base/testing/mod.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";
import { freePort } from "../handler_base/testing/ports.ts";

/** The services of the stack: permission set (= service name), entry file, health port. */
const SERVICES = [
  { name: "chat-handler", entry: "services/chat.ts", healthPort: 8081 },
  { name: "tts-module", entry: "services/tts.ts", healthPort: 8082 },
] as const;

const args = new Set(Deno.args);
const smoke = args.has("--smoke");
const natsPortArg = Deno.args.find((a) => a.startsWith("--nats-port="))?.split("=")[1];
const root = new URL("../", import.meta.url);

function log(message: string): void {
  console.log(`[stack] ${message}`);
}

await using nats = await startNatsServer({
  jetstream: true,
  port: Number(natsPortArg ?? (smoke ? 0 : 4222)),
});
log(`nats-server ${nats.url} (JetStream store ${nats.storeDir})`);

await using llm = startFakeLlm({
  reply: (request) => {
    const messages = request.messages as Array<{ role: string; content: string }> | undefined;
    const question = messages?.findLast((m) => m.role === "user")?.content ?? "";
    return `This is the local stack's fake LLM. You asked: ${question.slice(0, 200)}`;
  },
  delayMs: 15,
});
await using embeddings = startFakeEmbeddings();
await using reranker = startFakeReranker();
await using milvus = startFakeMilvus();
await using xtts = startFakeXtts();
log(`fake backends: llm ${llm.url}, embeddings ${embeddings.url}, reranker ${reranker.url}`);
log(`               milvus ${milvus.url}, xtts ${xtts.url}`);

const milvusUrl = new URL(milvus.url);
const env: Record<string, string> = {
  NATS_URL: nats.url,
  LOG_LEVEL: "info",
  VLLM_URL: llm.url,
  EMBEDDINGS_URL: embeddings.url,
  RERANKER_URL: reranker.url,
  MILVUS_HOST: milvusUrl.hostname,
  MILVUS_PORT: milvusUrl.port,
  TTS_URL: xtts.url,
};

const children = SERVICES.map((declared) => {
  const service = { ...declared, healthPort: smoke ? freePort() : declared.healthPort };
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", `-P=${service.name}`, service.entry],
    cwd: root.pathname,
    env: { ...env, HEALTH_PORT: String(service.healthPort) },
    stdin: "null",
  }).spawn();
  log(`${service.name}: pid ${child.pid}, health http://127.0.0.1:${service.healthPort}/ready`);
  return { ...service, child };
});

async function waitReady(): Promise<void> {
  for (const service of children) {
    for (let attempt = 0;; attempt++) {
      const status = await fetch(`http://127.0.0.1:${service.healthPort}/ready`)
        .then(async (r) => (await r.body?.cancel(), r.status))
        .catch(() => 0);
      if (status === 200) break;
      if (attempt > 600) throw new Error(`${service.name} is not ready after 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  log("all services are ready");
}

async function stopAll(): Promise<number> {
  let failures = 0;
  for (const { child, name } of children) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const status = await child.status;
    if (status.code !== 0) {
      failures++;
      log(`${name} exited with ${status.code}`);
    }
  }
  return failures;
}

/** One streamed chat and one TTS request through NATS, as the CLI sends them. */
async function smokeTest(): Promise<void> {
  const nc = await connectNats({ servers: nats.url, name: "stack-smoke" });
  const ui = createUi({ stdout: () => {}, stderr: () => {} });
  const dir = await Deno.makeTempDir({ prefix: "stack-smoke-" });
  try {
    const ctx = { nc, ui, timeoutMs: 60_000 };
    const answer = await chat(ctx, {
      question: "What is in the knowledge base?",
      rag: true,
      stream: true,
    });
    log(`chat answer: ${answer.response} (used_rag=${answer.usedRag}, ${answer.chunks} chunks)`);
    const speech = await tts(ctx, { text: "Hello from the stack", output: `${dir}/hello.wav` });
    log(`tts audio: ${speech.bytes} bytes at ${speech.sampleRate} Hz`);
  } finally {
    await nc.close();
    await Deno.remove(dir, { recursive: true });
  }
}

let failed = false;
try {
  await waitReady();
  if (smoke) {
    await smokeTest();
  } else {
    log(`try: deno task cli chat "What is JetStream?" --rag --stream --nats ${nats.url}`);
    log(`     deno task cli tts "Hello" -o hello.wav --nats ${nats.url}`);
    log("Ctrl-C stops the stack");
    await new Promise<void>((resolve) => {
      const stop = () => {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
        resolve();
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
    });
  }
} catch (error) {
  failed = true;
  log(`${error instanceof Error ? error.message : error}`);
} finally {
  if (await stopAll() > 0) failed = true;
  log("stopped");
}
if (failed) Deno.exit(1);
