/**
 * The small pieces of the system suite's hand-run reports (the soak, the STT
 * probe): durations read from flags, numbers and the per-type table.
 *
 * @example
 * ```ts ignore
 * import { durationMs, statsTable } from "./report.ts";
 *
 * durationMs("5m"); // 300000
 * statsTable(stats, console.log);
 * ```
 *
 * @module
 */
import { quantile, type TypeStats } from "./workload.ts";

/**
 * Reads a duration flag: `90s`, `5m`, `1h`, `250ms`, or a number of seconds.
 *
 * @param text The flag's value.
 * @returns Milliseconds.
 */
export function durationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!match) throw new Error(`Cannot read the duration "${text}": use 90s, 5m or 1h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

/**
 * A number for a report: two decimals below 10, none above, "-" for NaN.
 *
 * @param n The number.
 * @returns The text.
 */
export function fmt(n: number): string {
  return Number.isNaN(n) ? "-" : n.toFixed(n < 10 ? 2 : 0);
}

/**
 * Writes the per-type table of a workload run (sent, answered, errors by type, timed out,
 * p50 and p99 latency).
 *
 * @param stats The run's counts.
 * @param line Writes one line.
 */
export function statsTable(stats: Map<string, TypeStats>, line: (text: string) => void): void {
  line("| type | sent | answered | errors by type | timed out | p50 ms | p99 ms |");
  line("| ---- | ---- | -------- | -------------- | --------- | ------ | ------ |");
  for (const [name, s] of stats) {
    const errors = Object.entries(s.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "0";
    line(
      `| ${name} | ${s.sent} | ${s.answered} | ${errors} | ${s.timedOut} | ${
        fmt(quantile(s.latenciesMs, 0.5))
      } | ${fmt(quantile(s.latenciesMs, 0.99))} |`,
    );
  }
}
