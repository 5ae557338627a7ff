/**
 * What `/proc` says about a process: its CPU time and its resident memory.
 *
 * @module
 */

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux). */
const CLK_TCK = 100;

/** The CPU time (user + system) a process used so far, in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** The resident memory (`VmRSS`) of a process, in MiB. */
export function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1] ?? 0) / 1024;
}

/** Resident memory split into anonymous pages (heaps) and file pages (the mapped executable), in MiB. */
export function rssSplitMiB(pid: number): { anon: number; file: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+) kB`))?.[1] ?? 0);
  return { anon: kb("RssAnon") / 1024, file: kb("RssFile") / 1024 };
}

/** The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`). */
export function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/**
 * How long the threads of a process have waited, runnable, for a CPU so far
 * (`/proc/<pid>/task/<tid>/schedstat`, second field, summed), in
 * milliseconds: time a loaded machine took from it.
 */
export function runQueueWaitMs(pid: number): number {
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[1]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return ns / 1e6;
}
