import assert from "node:assert/strict";
import { deadline } from "@homelab/handler-base/async";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import { InvalidArgumentError } from "@homelab/handler-base/errors";
import { createLogger, type Logger } from "@homelab/handler-base/log";
import { startFakeXtts } from "@homelab/handler-base/testing";
import { testWav, writeVoice } from "./test_helpers.ts";
import { type IntervalTimers, startVoiceRegistry } from "./voices.ts";

/** A debug logger that keeps its lines and wakes waiters on each one. */
function recordingLogger() {
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  const logger: Logger = createLogger({
    service: "test",
    level: "debug",
    write: (line) => {
      lines.push(JSON.parse(line));
      for (const wake of waiters) wake();
    },
  });
  /** Resolves at the next line with this message. */
  function next(msg: string): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        if (lines.at(-1)?.msg !== msg) return;
        waiters.delete(wake);
        resolve();
      };
      waiters.add(wake);
    });
  }
  return { logger, lines, next };
}

/** Interval timers that fire only when the test says so. */
function manualIntervals() {
  const intervals = new Map<number, { fn: () => void; ms: number }>();
  let nextId = 1;
  const timers: IntervalTimers = {
    setInterval(fn, ms) {
      intervals.set(nextId, { fn, ms });
      return nextId++;
    },
    clearInterval(handle) {
      intervals.delete(handle as number);
    },
  };
  return {
    timers,
    /** The periods of the running intervals. */
    periods: () => [...intervals.values()].map((i) => i.ms),
    /** Fires every running interval once. */
    fire: () => [...intervals.values()].forEach((i) => i.fn()),
  };
}

const unusedTts = { cloneSpeaker: () => Promise.reject(new Error("Cannot clone in this test")) };

Deno.test("startVoiceRegistry() lists usable voices and skips broken folders with a log line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeVoice(dir, "narrator", {
      "reference.wav": testWav(2400),
      "metadata.json": {
        language: "de",
        model_type: "xtts_v2",
        created_at: "2026-11-02T11:30:00Z",
      },
    });
    await writeVoice(dir, "solo", { "take-3.WAV": testWav(100) });
    await writeVoice(dir, "chosen", {
      "reference.wav": testWav(100),
      "other.wav": testWav(100),
      "metadata.json": { language: "fr" },
    });
    await writeVoice(dir, "no-wav", { "metadata.json": { language: "en" } });
    await writeVoice(dir, "two-wavs", { "a.wav": testWav(10), "b.wav": testWav(10) });
    await writeVoice(dir, "bad-json", { "reference.wav": testWav(10), "metadata.json": "{nope" });
    await writeVoice(dir, "bad-field", {
      "reference.wav": testWav(10),
      "metadata.json": { language: 5 },
    });
    await writeVoice(dir, "json-array", { "reference.wav": testWav(10), "metadata.json": "[]" });
    await writeVoice(dir, "not-wav", { "reference.wav": "RIFF but not really" });
    await writeVoice(dir, "too-big", { "reference.wav": testWav(100_000) });
    await Deno.writeTextFile(`${dir}/README.md`, "Voices live here.");
    await Deno.mkdir(`${dir}/..data`);

    const { logger, lines } = recordingLogger();
    using voices = await startVoiceRegistry({
      dir,
      tts: unusedTts,
      logger,
      maxReferenceBytes: 100_000,
      refreshMs: 0,
    });
    assert.deepEqual(voices.list().map((v) => v.name), ["chosen", "narrator", "solo"]);
    assert.deepEqual(voices.get("narrator"), {
      name: "narrator",
      language: "de",
      modelType: "xtts_v2",
      createdAt: "2026-11-02T11:30:00Z",
    });
    const solo = voices.get("solo");
    const mtime = (await Deno.stat(`${dir}/solo/take-3.WAV`)).mtime;
    assert.deepEqual(solo, {
      name: "solo",
      language: "",
      modelType: "",
      createdAt: mtime?.toISOString(),
    });
    assert.ok(voices.lastRefresh > 0n);
    const skipped = lines.filter((l) => l.msg === "Skipping voice folder");
    assert.deepEqual(
      skipped.map((l) => l.voice).sort(),
      ["bad-field", "bad-json", "json-array", "no-wav", "not-wav", "too-big", "two-wavs"],
    );
    const reasons = Object.fromEntries(skipped.map((l) => [l.voice, String(l.reason)]));
    assert.match(reasons["no-wav"]!, /Cannot find a reference WAV/);
    assert.match(reasons["two-wavs"]!, /name one reference\.wav/);
    assert.match(reasons["bad-json"]!, /Cannot parse metadata\.json/);
    assert.match(reasons["bad-field"]!, /"language" is not a string/);
    assert.match(reasons["not-wav"]!, /Cannot parse WAV/);
    assert.match(reasons["too-big"]!, /exceed 100000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startVoiceRegistry() without a directory, or with a missing one, has no voices", async () => {
  const { logger, lines } = recordingLogger();
  using none = await startVoiceRegistry({ tts: unusedTts, logger });
  assert.deepEqual(none.list(), []);
  assert.deepEqual(await none.refresh(), []);
  using missing = await startVoiceRegistry({
    dir: "/nonexistent/voices",
    tts: unusedTts,
    logger,
    refreshMs: 0,
  });
  assert.deepEqual(missing.list(), []);
  assert.ok(lines.some((l) => l.msg === "Cannot find the voices directory: no custom voices"));
  await assert.rejects(() => missing.latents("narrator"), InvalidArgumentError);
});

Deno.test("latents() clones a voice once, shares the first computation, and clones again when the WAV changes", async () => {
  const dir = await Deno.makeTempDir();
  await using xtts = startFakeXtts();
  try {
    await writeVoice(dir, "narrator", { "reference.wav": testWav(1000) });
    const tts = createTtsClient({ baseUrl: xtts.url });
    const { logger } = recordingLogger();
    using voices = await startVoiceRegistry({ dir, tts, logger, refreshMs: 0 });
    const clones = () => xtts.requests.filter((r) => r.path === "/clone_speaker").length;

    const [first, second] = await Promise.all([
      voices.latents("narrator"),
      voices.latents("narrator"),
    ]);
    assert.equal(clones(), 1);
    assert.deepEqual(first, second);
    // The fake derives the latents from the size of the uploaded WAV.
    assert.equal(first.speakerEmbedding[0], (44 + 2000) / 1000);
    await voices.latents("narrator");
    assert.equal(clones(), 1);

    await Deno.writeFile(`${dir}/narrator/reference.wav`, testWav(3000));
    const changed = await voices.latents("narrator");
    assert.equal(clones(), 2);
    assert.equal(changed.speakerEmbedding[0], (44 + 6000) / 1000);

    // Same size, new modification time: the fingerprint changes too.
    await Deno.utime(`${dir}/narrator/reference.wav`, 1, new Date(2000, 0, 1));
    await voices.latents("narrator");
    assert.equal(clones(), 3);
    await voices.latents("narrator");
    assert.equal(clones(), 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latents() does not cache a failed computation", async () => {
  const dir = await Deno.makeTempDir();
  await using xtts = startFakeXtts();
  try {
    await writeVoice(dir, "narrator", { "reference.wav": testWav(1000) });
    const tts = createTtsClient({ baseUrl: xtts.url, retries: 0 });
    using voices = await startVoiceRegistry({
      dir,
      tts,
      logger: recordingLogger().logger,
      refreshMs: 0,
    });
    xtts.failNext(500, { path: "/clone_speaker" });
    await assert.rejects(() => voices.latents("narrator"), /status 500/);
    const latents = await voices.latents("narrator");
    assert.equal(latents.speakerEmbedding[0], 2.044);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("refresh() adds new voices, drops removed ones and forgets their latents", async () => {
  const dir = await Deno.makeTempDir();
  await using xtts = startFakeXtts();
  try {
    await writeVoice(dir, "narrator", { "reference.wav": testWav(1000) });
    const tts = createTtsClient({ baseUrl: xtts.url });
    using voices = await startVoiceRegistry({
      dir,
      tts,
      logger: recordingLogger().logger,
      refreshMs: 0,
    });
    await voices.latents("narrator");
    await writeVoice(dir, "oma", { "reference.wav": testWav(500) });
    assert.deepEqual(voices.list().map((v) => v.name), ["narrator"]);
    assert.deepEqual((await voices.refresh()).map((v) => v.name), ["narrator", "oma"]);

    await Deno.remove(`${dir}/narrator`, { recursive: true });
    assert.deepEqual((await voices.refresh()).map((v) => v.name), ["oma"]);
    await assert.rejects(() => voices.latents("narrator"), /there is no such voice/);

    // The same voice put back is cloned anew.
    await writeVoice(dir, "narrator", { "reference.wav": testWav(1000) });
    await voices.refresh();
    await voices.latents("narrator");
    assert.equal(xtts.requests.filter((r) => r.path === "/clone_speaker").length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latents() of a voice whose WAV vanished since the scan is a clear Internal error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeVoice(dir, "narrator", { "reference.wav": testWav(100) });
    using voices = await startVoiceRegistry({
      dir,
      tts: unusedTts,
      logger: recordingLogger().logger,
      refreshMs: 0,
    });
    await Deno.remove(`${dir}/narrator/reference.wav`);
    await assert.rejects(
      () => voices.latents("narrator"),
      (error: Error & { type?: string }) => {
        assert.equal(error.type, "Internal");
        assert.equal(error.message, 'Cannot use voice "narrator": its reference WAV is gone');
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the periodic scan finds a new voice, and stops when the signal fires", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { logger, next } = recordingLogger();
    const intervals = manualIntervals();
    const stop = new AbortController();
    const voices = await startVoiceRegistry({
      dir,
      tts: unusedTts,
      logger,
      refreshMs: 60_000,
      signal: stop.signal,
      timers: intervals.timers,
    });
    assert.deepEqual(voices.list(), []);
    assert.deepEqual(intervals.periods(), [60_000]);
    await writeVoice(dir, "oma", { "reference.wav": testWav(100) });
    const scanned = next("Scanned the voices directory");
    intervals.fire();
    await deadline(scanned, 10_000, { what: "the periodic scan" });
    assert.deepEqual(voices.list().map((v) => v.name), ["oma"]);
    stop.abort();
    assert.deepEqual(intervals.periods(), [], "the signal stops the periodic scan");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
