import assert from "node:assert/strict";
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { InvalidArgumentError } from "@homelab/handler-base/errors";
import { checkVoiceAudio, languageCode, ttsLanguage } from "./audio.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** What a call throws (fails when it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail("it did not throw");
}

Deno.test("checkVoiceAudio() accepts WAV of any layout and raw 16-bit PCM, with their duration", () => {
  assert.deepEqual(checkVoiceAudio(new Uint8Array(16000), 1 << 20), {
    kind: "pcm",
    durationMs: 500,
  });
  const wav = wrapPcmAsWav(new Uint8Array(44100 * 4), { sampleRate: 44100, channels: 2 });
  assert.deepEqual(checkVoiceAudio(wav, 1 << 20), { kind: "wav", durationMs: 1000 });
});

Deno.test("checkVoiceAudio() refuses what is not WAV or raw 16-bit PCM, saying what it is", () => {
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(0), /the audio is empty$/],
    [new Uint8Array(101), /101 bytes, more than the limit of 100$/],
    [new Uint8Array(7), /7 bytes are not whole 16-bit samples; send WAV/],
    [text("OggS\0\0\0\0"), /the audio is Ogg;/],
    [text("fLaC\0\0\0\0"), /the audio is FLAC;/],
    [text("ID3\x04\0\0\0\0"), /the audio is MP3;/],
    [Uint8Array.of(0x1a, 0x45, 0xdf, 0xa3, 0, 0), /the audio is WebM\/Matroska;/],
    [text("\0\0\0\x20ftypM4A "), /the audio is MP4\/M4A;/],
    [text("RIFF\0\0\0\0AVI LIST"), /a RIFF file that is not WAVE/],
    [wrapPcmAsWav(new Uint8Array(0)), /the WAV file holds no samples/],
    [
      wrapPcmAsWav(new Uint8Array(40)).subarray(0, 50),
      /the WAV file is invalid \(Cannot parse WAV/,
    ],
  ];
  for (const [audio, message] of cases) {
    const error = thrown(() => checkVoiceAudio(audio, 100));
    assert.ok(error instanceof InvalidArgumentError);
    assert.match((error as Error).message, /^Cannot transcribe the request: /);
    assert.match((error as Error).message, message);
  }
});

Deno.test("languageCode() keeps the primary ISO code and refuses anything else", () => {
  assert.equal(languageCode(""), "");
  assert.equal(languageCode("EN"), "en");
  assert.equal(languageCode("pt_BR"), "pt");
  assert.throws(() => languageCode("english"), /is not a language code/);
  assert.throws(() => languageCode("en us"), InvalidArgumentError);
  assert.equal(ttsLanguage("zh"), "zh-cn");
  assert.equal(ttsLanguage("fr"), "fr");
});
