/**
 * Resident memory of tts-module under a soak of hostile and normal messages.
 * Starts a nats-server, a fake XTTS and the real entry file
 * (`deno run -P=tts-module services/tts.ts`, with the V8 flags given), then
 * sends `--n` requests, `--concurrency` at a time, of which `--hostile` (a
 * fraction) are hostile: bytes that are not protobuf, a wrong `Msg-Type`,
 * text over `TTS_MAX_CHARS`, a 600 KB `speaker_wav_b64` that is not base64,
 * an unknown speaker, empty text, and a 900 KB payload of zeros. Every
 * `--every` messages it samples `VmRSS` from `/proc/<pid>/status` and the heap
 * from `/ready` (`details.memory`, from `Deno.memoryUsage()`), and at the end
 * it waits `--idle-ms` and samples again. Prints a markdown table.
 *
 * Run (about a minute for the default 4,000 messages):
 * `deno run -A bench/memory_soak.ts [--n=4000] [--hostile=0.75] [--v8-flags=...]`
 * With the flags the manifests and permission sets use:
 * `deno run -A bench/memory_soak.ts --v8-flags=--max-old-space-size=96,--max-semi-space-size=4`
 * `--malloc-arena-max=2` sets `MALLOC_ARENA_MAX` for the service (glibc's
 * per-thread arenas). For a longer soak raise `--n` (the figures came
 * from 40,000).
 *
 * @module
 */
import { headers as natsHeaders } from "@nats-io/nats-core";
import {
  encode,
  MSG_TYPE_HEADER,
  TTSFullResponseSchema,
  TTSRequestSchema,
} from "@homelab/handler-base/messages";
import { connectNats, request } from "@homelab/handler-base/natsutil";
import { startFakeXtts, startNatsServer, startServiceProcess } from "@homelab/handler-base/testing";

const args = Object.fromEntries(
  Deno.args.map((a) => {
    const at = a.indexOf("=");
    return [a.slice(2, at), a.slice(at + 1)] as [string, string];
  }),
);
const n = Number(args.n ?? 4000);
const hostileShare = Number(args.hostile ?? 0.75);
const concurrency = Number(args.concurrency ?? 16);
const every = Number(args.every ?? Math.max(100, Math.floor(n / 10)));
const idleMs = Number(args["idle-ms"] ?? 5000);
const v8Flags = args["v8-flags"];
const mallocArenaMax = args["malloc-arena-max"];

const ROOT = new URL("../", import.meta.url).pathname;
await using server = await startNatsServer({ jetstream: false });
await using xtts = startFakeXtts();
const dir = await Deno.makeTempDir();
await using tts = await startServiceProcess({
  entry: `${ROOT}services/tts.ts`,
  flags: ["-P=tts-module", `--allow-read=${dir}`, ...(v8Flags ? [`--v8-flags=${v8Flags}`] : [])],
  cwd: ROOT,
  env: {
    NATS_URL: server.url,
    TTS_URL: xtts.url,
    TTS_VOICES_DIR: dir,
    LOG_LEVEL: "info",
    ...(mallocArenaMax ? { MALLOC_ARENA_MAX: mallocArenaMax } : {}),
  },
});
const nc = await connectNats({ servers: server.url, name: "soak" });

function rssMiB(): number {
  const status = Deno.readTextFileSync(`/proc/${tts.child.pid}/status`);
  const kb = Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1] ?? 0);
  return Math.round(kb / 102.4) / 10;
}

async function heap(): Promise<Record<string, number>> {
  const ready = await tts.readiness();
  const details = ready?.body.details as { memory?: Record<string, number> } | undefined;
  return details?.memory ?? {};
}

const garbage = new Uint8Array(64).fill(0xff);
const wrongType = natsHeaders();
wrongType.set(MSG_TYPE_HEADER, "messages.v1.ChatRequest");
const zeros = new Uint8Array(900 * 1024);
const notBase64 = "!".repeat(600 * 1024);
const hostile: ((i: number) => Promise<unknown>)[] = [
  (i) => nc.request(`ai.voice.tts.request.h${i}`, garbage, { timeout: 10_000 }),
  (i) =>
    nc.request(`ai.voice.tts.request.h${i}`, encode(TTSRequestSchema, { text: "hi" }), {
      timeout: 10_000,
      headers: wrongType,
    }),
  (i) => send(i, { text: "x".repeat(6000) }),
  (i) => send(i, { text: "Hello.", speakerWavB64: notBase64 }),
  (i) => send(i, { text: "Hello.", speaker: `nobody-${i}` }),
  (i) => send(i, { text: "" }),
  (i) => nc.request(`ai.voice.tts.request.h${i}`, zeros, { timeout: 10_000 }),
];

function send(i: number, init: Parameters<typeof encode<typeof TTSRequestSchema>>[1]) {
  return request(nc, `ai.voice.tts.request.s${i}`, TTSRequestSchema, init, TTSFullResponseSchema, {
    timeout: 10_000,
  });
}

const rows: string[] = [];
async function sample(label: string) {
  const memory = await heap();
  rows.push(
    `| ${label} | ${rssMiB()} | ${memory.heap_total_mib ?? "?"} | ${
      memory.heap_used_mib ?? "?"
    } | ${memory.external_mib ?? "?"} |`,
  );
}

await sample("start");
let sent = 0;
let failures = 0;
async function worker() {
  while (sent < n) {
    const i = sent++;
    const isHostile = (i * 0.618034) % 1 < hostileShare;
    const call = isHostile ? hostile[i % hostile.length]!(i) : send(i, { text: `Sentence ${i}.` });
    await call.catch(() => failures++);
    if ((i + 1) % every === 0) await sample(`${i + 1} messages`);
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
await new Promise((resolve) => setTimeout(resolve, idleMs));
await sample(`idle ${idleMs} ms later`);

console.log(
  `tts-module soak: ${n} messages (${Math.round(hostileShare * 100)}% hostile), ` +
    `${concurrency} at a time, V8 flags: ${v8Flags ?? "none"}, ` +
    `MALLOC_ARENA_MAX: ${mallocArenaMax ?? "unset"}; ${failures} answered with errors\n`,
);
console.log("| after | VmRSS MiB | V8 heap total MiB | V8 heap used MiB | external MiB |");
console.log("| --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
await nc.close();
await tts.stop();
await Deno.remove(dir, { recursive: true });
