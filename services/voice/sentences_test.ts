import assert from "node:assert/strict";
import { SentenceChunker, type SentenceChunkerOptions, speakable } from "./sentences.ts";

/** Feeds the deltas one by one, then flushes; returns every sentence in order. */
function chunk(deltas: readonly string[], options: SentenceChunkerOptions = {}): string[] {
  const chunker = new SentenceChunker(options);
  return [...deltas.flatMap((delta) => chunker.push(delta)), ...chunker.flush()];
}

/** The text as one-character deltas: the hardest split for the scanner. */
function chars(text: string): string[] {
  return [...text];
}

Deno.test("SentenceChunker cuts at sentence ends once whitespace follows", () => {
  const text = "NATS is a messaging system. JetStream adds storage! Does it scale? Yes, it does.";
  const expected = [
    "NATS is a messaging system.",
    "JetStream adds storage!",
    "Does it scale?",
    "Yes, it does.",
  ];
  assert.deepEqual(chunk([text], { minChars: 5 }), expected);
  assert.deepEqual(chunk(chars(text), { minChars: 5 }), expected);
  assert.deepEqual(chunk(text.match(/\S+\s*/g)!, { minChars: 5 }), expected);
});

Deno.test("SentenceChunker emits a sentence as soon as the whitespace after it arrives", () => {
  const chunker = new SentenceChunker({ minChars: 5 });
  assert.deepEqual(chunker.push("The first sentence."), []);
  assert.deepEqual(chunker.push(" "), ["The first sentence."]);
  assert.deepEqual(chunker.push("The second"), []);
  assert.deepEqual(chunker.flush(), ["The second"]);
  assert.deepEqual(chunker.flush(), []);
});

Deno.test("SentenceChunker joins sentences shorter than minChars to the next", () => {
  assert.deepEqual(
    chunk(chars("Sure. Ok. NATS is a messaging system. Hi."), { minChars: 15 }),
    ["Sure. Ok. NATS is a messaging system.", "Hi."],
  );
});

Deno.test("SentenceChunker keeps numbers, abbreviations, initials and list numbers whole", () => {
  const text = "Pi is 3.14 roughly. Dr. Smith, e.g. the one in St. Louis, met J. R. R. Tolkien. " +
    "Done.\n1. First step here.\n2. Second step here.";
  assert.deepEqual(chunk(chars(text), { minChars: 5 }), [
    "Pi is 3.14 roughly.",
    "Dr. Smith, e.g. the one in St. Louis, met J. R. R. Tolkien.",
    "Done.",
    "1. First step here.",
    "2. Second step here.",
  ]);
});

Deno.test("SentenceChunker keeps closing quotes and repeated marks with their sentence", () => {
  assert.deepEqual(
    chunk(chars('He said "stop." Then he left... Really?! (It was late.) End'), { minChars: 3 }),
    ['He said "stop."', "Then he left...", "Really?!", "(It was late.)", "End"],
  );
});

Deno.test("SentenceChunker cuts at line breaks and skips blank pieces", () => {
  assert.deepEqual(chunk(chars("A heading line\n\n\nThe body text.\n  \n"), { minChars: 5 }), [
    "A heading line",
    "The body text.",
  ]);
});

Deno.test("SentenceChunker cuts full-width terminators without a space", () => {
  assert.deepEqual(chunk(chars("你好。我是助手！真的吗？"), { minChars: 1 }), [
    "你好。",
    "我是助手！",
    "真的吗？",
  ]);
});

Deno.test("SentenceChunker cuts a run-on sentence at maxChars: clause mark, else space, else hard", () => {
  assert.deepEqual(
    chunk(chars("one two three, four five six seven eight nine ten"), {
      minChars: 5,
      maxChars: 30,
    }),
    ["one two three,", "four five six seven eight nine", "ten"],
  );
  assert.deepEqual(chunk(["a".repeat(25)], { minChars: 0, maxChars: 10 }), [
    "a".repeat(10),
    "a".repeat(10),
    "a".repeat(5),
  ]);
  // A clause mark before minChars is not used: the cut falls at the last space.
  assert.deepEqual(chunk(["ab, cdef ghij klmn opqr"], { minChars: 8, maxChars: 12 }), [
    "ab, cdef",
    "ghij klmn",
    "opqr",
  ]);
});

Deno.test("SentenceChunker's hard cut never splits a surrogate pair or a combining sequence", () => {
  const emoji = "😀".repeat(15);
  const pieces = chunk([emoji], { minChars: 0, maxChars: 11 });
  assert.equal(pieces.join(""), emoji);
  for (const piece of pieces) {
    assert.ok(piece.isWellFormed(), JSON.stringify(piece));
    assert.ok(piece.length <= 11);
  }
  const accented = "e\u0301".repeat(8);
  for (const piece of chunk([accented], { minChars: 0, maxChars: 5 })) {
    assert.match(piece, /^(e\u0301)+$/);
  }
});

Deno.test("SentenceChunker never emits a piece longer than maxChars, nor loses text", () => {
  const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod";
  const text = Array.from(
    { length: 40 },
    (_, i) => words.split(" ").slice(0, 1 + (i * 7) % 11).join(", ") + (i % 3 ? ". " : "! "),
  ).join("");
  for (const split of [[text], chars(text), text.match(/.{1,7}/gs)!]) {
    const out = chunk(split, { minChars: 12, maxChars: 40 });
    for (const piece of out) assert.ok(piece.length <= 40, piece);
    assert.equal(out.join(" ").replace(/\s+/g, " "), text.trim().replace(/\s+/g, " "));
  }
});

Deno.test("SentenceChunker refuses bounds that make no sense", () => {
  assert.throws(() => new SentenceChunker({ minChars: -1 }), RangeError);
  assert.throws(() => new SentenceChunker({ minChars: 10, maxChars: 10 }), RangeError);
  assert.throws(() => new SentenceChunker({ maxChars: 1.5 }), RangeError);
});

Deno.test("speakable() removes Markdown marks and keeps the words", () => {
  assert.equal(speakable("- **NATS** is [fast](https://nats.io)."), "NATS is fast.");
  assert.equal(speakable("## Step `one`:\n> quoted   text"), "Step one: quoted text");
  assert.equal(speakable("snake_case stays, __bold__ goes"), "snake_case stays, bold goes");
  assert.equal(speakable("---"), "");
  assert.equal(speakable("```"), "");
  assert.equal(speakable("42"), "42");
  assert.equal(speakable("• first point\n• second"), "first point second");
});

Deno.test("SentenceChunker sees an abbreviation behind an opening quote", () => {
  const text = "He said “Dr. Who is here.” Then ‘e.g. this’ went on. End.";
  assert.deepEqual(chunk(chars(text), { minChars: 5 }), [
    "He said “Dr. Who is here.”",
    "Then ‘e.g. this’ went on.",
    "End.",
  ]);
});
