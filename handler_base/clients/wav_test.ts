import assert from "node:assert/strict";
import { InvalidArgumentError } from "../errors.ts";
import { FrameAligner, isWav, parseWav, WAV_HEADER_BYTES, wavHeader, wrapPcmAsWav } from "./wav.ts";

function fixture(name: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(`./testdata/${name}`, import.meta.url));
}

/** Plain 44-byte-header files: written by sox and espeak-ng. */
const PLAIN_FIXTURES = [
  { name: "sine_16k_mono_s16.wav", sampleRate: 16000, channels: 1, bitDepth: 16 },
  { name: "sine_24k_stereo_s16.wav", sampleRate: 24000, channels: 2, bitDepth: 16 },
  { name: "sine_8k_mono_u8.wav", sampleRate: 8000, channels: 1, bitDepth: 8 },
  { name: "espeak_a_22k_mono_s16.wav", sampleRate: 22050, channels: 1, bitDepth: 16 },
];

for (const { name, ...format } of PLAIN_FIXTURES) {
  Deno.test(`wrapPcmAsWav() rebuilds ${name} byte for byte`, async () => {
    const file = await fixture(name);
    const pcm = file.subarray(WAV_HEADER_BYTES);
    const wav = wrapPcmAsWav(pcm, format);
    for (let i = 0; i < WAV_HEADER_BYTES; i++) {
      assert.equal(wav[i], file[i], `header byte ${i}`);
    }
    assert.deepEqual(wav, file);
  });

  Deno.test(`parseWav() reads ${name}`, async () => {
    const file = await fixture(name);
    const { format: parsed, data } = parseWav(file);
    assert.deepEqual(parsed, { ...format, sampleFormat: "pcm" });
    assert.equal(data.byteOffset, file.byteOffset + WAV_HEADER_BYTES);
    assert.equal(data.length, file.length - WAV_HEADER_BYTES);
  });
}

Deno.test("wavHeader() writes the documented fields", () => {
  const header = wavHeader(48000, { sampleRate: 24000, channels: 1, bitDepth: 16 });
  const view = new DataView(header.buffer);
  const ascii = (at: number) => new TextDecoder().decode(header.subarray(at, at + 4));
  assert.equal(header.length, 44);
  assert.equal(ascii(0), "RIFF");
  assert.equal(view.getUint32(4, true), 36 + 48000);
  assert.equal(ascii(8), "WAVE");
  assert.equal(ascii(12), "fmt ");
  assert.equal(view.getUint32(16, true), 16);
  assert.equal(view.getUint16(20, true), 1);
  assert.equal(view.getUint16(22, true), 1);
  assert.equal(view.getUint32(24, true), 24000);
  assert.equal(view.getUint32(28, true), 48000);
  assert.equal(view.getUint16(32, true), 2);
  assert.equal(view.getUint16(34, true), 16);
  assert.equal(ascii(36), "data");
  assert.equal(view.getUint32(40, true), 48000);
});

Deno.test("wrapPcmAsWav() defaults to 16 kHz mono 16-bit", () => {
  const { format } = parseWav(wrapPcmAsWav(new Uint8Array(4)));
  assert.deepEqual(format, { sampleRate: 16000, channels: 1, bitDepth: 16, sampleFormat: "pcm" });
});

Deno.test("wrapPcmAsWav() rejects a partial frame and wavHeader() a bad format", () => {
  assert.throws(() => wrapPcmAsWav(new Uint8Array(3)), InvalidArgumentError);
  assert.throws(() => wrapPcmAsWav(new Uint8Array(6), { channels: 2 }), /whole number of 4-byte/);
  assert.throws(() => wavHeader(0, { bitDepth: 12 }), RangeError);
  assert.throws(() => wavHeader(0, { sampleRate: 0 }), RangeError);
  assert.throws(() => wavHeader(0, { channels: 0 }), RangeError);
  assert.throws(() => wavHeader(-1), RangeError);
});

Deno.test("parseWav() reads WAVE_FORMAT_EXTENSIBLE 24-bit and skips the fact chunk", async () => {
  const file = await fixture("sine_16k_mono_s24_extensible.wav");
  const { format, data } = parseWav(file);
  assert.deepEqual(format, { sampleRate: 16000, channels: 1, bitDepth: 24, sampleFormat: "pcm" });
  assert.equal(data.length, 80 * 3);
  assert.equal(data.byteOffset + data.length, file.byteOffset + file.length);
});

/** Inserts a chunk right after the RIFF/WAVE header, fixing the RIFF size. */
function withChunkBeforeFmt(wav: Uint8Array, id: string, body: Uint8Array): Uint8Array {
  const padded = body.length + (body.length % 2);
  const out = new Uint8Array(wav.length + 8 + padded);
  out.set(wav.subarray(0, 12));
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(id), 12);
  view.setUint32(16, body.length, true);
  out.set(body, 20);
  out.set(wav.subarray(12), 20 + padded);
  view.setUint32(4, out.length - 8, true);
  return out;
}

Deno.test("parseWav() skips a LIST chunk of odd length and its pad byte", () => {
  const pcm = new Uint8Array([1, 2, 3, 4, 5, 6]);
  const wav = withChunkBeforeFmt(wrapPcmAsWav(pcm), "LIST", new TextEncoder().encode("INFOabc"));
  assert.equal(wav.length, 44 + 6 + 8 + 8);
  assert.deepEqual(parseWav(wav).data, pcm);
});

Deno.test("parseWav() rejects malformed input with InvalidArgumentError", () => {
  const good = wrapPcmAsWav(new Uint8Array(8));
  const mutate = (at: number, value: number, size: 2 | 4 = 4) => {
    const copy = good.slice();
    const view = new DataView(copy.buffer);
    if (size === 4) view.setUint32(at, value, true);
    else view.setUint16(at, value, true);
    return copy;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /RIFF\/WAVE header is missing/],
    ["not RIFF", new TextEncoder().encode("ID3 something that is not a wav"), /header is missing/],
    ["no chunks", good.subarray(0, 12), /fmt chunk is missing/],
    ["no data chunk", good.subarray(0, 36), /data chunk is missing/],
    ["truncated data", good.subarray(0, 48), /data chunk is truncated \(4 of 8 bytes\)/],
    ["truncated fmt", good.subarray(0, 30), /fmt chunk is truncated/],
    ["short fmt", mutate(16, 12), /less than 16/],
    ["compressed", mutate(20, 0x55, 2), /format tag 85/],
    ["no channels", mutate(22, 0, 2), /channel count is 0/],
    ["bad block align", mutate(32, 3, 2), /block align/],
    ["odd bit depth", mutate(34, 12, 2), /bit depth 12/],
  ];
  for (const [name, bytes, message] of cases) {
    assert.throws(
      () => parseWav(bytes),
      (error: Error) => error instanceof InvalidArgumentError && message.test(error.message),
      name,
    );
  }
  const dataFirst = new Uint8Array([
    ...good.subarray(0, 12),
    ...good.subarray(36),
    ...good.subarray(12, 36),
  ]);
  assert.throws(() => parseWav(dataFirst), /data chunk comes before the fmt chunk/);
});

Deno.test("parseWav() with streaming accepts a header written before the length was known", () => {
  const header = wrapPcmAsWav(new Uint8Array(0), { sampleRate: 24000 });
  const pcm = new Uint8Array([9, 8, 7, 6]);
  const stream = new Uint8Array([...header, ...pcm]);
  assert.equal(parseWav(stream).data.length, 0);
  const parsed = parseWav(stream, { streaming: true });
  assert.deepEqual(parsed.data, pcm);
  assert.equal(parsed.format.sampleRate, 24000);
  const longer = new Uint8Array([...wrapPcmAsWav(new Uint8Array(100)).subarray(0, 44), ...pcm]);
  assert.deepEqual(parseWav(longer, { streaming: true }).data, pcm);
});

Deno.test("isWav() checks the RIFF/WAVE magic only", () => {
  assert.ok(isWav(wrapPcmAsWav(new Uint8Array(2))));
  assert.ok(!isWav(new Uint8Array(44)));
  assert.ok(!isWav(new TextEncoder().encode("RIFF")));
});

Deno.test("FrameAligner cuts pieces at whole frames and keeps the bytes in order", () => {
  const aligner = new FrameAligner(4);
  const pieces = [[1], [2, 3, 4, 5, 6], [], [7, 8, 9, 10, 11, 12, 13]].map((p) =>
    new Uint8Array(p)
  );
  const out = pieces.map((piece) => [...aligner.push(piece)]);
  assert.deepEqual(out, [[], [1, 2, 3, 4], [], [5, 6, 7, 8, 9, 10, 11, 12]]);
  assert.deepEqual([...aligner.rest()], [13]);
  assert.throws(() => new FrameAligner(0), RangeError);
});
