/**
 * Where the STT streams' time goes under load (issue #18), run by hand:
 * `deno run --allow-all tests/system/stt_probe.ts --rate=2.2 --duration=20s`.
 *
 * On the whole system (local stand-ins, every service of the table), it
 * measures:
 *
 * 1. the stand-in's own time per transcription of the workload's utterance,
 *    uploaded straight to `WHISPER_URL` one at a time (its capacity);
 * 2. STT streams alone at `--rate` for `--duration`, with the stand-in, and
 *    how many transcriptions stt-module asked of it per stream;
 * 3. the same with a fake Whisper that answers at once (stt-module's own cost).
 *
 * It prints a Markdown report on stdout.
 *
 * @example
 * ```sh
 * deno run --allow-all tests/system/stt_probe.ts --rate=1 --duration=20s
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startFakeWhisper } from "../../handler_base/testing/mod.ts";
import { startSystem } from "./harness.ts";
import { durationMs, fmt, statsTable } from "./report.ts";
import { runWorkload, workloadTypes } from "./workload.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rate: { type: "string", default: "2.2" },
    duration: { type: "string", default: "20s" },
    timeout: { type: "string", default: "60s" },
  },
});
const rate = Number(values.rate);
const duration = durationMs(values.duration);
const timeoutMs = durationMs(values.timeout);
const out: string[] = [];
const line = (text = "") => {
  out.push(text);
  console.error(text);
};

line(`# STT probe ${new Date().toISOString()}`);
line();
line(
  `rate ${rate}/s for ${values.duration}, timeout ${values.timeout}; ${navigator.hardwareConcurrency} CPUs`,
);
const dir = await Deno.makeTempDir({ prefix: "stt-probe-" });
try {
  for (const backend of ["stand-in", "fake"] as const) {
    await using whisper = startFakeWhisper();
    await using system = await startSystem({
      nats: "single",
      consumeMode: "core",
      ...(backend === "fake" ? { env: { WHISPER_URL: whisper.url } } : {}),
    });
    // Unpaced (the mix paces STT to the stand-in): this measures where the time goes.
    const stt = workloadTypes(dir).filter((t) => t.name === "stt").map(({ maxRate: _, ...t }) => t);
    // One stream first: it makes the utterance (through tts-module) and warms up.
    await runWorkload(system.nc, stt, { rate: 1, durationMs: 1000, timeoutMs });
    line();
    line(`## Whisper: ${backend}`);
    line();
    if (backend === "stand-in") {
      const speech = await Deno.readFile(`${dir}/speech.wav`);
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const form = new FormData();
        form.set("file", new Blob([speech]), "speech.wav");
        form.set("model", "whisper");
        const t0 = performance.now();
        const response = await fetch(`${system.env.WHISPER_URL}/v1/audio/transcriptions`, {
          method: "POST",
          body: form,
        });
        await response.arrayBuffer();
        times.push(performance.now() - t0);
      }
      const seconds = (speech.length - 44) / 2 / 16_000;
      line(
        `The stand-in alone, the utterance (${fmt(seconds)} s of audio at 16 kHz), one at a time: ${
          times.map((t) => `${fmt(t)} ms`).join(", ")
        }`,
      );
    }
    const cpu0 = await system.sample();
    const before = whisper.requests.length;
    const t0 = performance.now();
    const stats = await runWorkload(system.nc, stt, { rate, durationMs: duration, timeoutMs });
    const elapsed = (performance.now() - t0) / 1000;
    const cpu1 = await system.sample();
    line();
    statsTable(stats, line);
    line();
    const cpu = (name: string) =>
      fmt((cpu1.get(name)?.cpuSeconds ?? 0) - (cpu0.get(name)?.cpuSeconds ?? 0));
    line(
      `- elapsed ${fmt(elapsed)} s; CPU seconds: stt-module ${cpu("stt-module")}, ` +
        `tts-module ${cpu("tts-module")}`,
    );
    if (backend === "fake") {
      const sent = stats.get("stt")!.sent;
      line(
        `- transcriptions asked of Whisper: ${
          whisper.requests.length - before
        } for ${sent} streams`,
      );
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
console.log(out.join("\n"));
