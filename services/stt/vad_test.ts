import assert from "node:assert/strict";
import { createVad, loadFvad, type Vad } from "./vad.ts";

/** 20 ms at 16 kHz of a voiced-like signal: a 200 Hz fundamental with harmonics and a little noise. */
function voiced(frameIndex: number): Int16Array {
  const frame = new Int16Array(320);
  for (let i = 0; i < frame.length; i++) {
    const t = (frameIndex * 320 + i) / 16000;
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(2 * Math.PI * 200 * h * t) / h;
    frame[i] = Math.round(6000 * v + 200 * Math.sin(i * 12.9898));
  }
  return frame;
}

function decisions(vad: Vad, frames: number): boolean[] {
  return Array.from({ length: frames }, (_, i) => vad.isSpeech(voiced(i)));
}

Deno.test("libfvad, instantiated without the Emscripten glue, tells a voiced signal from silence", async () => {
  const fvad = await loadFvad();
  using vad = createVad(fvad, { mode: 0 });
  assert.equal(vad.isSpeech(new Int16Array(320)), false);
  assert.ok(decisions(vad, 50).slice(10).every(Boolean));
});

Deno.test("libfvad's heap grows for many detectors and each still classifies as a fresh one", async () => {
  const fvad = await loadFvad();
  const memory = () => (fvad.exports as { HEAP16: Int16Array }).HEAP16.buffer.byteLength;
  const before = memory();
  using first = createVad(fvad, { mode: 0 });
  const expected = decisions(first, 30);
  const many: Vad[] = [];
  try {
    while (memory() === before) {
      many.push(createVad(fvad, { mode: 0, sampleRate: 48000, frameMs: 30 }));
    }
    assert.ok(many.length > 0);
    using late = createVad(fvad, { mode: 0 });
    assert.deepEqual(decisions(late, 30), expected);
    first.reset();
    assert.deepEqual(decisions(first, 30), expected);
  } finally {
    for (const vad of many) vad[Symbol.dispose]();
  }
});
