/**
 * Test helpers of stt-module: real speech made at test time by `espeak-ng`
 * and converted by `sox` to 16 kHz mono s16le, and streams that mix it with
 * silence and noise at known offsets.
 *
 * Requires `--allow-run=espeak-ng,sox` and read/write access to a temporary
 * directory.
 *
 * @example
 * ```ts ignore
 * import { mixStream, speak } from "./test_helpers.ts";
 *
 * const hello = await speak("turn on the kitchen lights");
 * const { pcm, utterances } = mixStream([1000, hello, 1500], { noise: 300 });
 * ```
 *
 * @module
 */

const cache = new Map<string, Int16Array>();

/**
 * Speaks a phrase with espeak-ng and returns 16 kHz mono 16-bit samples
 * (cached per phrase within the process).
 */
export async function speak(text: string, rate = 16000): Promise<Int16Array> {
  const key = `${rate}:${text}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const dir = await Deno.makeTempDir({ prefix: "stt_speech_" });
  try {
    const wav = `${dir}/speech.wav`;
    const raw = `${dir}/speech.raw`;
    await run("espeak-ng", ["-w", wav, text]);
    await run("sox", [
      wav,
      "-r",
      String(rate),
      "-c",
      "1",
      "-b",
      "16",
      "-e",
      "signed-integer",
      "-t",
      "raw",
      raw,
    ]);
    const bytes = await Deno.readFile(raw);
    const samples = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2).slice();
    cache.set(key, samples);
    return samples;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(command: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(command, {
    args,
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (code !== 0) {
    throw new Error(`${command} failed (${code}): ${new TextDecoder().decode(stderr)}`);
  }
}

/** Where an utterance sits in a mixed stream. */
export interface Placed {
  /** Start, in milliseconds of stream time. */
  startMs: number;
  /** End, in milliseconds of stream time. */
  endMs: number;
}

/** A mixed stream. */
export interface MixedStream {
  /** 16 kHz mono samples. */
  samples: Int16Array;
  /** The same as little-endian bytes. */
  pcm: Uint8Array;
  /** Where each speech part sits. */
  utterances: Placed[];
}

/**
 * Concatenates parts: a number is that many milliseconds of silence (or of
 * noise when `noise` is set), samples are speech. Noise is added over the
 * whole stream with the given peak amplitude (deterministic).
 */
export function mixStream(
  parts: readonly (number | Int16Array)[],
  options: { noise?: number; rate?: number; seed?: number } = {},
): MixedStream {
  const rate = options.rate ?? 16000;
  const lengths = parts.map((p) =>
    typeof p === "number" ? Math.round((p * rate) / 1000) : p.length
  );
  const total = lengths.reduce((a, b) => a + b, 0);
  const samples = new Int16Array(total);
  const utterances: Placed[] = [];
  let offset = 0;
  parts.forEach((part, i) => {
    if (typeof part !== "number") {
      samples.set(part, offset);
      utterances.push({
        startMs: (offset * 1000) / rate,
        endMs: ((offset + part.length) * 1000) / rate,
      });
    }
    offset += lengths[i]!;
  });
  if (options.noise) {
    let state = options.seed ?? 12345;
    for (let i = 0; i < total; i++) {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      const n = ((state / 0x7fffffff) * 2 - 1) * options.noise;
      samples[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i]! + n)));
    }
  }
  const pcm = new Uint8Array(samples.buffer.slice(0));
  return { samples, pcm, utterances };
}
