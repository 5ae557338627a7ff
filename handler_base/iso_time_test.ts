import assert from "node:assert/strict";
import { isoTime } from "./iso_time.ts";

Deno.test("isoTime writes what toISOString writes, across the years 0 to 9999", () => {
  const cases = [
    0,
    -1,
    1,
    Date.now(),
    Date.UTC(2000, 1, 29, 23, 59, 59, 999),
    Date.UTC(1900, 1, 28, 12),
    Date.UTC(2100, 2, 1),
    Date.UTC(1969, 11, 31, 23, 59, 59, 999),
    -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
    253_402_300_799_999, // 9999-12-31T23:59:59.999Z
    1.9,
    -1.9,
  ];
  let seed = 17;
  const random = () => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647;
  for (let i = 0; i < 20_000; i++) {
    cases.push(Math.floor(-62_167_219_200_000 + random() * 315_569_520_000_000));
  }
  for (let day = -800; day < 800; day++) cases.push(day * 86_400_000 + 951_782_400_000);
  for (const ms of cases) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
});

Deno.test("isoTime leaves years outside 0 to 9999, and invalid times, to Date", () => {
  for (const ms of [-62_167_219_200_001, 253_402_300_800_000, 8.64e15, -8.64e15]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString());
  }
  for (const ms of [NaN, Infinity, 8.64e15 + 1]) assert.throws(() => isoTime(ms), RangeError);
});
