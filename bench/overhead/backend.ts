/**
 * The backend of `bench/overhead.ts`, in its own process: the fake XTTS
 * (`startFakeXtts`, a short tone per character) answering each request after
 * a fixed delay, and recording its own time per request
 * (`RecordedRequest.handledMs`: from the request's arrival to its response).
 * Prints `READY <url>`; each line `dump` on stdin prints one JSON object
 * `{ "<text>": ms, ... }` of the requests since the last dump; stdin closed
 * ends it.
 *
 * Run as a subprocess: `deno run -A bench/overhead/backend.ts --delay-ms=2`.
 *
 * @module
 */
import { delay } from "../../handler_base/async.ts";
import { startFakeXtts } from "../../handler_base/testing/fake_xtts.ts";

const delayMs = Number(Deno.args.find((a) => a.startsWith("--delay-ms="))?.slice(11) ?? 2);
await using xtts = startFakeXtts({ samplesPerChar: 4 });
if (delayMs > 0) {
  xtts.override(async (request) => {
    if (request.path === "/tts") await delay(delayMs);
    return undefined;
  });
}
console.log(`READY ${xtts.url}`);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let buffered = "";
for await (const chunk of lines) {
  buffered += chunk;
  while (buffered.includes("\n")) {
    buffered = buffered.slice(buffered.indexOf("\n") + 1);
    const times: Record<string, number> = {};
    for (const r of xtts.requests.splice(0)) {
      const text = (r.json as { text?: unknown } | undefined)?.text;
      if (r.path === "/tts" && typeof text === "string" && r.handledMs !== undefined) {
        times[text] = r.handledMs;
      }
    }
    console.log(JSON.stringify(times));
  }
}
