/**
 * Helpers shared by the tests of tts-module: WAV and voice-folder builders
 * (collecting messages is the test kit's `collect`). Used only by tests.
 *
 * Requires `--allow-write` for voice folders.
 *
 * @module
 */
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";

/**
 * A WAV file of 24 kHz mono 16-bit samples.
 *
 * @param samples How many samples.
 * @returns The file bytes.
 */
export function testWav(samples: number): Uint8Array<ArrayBuffer> {
  const pcm = new Int16Array(samples).map((_, i) => (i * 37) % 2000);
  return wrapPcmAsWav(new Uint8Array(pcm.buffer), { sampleRate: 24000 });
}

/**
 * Writes a voice folder.
 *
 * @param dir The voices directory.
 * @param name The voice's name.
 * @param files File names mapped to contents; an object is written as JSON.
 */
export async function writeVoice(
  dir: string,
  name: string,
  files: Record<string, Uint8Array | string | Record<string, unknown>>,
): Promise<void> {
  await Deno.mkdir(`${dir}/${name}`, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    const path = `${dir}/${name}/${file}`;
    if (content instanceof Uint8Array) await Deno.writeFile(path, content);
    else if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeTextFile(path, JSON.stringify(content));
  }
}
