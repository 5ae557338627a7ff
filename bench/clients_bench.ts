/**
 * Benchmarks of the backend clients' hot paths: the SSE parser and the WAV
 * wrapper on fixed 1 MiB payloads (throughput = 1 MiB / time per iteration),
 * and the latency the HTTP layer adds to a bare `fetch` of a local server.
 *
 * Run: `deno bench --allow-net=127.0.0.1 bench/clients_bench.ts`
 *
 * @module
 */
import { createHttpClient } from "../handler_base/clients/http.ts";
import { parseSse, SseParseStream } from "../handler_base/clients/sse.ts";
import { parseWav, wrapPcmAsWav } from "../handler_base/clients/wav.ts";
import { chatCompletionEvents } from "../handler_base/testing/fake_llm.ts";

const MIB = 1024 * 1024;
const READ_BYTES = 16 * 1024;

/** About 1 MiB of OpenAI stream events, cut into 16 KiB reads. */
function sseReads(): Uint8Array[] {
  const deltas: string[] = [];
  let text = "";
  while (text.length < MIB) {
    text = chatCompletionEvents(deltas).join("");
    deltas.push(...Array.from({ length: 200 }, (_, i) => `tok${i} `));
  }
  const bytes = new TextEncoder().encode(text).subarray(0, MIB);
  const reads: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += READ_BYTES) reads.push(bytes.subarray(i, i + READ_BYTES));
  return reads;
}

const reads = sseReads();

Deno.bench("TextDecoder only, 1 MiB in 16 KiB reads", { group: "sse", baseline: true }, () => {
  const decoder = new TextDecoder();
  for (const read of reads) decoder.decode(read, { stream: true });
});

Deno.bench("parseSse(), 1 MiB in 16 KiB reads", { group: "sse" }, async () => {
  let events = 0;
  for await (const _ of parseSse(reads)) events++;
  if (events === 0) throw new Error("no events");
});

Deno.bench("SseParseStream, 1 MiB in 16 KiB reads", { group: "sse" }, async () => {
  let events = 0;
  for await (const _ of ReadableStream.from(reads).pipeThrough(new SseParseStream())) events++;
  if (events === 0) throw new Error("no events");
});

const pcm = new Uint8Array(MIB).map((_, i) => i & 0xff);
const wav = wrapPcmAsWav(pcm);

Deno.bench("copy 1 MiB (new Uint8Array)", { group: "wav", baseline: true }, () => {
  new Uint8Array(pcm);
});

Deno.bench("wrapPcmAsWav(), 1 MiB of PCM", { group: "wav" }, () => {
  wrapPcmAsWav(pcm);
});

Deno.bench("parseWav(), 1 MiB WAV", { group: "wav" }, () => {
  parseWav(wav);
});

const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  () => Response.json({ ok: true }),
);
const url = `http://127.0.0.1:${server.addr.port}`;
const http = createHttpClient("bench", { baseUrl: url });

Deno.bench("bare fetch + json()", { group: "http", baseline: true }, async () => {
  const response = await fetch(`${url}/x`);
  await response.json();
});

Deno.bench("HttpClient.json() (timeout, signals, bounded read)", { group: "http" }, async () => {
  await http.json("/x");
});

Deno.bench("HttpClient.json() POST with a JSON body", { group: "http" }, async () => {
  await http.json("/x", { json: { input: ["hello"] } });
});
