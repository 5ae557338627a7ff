/**
 * A time as `Date.prototype.toISOString` writes it, computed with integer
 * arithmetic. Every log line and the `started` of `$SRV.INFO` carry one, and
 * the first `toISOString` of a process costs about 1.4 MiB of resident memory
 * in Deno 2.9 (V8's date code and data it pages in; `Date.now()` costs
 * nothing), about 3 % of an idle service (docs/PERFORMANCE.md).
 *
 * Internal to handler-base (not an entry point).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isoTime } from "./iso_time.ts";
 *
 * assert.equal(isoTime(0), "1970-01-01T00:00:00.000Z");
 * assert.equal(isoTime(951_782_400_000), "2000-02-29T00:00:00.000Z");
 * ```
 *
 * @module
 */

const DAY_MS = 86_400_000;

/**
 * Formats a time as `new Date(ms).toISOString()` does.
 *
 * @param ms Milliseconds since the epoch (a fraction is dropped, as `Date` drops it).
 * @returns The time in UTC, `YYYY-MM-DDTHH:mm:ss.sssZ`; outside the years 0 to 9999, and
 * for a time `Date` cannot hold, whatever `toISOString` gives (or throws).
 */
export function isoTime(ms: number = Date.now()): string {
  const time = Math.trunc(ms);
  const days = Math.floor(time / DAY_MS);
  let rest = time - days * DAY_MS;
  // Days to a civil date (the proleptic Gregorian calendar), as in H. Hinnant's
  // "chrono-Compatible Low-Level Date Algorithms".
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra -
    (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  if (!Number.isFinite(time) || year < 0 || year > 9999) return new Date(ms).toISOString();
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  const millis = rest - seconds * 1000;
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hours, 2)}:${pad(minutes, 2)}:${
    pad(seconds, 2)
  }.${pad(millis, 3)}Z`;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, "0");
}
