/**
 * Audio helpers of the speech stand-ins (internal): resample 16-bit mono PCM
 * with `sox`, and a short audible fallback (a tone per word) for when no
 * speech synthesizer is installed.
 *
 * Requires `--allow-run=sox` for resampling.
 *
 * @example
 * ```ts ignore
 * import { resamplePcm } from "./_audio.ts";
 *
 * const pcm24k = await resamplePcm("/usr/bin/sox", new Uint8Array(32000), 16000, 24000);
 * ```
 *
 * @module
 */
import { runProcess } from "./_process.ts";

const RAW = (
  rate: number,
) => ["-t", "raw", "-r", String(rate), "-e", "signed", "-b", "16", "-c", "1"];

/**
 * Resamples 16-bit little-endian mono PCM with sox.
 *
 * @param sox The sox program.
 * @param pcm The samples.
 * @param from Their rate.
 * @param to The wanted rate.
 * @param signal Kills sox.
 * @returns The resampled samples (the input itself when the rates are equal).
 * @throws {Error} When sox fails.
 */
export async function resamplePcm(
  sox: string,
  pcm: Uint8Array,
  from: number,
  to: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (from === to || pcm.byteLength === 0) return pcm;
  const { code, stdout, stderr } = await runProcess(
    sox,
    ["-V1", ...RAW(from), "-", ...RAW(to), "-"],
    { stdin: pcm, timeoutMs: 30_000, signal },
  );
  if (code !== 0) throw new Error(`Cannot resample audio: sox exited with ${code}: ${stderr}`);
  return stdout;
}

/**
 * A tone per word, as 16-bit mono PCM: what the TTS stand-in answers when no
 * synthesizer is installed, so the stack still produces valid audio.
 *
 * @param text The text.
 * @param sampleRate The rate.
 * @returns The samples.
 */
export function tonePcm(text: string, sampleRate: number): Uint8Array {
  const words = text.split(/\s+/).filter(Boolean).slice(0, 400);
  const toneSamples = Math.round(sampleRate * 0.18);
  const gapSamples = Math.round(sampleRate * 0.07);
  const samples = new Int16Array(words.length * (toneSamples + gapSamples));
  words.forEach((word, w) => {
    const frequency = 220 + (word.length % 8) * 40;
    const start = w * (toneSamples + gapSamples);
    for (let i = 0; i < toneSamples; i++) {
      const envelope = Math.min(1, i / 200, (toneSamples - i) / 200);
      samples[start + i] = Math.round(
        6000 * envelope *
          Math.sin((2 * Math.PI * frequency * i) / sampleRate),
      );
    }
  });
  return new Uint8Array(samples.buffer);
}
