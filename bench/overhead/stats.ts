/**
 * The pure parts of `bench/overhead.ts`: the open-loop schedule, percentiles,
 * the load client's output, and the join of client latencies with the
 * backend's own time per request.
 *
 * @example Latency from the scheduled send time
 * ```ts
 * import { scheduledAt, summarize } from "./stats.ts";
 *
 * console.log(scheduledAt(100, 3, 500)); // 106: the 4th request at 500/s is due 6 ms after the start
 * console.log(summarize([1, 2, 3, 4]).p50); // 2
 * ```
 *
 * @module
 */

/**
 * When request `index` is due, in ms: an open-loop schedule sends on time
 * whatever the replies do.
 *
 * @param start When request 0 is due, in ms.
 * @param index The request's number from 0.
 * @param rate Requests per second.
 * @returns Its due time, in ms.
 */
export function scheduledAt(start: number, index: number, rate: number): number {
  return start + (index * 1000) / rate;
}

/**
 * How many requests are due by `now` (those with an index below the result).
 *
 * @param start When request 0 is due, in ms.
 * @param now The time now, in ms.
 * @param rate Requests per second.
 * @returns The count due, 0 before the start.
 */
export function dueBy(start: number, now: number, rate: number): number {
  if (now < start) return 0;
  return Math.floor(((now - start) * rate) / 1000 + 1e-9) + 1;
}

/**
 * The nearest-rank percentile of sorted values: the smallest value with at
 * least `p` percent of the values at or below it.
 *
 * @param sorted Values in ascending order (at least one).
 * @param p The percentile, 0 to 100.
 * @returns The value.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError("Cannot take a percentile of no values");
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** The percentiles a row of the report shows. */
export interface Summary {
  /** How many values. */
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/**
 * p50, p90, p99 and max of the values.
 *
 * @param values The values, in any order (at least one).
 * @returns The summary.
 */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1]!,
  };
}

/** One request as the load client reports it. */
export interface Sample {
  /** Its sequence number among the measured requests. */
  readonly seq: number;
  /** Its scheduled send time from the start of the window, in ms. */
  readonly schedMs: number;
  /** How late the client sent it after its scheduled time, in ms. */
  readonly lagMs: number;
  /** Reply time minus the scheduled send time in ms; undefined when no reply came. */
  readonly latencyMs: number | undefined;
  /** Whether the reply was an ErrorResponse. */
  readonly error: boolean;
}

/** What one run of a load client reports. */
export interface LoadReport {
  /** Every measured request, in order. */
  readonly samples: Sample[];
  /** The client's CPU time over the window, in ms. */
  readonly cpuMs: number;
  /** The window, in ms. */
  readonly wallMs: number;
}

/**
 * Parses the load client's output: one line `seq sched_us lag_us latency_us
 * error` per request (`latency_us` -1 when no reply came), then `cpu_ms <n>
 * wall_ms <n>`.
 *
 * @param text The output.
 * @returns The report.
 * @throws {Error} When the closing line is missing.
 */
export function parseLoadReport(text: string): LoadReport {
  const samples: Sample[] = [];
  let cpuMs: number | undefined;
  let wallMs = 0;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[0] === "cpu_ms") {
      cpuMs = Number(f[1]);
      wallMs = Number(f[3]);
    } else if (f.length === 5) {
      const latency = Number(f[3]);
      samples.push({
        seq: Number(f[0]),
        schedMs: Number(f[1]) / 1000,
        lagMs: Number(f[2]) / 1000,
        latencyMs: latency < 0 ? undefined : latency / 1000,
        error: f[4] === "1",
      });
    }
  }
  if (cpuMs === undefined) throw new Error("Cannot read the load report: no cpu_ms line");
  return { samples, cpuMs, wallMs };
}

/**
 * Latency minus the backend's own time, per answered request whose backend
 * time is known.
 *
 * @param samples The client's samples.
 * @param backendMs The backend's own time per sequence number.
 * @returns The overhead of each such request, in ms.
 */
export function overheads(
  samples: readonly Sample[],
  backendMs: ReadonlyMap<number, number>,
): number[] {
  const out: number[] = [];
  for (const s of samples) {
    const backend = backendMs.get(s.seq);
    if (s.latencyMs !== undefined && !s.error && backend !== undefined) {
      out.push(s.latencyMs - backend);
    }
  }
  return out;
}

/**
 * The sequence number a request's text carries: its last ten digits (the
 * load client writes them over the payload's placeholder).
 *
 * @param text The text the backend received.
 * @returns The number, or undefined.
 */
export function seqOfText(text: string): number | undefined {
  const match = /(\d{10})$/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The pause of a garbage collection from a line V8 prints with
 * `--trace-gc` (`... ms: Scavenge 4.0 (4.8) -> 3.5 (5.5) MB, pooled: 0.0 MB,
 * 3.45 / 0.00 ms ...`): the main-thread pause, in ms.
 *
 * @param line One line of the process's output.
 * @returns The pause, or undefined when the line is not a GC event.
 */
export function gcPause(line: string): number | undefined {
  const match =
    /\d+ ms: (?:Scavenge|Mark-Compact|Mark-Sweep|Minor Mark-Sweep|Mark-sweep)\b.*?, ([\d.]+) \/ [\d.]+ ms/
      .exec(line);
  return match ? Number(match[1]) : undefined;
}
