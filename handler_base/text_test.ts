import assert from "node:assert/strict";
import { countCodePoints, exceedsCodePoints, truncateText } from "./text.ts";

const SMILEY = "\u{1F600}";
const WAVE_MEDIUM = "\u{1F44B}\u{1F3FD}"; // waving hand + skin tone: 2 code points, 1 cluster
const FAMILY = "\u{1F468}\u200D\u{1F469}\u200D\u{1F467}"; // 5 code points, 1 cluster
const E_ACUTE = "e\u0301"; // 2 code points, 1 cluster

Deno.test("countCodePoints() counts astral characters once and lone surrogates once", () => {
  assert.deepEqual(countCodePoints(""), 0);
  assert.deepEqual(countCodePoints(SMILEY.repeat(8000)), 8000);
  assert.deepEqual(countCodePoints(FAMILY), 5);
  assert.deepEqual(countCodePoints("a\uD800b\uDC00"), 4);
  assert.deepEqual(countCodePoints(SMILEY.repeat(100), { stopAfter: 9 }), 10);
});

Deno.test("exceedsCodePoints() checks the limit in code points, not UTF-16 units", () => {
  const text = SMILEY.repeat(8000);
  assert.deepEqual(exceedsCodePoints(text, 8000), false);
  assert.deepEqual(exceedsCodePoints(text + "x", 8000), true);
  assert.deepEqual(exceedsCodePoints("abc", 3), false);
  assert.deepEqual(exceedsCodePoints("abcd", 3), true);
});

Deno.test("truncateText() never splits a surrogate pair or a grapheme cluster", () => {
  for (const cluster of [SMILEY, WAVE_MEDIUM, FAMILY, E_ACUTE, "\u{1F1EB}\u{1F1F7}"]) {
    const text = "x".repeat(255) + cluster + "tail";
    const cut = truncateText(text, 256);
    // The cluster did not fit whole (except a 1-code-point one): it is dropped whole.
    const expected = countCodePoints(cluster) === 1 ? "x".repeat(255) + cluster : "x".repeat(255);
    assert.deepEqual(cut, expected);
    assert.deepEqual(cut.includes("\uFFFD"), false);
    assert.deepEqual(new TextDecoder().decode(new TextEncoder().encode(cut)), cut);
  }
  assert.deepEqual(truncateText(SMILEY.repeat(300), 256), SMILEY.repeat(256));
  assert.deepEqual(truncateText(`cafe${E_ACUTE.slice(1)}s`, 5), `cafe${E_ACUTE.slice(1)}`);
});

Deno.test("truncateText() keeps a text within the limit as it is", () => {
  const text = FAMILY.repeat(3);
  assert.deepEqual(truncateText(text, 15), text);
  assert.deepEqual(truncateText("", 0), "");
});

Deno.test("truncateText() cuts one oversized cluster between code points, never to nothing", () => {
  const zalgo = "Z" + "\u0336".repeat(500);
  const cut = truncateText(zalgo, 10);
  assert.deepEqual(countCodePoints(cut), 10);
  assert.deepEqual(cut.startsWith("Z"), true);
  assert.deepEqual(truncateText(FAMILY, 2), "\u{1F468}\u200D");
});

Deno.test("truncateText() counts the ellipsis toward the limit", () => {
  assert.deepEqual(truncateText("a long message", 7, { ellipsis: "…" }), "a long…");
  assert.deepEqual(truncateText(SMILEY.repeat(10), 4, { ellipsis: "…" }), SMILEY.repeat(3) + "…");
  assert.deepEqual(truncateText("abcdef", 1, { ellipsis: "..." }), ".");
  assert.throws(() => truncateText("abc", -1), RangeError);
});
