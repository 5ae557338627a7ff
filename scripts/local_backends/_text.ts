/**
 * The little text analysis the language stand-ins share (internal): terms of
 * a text (lower case, stop words dropped, a light suffix stemmer so "runs"
 * meets "running"), and sentences of a passage.
 *
 * Needs no permission.
 *
 * @example
 * ```ts ignore
 * import { terms } from "./_text.ts";
 *
 * console.log(terms("How do I run the services?")); // ["run", "service"]
 * ```
 *
 * @module
 */

const STOP_WORDS = new Set(
  ("a about above after again all also am an and any are as at be been before being below " +
    "between both but by can could did do does doing done down during each else etc few for " +
    "from further get gets got had has have having he her here hers him his how i if in into " +
    "is it its itself just let lets me more most my no nor not now of off on once one only or " +
    "other our ours out over own same she should so some such than that the their theirs them " +
    "then there these they this those through to too under until up us very was we were what " +
    "when where which while who whom why will with would you your yours")
    .split(" "),
);

/**
 * A word's stem: a few English suffixes removed, enough for "services",
 * "running" and "streamed" to meet "service", "run" and "stream".
 *
 * @param word A lower-case word.
 * @returns Its stem.
 */
export function stem(word: string): string {
  if (word.length <= 3) return word;
  let w = word;
  if (w.endsWith("ies") && w.length > 4) w = w.slice(0, -3) + "y";
  else if (w.endsWith("sses")) w = w.slice(0, -2);
  else if (w.endsWith("s") && !w.endsWith("ss") && !w.endsWith("us") && !w.endsWith("is")) {
    w = w.slice(0, -1);
  }
  for (const suffix of ["ing", "ed"]) {
    if (w.endsWith(suffix) && w.length - suffix.length >= 3) {
      w = w.slice(0, -suffix.length);
      // running -> runn -> run
      if (w.length > 3 && w.at(-1) === w.at(-2) && !"lsz".includes(w.at(-1)!)) w = w.slice(0, -1);
      break;
    }
  }
  if (w.endsWith("e") && w.length > 4) w = w.slice(0, -1);
  return w;
}

/**
 * The terms of a text: lower-case words and numbers, stop words dropped, stemmed.
 *
 * @param text The text.
 * @returns Its terms, in order, repeats kept.
 */
export function terms(text: string): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+(?:[-_][\p{L}\p{N}]+)*/gu) ?? [];
  const out: string[] = [];
  for (const word of words) {
    if (STOP_WORDS.has(word)) continue;
    out.push(stem(word));
    // "jetstream-mode" also counts as "jetstream" and "mode".
    if (/[-_]/.test(word)) { for (const part of word.split(/[-_]/)) out.push(stem(part)); }
  }
  return out;
}

/**
 * The sentences of a passage: split after `.`, `!` or `?` followed by a
 * space, and at line breaks; list markers are dropped.
 *
 * @param text The passage.
 * @returns Its non-empty sentences, trimmed.
 */
export function sentences(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\n+/)) {
    const clean = line.replace(/^\s*(?:[-*+]|\d+\.)\s+/, "").trim();
    if (!clean) continue;
    for (const sentence of clean.split(/(?<=[.!?])\s+(?=[A-Z`"(\[])/)) {
      if (sentence.trim()) out.push(sentence.trim());
    }
  }
  return out;
}
