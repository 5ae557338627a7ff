/**
 * Cuts streamed LLM text into sentences to synthesize one by one, so that the
 * first sentence can be spoken while the LLM still writes the rest.
 *
 * A sentence ends at `.`, `!`, `?` or `…`, closing quotes or brackets
 * included, once whitespace follows (so `3.14` and `e.g.x` end nothing); at
 * `。！？`, which need no space; or at a line break. A period
 * after a common abbreviation (`Dr.`, `e.g.`), a single letter (`J.`) or a
 * number (`1.` of a list) ends nothing. Two bounds shape the pieces:
 * - `minChars`: a sentence shorter than this is kept and joined to the next
 *   one ("Sure." alone would make a choppy, badly intonated clip).
 * - `maxChars`: text that runs this long without an end is cut anyway, at
 *   the last clause mark (`,;:` or a dash) past `minChars`, else at the last
 *   space, else hard, so that a run-on sentence does not hold the audio back.
 *
 * Text is scanned once: each `push` looks only at what it has not seen yet.
 *
 * Characters above U+00FF in regular expressions are written as escapes: the
 * bundler escapes them in strings but not in regular expressions, and one such
 * character makes V8 hold the whole bundle's source as a two-byte string (0.4
 * MiB more for voice-assistant; `scripts/bundle_test.ts` checks every bundle).
 *
 * Needs no permission.
 *
 * @example Deltas in, sentences out
 * ```ts
 * import { SentenceChunker } from "./sentences.ts";
 *
 * const chunker = new SentenceChunker({ minChars: 10, maxChars: 200 });
 * const out = [
 *   ...chunker.push("Sure. NATS is a mess"),
 *   ...chunker.push("aging system. It is fa"),
 *   ...chunker.push("st."),
 *   ...chunker.flush(),
 * ];
 * console.log(out); // ["Sure. NATS is a messaging system.", "It is fast."]
 * ```
 *
 * @module
 */

/** Options of {@linkcode SentenceChunker}. */
export interface SentenceChunkerOptions {
  /**
   * The shortest sentence emitted on its own, in characters; shorter ones are
   * joined to the next (the last piece of a stream may be shorter).
   *
   * @default 20
   */
  minChars?: number;
  /**
   * The longest piece, in characters: text without a sentence end is cut
   * here.
   *
   * @default 220
   */
  maxChars?: number;
}

const TERMINATORS: ReadonlySet<string> = new Set([".", "!", "?", "…", "。", "！", "？"]);
/** Terminators of scripts written without spaces: they end a sentence without one. */
const FULL_WIDTH_TERMINATORS: ReadonlySet<string> = new Set(["。", "！", "？"]);
/** Characters that may follow a terminator and still belong to the sentence. */
const CLOSERS: ReadonlySet<string> = new Set([
  '"',
  "'",
  ")",
  "]",
  "}",
  "”",
  "’",
  "»",
  "」",
  "』",
  "*",
]);
/** Clause marks a run-on sentence is preferably cut after. */
const CLAUSE_MARKS: ReadonlySet<string> = new Set([",", ";", ":", "—", "–"]);
/** Words whose trailing period does not end a sentence (lower case, without the period). */
const ABBREVIATIONS: ReadonlySet<string> = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "prof",
  "sr",
  "jr",
  "st",
  "vs",
  "e.g",
  "i.e",
  "cf",
  "approx",
  "no",
  "fig",
  "inc",
  "ltd",
  "co",
  "mt",
]);

function isSpace(char: string | undefined): boolean {
  return char !== undefined && /\s/.test(char);
}

/**
 * Whether the period at `index` belongs to an abbreviation, an initial or a
 * list number rather than ending a sentence.
 */
function isAbbreviation(text: string, index: number): boolean {
  let start = index;
  while (start > 0 && !isSpace(text[start - 1])) start--;
  // Opening quotes (“ and ‘) as escapes: see the module doc.
  const word = text.slice(start, index).replace(/^[("'\u201c\u2018[]+/, "").toLowerCase();
  if (word === "") return false;
  if (ABBREVIATIONS.has(word)) return true;
  if (/^\p{L}$/u.test(word)) return true; // an initial: "J. R. R. Tolkien"
  return /^\d+$/.test(word) && (start === 0 || text[start - 1] === "\n"); // "1. First"
}

/**
 * Splits streamed text into sentences between a minimum and a maximum
 * length. Not safe to share between streams: one chunker per answer.
 *
 * @example A run-on sentence is cut at its last comma
 * ```ts
 * import { SentenceChunker } from "./sentences.ts";
 *
 * const chunker = new SentenceChunker({ minChars: 5, maxChars: 30 });
 * console.log(chunker.push("one two three, four five six seven eight nine"));
 * // ["one two three,"]
 * console.log(chunker.flush()); // ["four five six seven eight nine"]
 * ```
 */
export class SentenceChunker {
  readonly #minChars: number;
  readonly #maxChars: number;
  #buffer = "";
  /** Where scanning resumes: everything before it was looked at already. */
  #scanFrom = 0;

  /**
   * Creates a chunker.
   *
   * @param options The minimum and maximum lengths.
   * @throws {RangeError} When `minChars` is negative or `maxChars` is not larger than it.
   */
  constructor(options: SentenceChunkerOptions = {}) {
    const { minChars = 20, maxChars = 220 } = options;
    if (!Number.isInteger(minChars) || minChars < 0) {
      throw new RangeError(`Cannot chunk sentences: minChars ${minChars} is not an integer >= 0`);
    }
    if (!Number.isInteger(maxChars) || maxChars <= minChars) {
      throw new RangeError(
        `Cannot chunk sentences: maxChars ${maxChars} is not an integer above minChars ${minChars}`,
      );
    }
    this.#minChars = minChars;
    this.#maxChars = maxChars;
  }

  /**
   * Adds a delta of text.
   *
   * @param delta The next piece of the text, as the LLM streamed it.
   * @returns The sentences it completed, trimmed, in order (often none).
   */
  push(delta: string): string[] {
    this.#buffer += delta;
    return this.#drain();
  }

  /**
   * Ends the text: everything left is one last piece.
   *
   * @returns The remaining sentences, trimmed (none when only whitespace is left).
   */
  flush(): string[] {
    const out = this.#drain();
    const rest = this.#buffer.trim();
    this.#buffer = "";
    this.#scanFrom = 0;
    if (rest !== "") out.push(rest);
    return out;
  }

  #drain(): string[] {
    const out: string[] = [];
    for (;;) {
      let end = this.#findEnd();
      const tooLong = end === undefined
        ? this.#buffer.length > this.#maxChars
        : this.#buffer.slice(0, end).trimEnd().length > this.#maxChars;
      if (tooLong) end = this.#cutPoint();
      if (end === undefined) return out;
      const sentence = this.#buffer.slice(0, end).trim();
      this.#buffer = this.#buffer.slice(end).trimStart();
      this.#scanFrom = 0;
      if (sentence !== "") out.push(sentence);
    }
  }

  /**
   * The end of the first sentence of at least `minChars`, or undefined. Sets
   * `#scanFrom` to where the next scan must resume.
   */
  #findEnd(): number | undefined {
    const text = this.#buffer;
    let i = this.#scanFrom;
    while (i < text.length) {
      const char = text[i]!;
      let end: number | undefined;
      if (char === "\n") {
        end = i + 1;
      } else if (TERMINATORS.has(char)) {
        let j = i + 1;
        while (j < text.length && (TERMINATORS.has(text[j]!) || CLOSERS.has(text[j]!))) j++;
        if (j === text.length) {
          // Undecided until the next character arrives ("3." may become "3.14").
          this.#scanFrom = i;
          return undefined;
        }
        if (FULL_WIDTH_TERMINATORS.has(char)) end = j;
        else if (isSpace(text[j]) && !(char === "." && isAbbreviation(text, i))) end = j;
        else {
          i = j;
          continue;
        }
      }
      if (end !== undefined && text.slice(0, end).trim().length >= this.#minChars) {
        return end;
      }
      i = end ?? i + 1;
    }
    this.#scanFrom = text.length;
    return undefined;
  }

  /** Where to cut text longer than `maxChars` that has no sentence end. */
  #cutPoint(): number {
    const text = this.#buffer;
    const limit = this.#maxChars;
    let space: number | undefined;
    for (let i = limit; i >= Math.max(1, this.#minChars); i--) {
      const char = text[i - 1]!;
      if (isSpace(text[i]) && CLAUSE_MARKS.has(char)) return i;
      if (space === undefined && isSpace(text[i]) && !isSpace(char)) space = i;
    }
    return space ?? graphemeBoundary(text, limit);
  }
}

/**
 * Made on first use: building it loads ICU's segmentation data (about 16 ms at start-up, before
 * the service is ready), and only a sentence with no place to cut needs it.
 */
let graphemes: Intl.Segmenter | undefined;

/**
 * The last grapheme-cluster boundary at or before `index`, so that a hard cut
 * never splits a surrogate pair or a combining sequence; the end of the first
 * cluster when that cluster alone is longer.
 */
function graphemeBoundary(text: string, index: number): number {
  let boundary = 0;
  graphemes ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  for (const { index: start, segment } of graphemes.segment(text)) {
    if (start > index) break;
    boundary = start === 0 ? segment.length : start;
    if (start + segment.length > index) break;
    boundary = start + segment.length;
  }
  return boundary;
}

/**
 * The text of a sentence as it should be spoken: Markdown marks (emphasis,
 * code ticks, headings, bullets, quote marks, link targets) removed and
 * whitespace collapsed; "" when nothing speakable is left (a rule `---`, a
 * code fence).
 *
 * @param text A sentence from {@linkcode SentenceChunker}.
 * @returns The text to synthesize, or "".
 *
 * @example
 * ```ts
 * import { speakable } from "./sentences.ts";
 *
 * console.log(speakable("- **NATS** is [fast](https://nats.io).")); // "NATS is fast."
 * console.log(speakable("---")); // ""
 * ```
 */
export function speakable(text: string): string {
  const spoken = text
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/^\s*(?:#{1,6}|[-*+\u2022>])\s+/gm, "") // list markers (• as an escape)
    .replace(/[*`~]+|__+/g, "")
    .replace(/\s+/g, " ")
    .trim();
  return /[\p{L}\p{N}]/u.test(spoken) ? spoken : "";
}
