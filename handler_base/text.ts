/**
 * Lengths and cuts of text in characters, never in UTF-16 units.
 *
 * JavaScript's `length` and `slice` count UTF-16 code units: an emoji such as
 * U+1F600 is 2 units, so a limit checked with `length` refuses 8,000 emoji as
 * "16,000 characters", and `slice` can keep half of a surrogate pair, which
 * encodes as U+FFFD. The rules here, used for every limit and every cut in
 * the project:
 *
 * - **Limits count code points** ({@linkcode countCodePoints},
 *   {@linkcode exceedsCodePoints}). A code point is what the protocol buffers
 *   and the backends see as one character, and the count bounds the work a
 *   text costs. Grapheme clusters would not: one "character" of Zalgo text
 *   can hold thousands of combining marks.
 * - **Cuts keep whole grapheme clusters** ({@linkcode truncateText}): what a
 *   reader sees as one character (an emoji with a skin tone, a flag, a letter
 *   with its accents) is kept whole or dropped whole, and the result never
 *   has more code points than the limit. Only a single cluster longer than
 *   the whole limit is cut between its code points.
 *
 * Counting stops early: the work is bounded by the limit, not by the text,
 * and a text whose UTF-16 length is within the limit is not scanned at all.
 *
 * Needs no permissions.
 *
 * @example Count, check and cut
 * ```ts
 * import { countCodePoints, exceedsCodePoints, truncateText } from "@homelab/handler-base/text";
 *
 * const smileys = "\u{1F600}".repeat(3);
 * console.log(smileys.length, countCodePoints(smileys)); // 6 3
 * console.log(exceedsCodePoints(smileys, 3)); // false
 * console.log(truncateText("Ana \u{1F44B}\u{1F3FD}!", 6)); // "Ana \u{1F44B}\u{1F3FD}"
 * console.log(truncateText("Ana \u{1F44B}\u{1F3FD}!", 5)); // "Ana "
 * ```
 *
 * @module
 */

/** Options of {@linkcode countCodePoints}. */
export interface CountOptions {
  /**
   * Stop counting once the count exceeds this: the result is then
   * `stopAfter + 1`, enough to say "too long" without scanning a huge text.
   *
   * @default Infinity (count everything)
   */
  stopAfter?: number;
}

/**
 * The number of code points (Unicode characters) in a text: an astral
 * character such as U+1F600 counts 1, not 2. A lone surrogate counts 1.
 *
 * @param text The text.
 * @param options Where to stop counting.
 * @returns The count, at most `stopAfter + 1`.
 *
 * @example
 * ```ts
 * import { countCodePoints } from "@homelab/handler-base/text";
 *
 * console.log(countCodePoints("h\u{E9}llo \u{1F600}")); // 7
 * console.log(countCodePoints("\u{1F600}".repeat(1000), { stopAfter: 10 })); // 11
 * ```
 */
export function countCodePoints(text: string, options: CountOptions = {}): number {
  const stopAfter = options.stopAfter ?? Infinity;
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    if (++count > stopAfter) break;
  }
  return count;
}

/**
 * Whether a text has more than `max` code points. It reads at most `max + 1`
 * code points, and none when the UTF-16 length is already within `max`.
 *
 * @param text The text.
 * @param max The limit in code points.
 * @returns True when the text is longer than the limit.
 *
 * @example 8,000 emoji are 8,000 characters
 * ```ts
 * import { exceedsCodePoints } from "@homelab/handler-base/text";
 *
 * const text = "\u{1F600}".repeat(8000);
 * console.log(text.length, exceedsCodePoints(text, 8000), exceedsCodePoints(text, 7999)); // 16000 false true
 * ```
 */
export function exceedsCodePoints(text: string, max: number): boolean {
  // UTF-16 length is an upper bound of the code points.
  if (text.length <= max) return false;
  return countCodePoints(text, { stopAfter: max }) > max;
}

/** Options of {@linkcode truncateText}. */
export interface TruncateOptions {
  /**
   * Appended when the text was cut; it counts toward the limit.
   *
   * @default ""
   */
  ellipsis?: string;
}

/**
 * Stateless: segmenting keeps no state between calls. Made on first use: building it loads the
 * ICU segmentation data (about 14 ms at start-up), which a service that never truncates
 * does not need.
 */
let graphemes: Intl.Segmenter | undefined;

/**
 * Cuts a text to at most `max` code points without splitting a grapheme
 * cluster: a cluster that does not fit is dropped whole. A text within the
 * limit is returned as it is. When the first cluster alone is longer than
 * the limit, it is cut between code points (never inside a surrogate pair),
 * so a non-empty text never shrinks to nothing.
 *
 * @param text The text.
 * @param max The limit in code points (the ellipsis included).
 * @param options The ellipsis to append when cutting.
 * @returns The text, or its longest prefix of whole clusters that fits.
 * @throws {RangeError} When `max` is negative or not an integer.
 *
 * @example A flag and an accented letter stay whole
 * ```ts
 * import { truncateText } from "@homelab/handler-base/text";
 *
 * console.log(truncateText("Hi \u{1F1EB}\u{1F1F7}", 4)); // "Hi "
 * console.log(truncateText("cafe\u{301}s", 5)); // "cafe\u{301}"
 * console.log(truncateText("cafe\u{301}s", 4)); // "caf"
 * console.log(truncateText("a long message", 7, { ellipsis: "…" })); // "a long…"
 * ```
 */
export function truncateText(text: string, max: number, options: TruncateOptions = {}): string {
  if (!Number.isInteger(max) || max < 0) {
    throw new RangeError(`Cannot truncate text: the limit ${max} is not a non-negative integer`);
  }
  if (!exceedsCodePoints(text, max)) return text;
  const ellipsis = options.ellipsis ?? "";
  const budget = max - countCodePoints(ellipsis, { stopAfter: max });
  if (budget <= 0) return truncateText(ellipsis, max);
  let used = 0;
  let end = 0;
  graphemes ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  for (const { segment, index } of graphemes.segment(text)) {
    const size = countCodePoints(segment, { stopAfter: budget });
    if (used + size > budget) {
      // One cluster longer than the whole budget: keep its first code points.
      if (end === 0) end = index + codePointPrefixLength(segment, budget);
      break;
    }
    used += size;
    end = index + segment.length;
  }
  return text.slice(0, end) + ellipsis;
}

/** The UTF-16 length of the first `count` code points of a text. */
function codePointPrefixLength(text: string, count: number): number {
  let length = 0;
  for (const char of text) {
    if (count-- <= 0) break;
    length += char.length;
  }
  return length;
}
