/**
 * Faults of the system suite shared by CI (`system_test.ts`) and the soak:
 * a service's consumption falling behind (its backend turns slow, the
 * JetStream backlog grows, then the backend recovers and the backlog drains),
 * and a memory sampler for "memory bounded" through a phase.
 *
 * @example
 * ```ts ignore
 * import { slowBackend } from "./faults.ts";
 *
 * await using system = await startSystem({ nats: "single", consumeMode: "jetstream", backends: "fakes" });
 * const result = await slowBackend(system, { rate: 20, count: 100, slowMs: 8000 });
 * console.log(result.durable.lost.length, result.maxBacklog);
 * ```
 *
 * @module
 */
import { jetstream } from "@nats-io/jetstream";
import { delay } from "../../handler_base/async.ts";
import type { System } from "./harness.ts";
import { type DurableStats, runDurable } from "./workload.ts";

/** The largest RSS of each service seen by a {@linkcode startMemorySampler}. */
export interface MemorySampler {
  /** The largest RSS in MiB per service so far. */
  readonly maxRssMiB: Map<string, number>;
  /** Stops sampling and returns the figures. */
  stop(): Promise<Map<string, number>>;
}

/**
 * Samples every service's RSS every `everyMs` and keeps the largest.
 *
 * @param system The system.
 * @param everyMs The period. @default 1000
 * @returns The sampler.
 */
export function startMemorySampler(system: System, everyMs = 1000): MemorySampler {
  const maxRssMiB = new Map<string, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const [name, sample] of await system.sample()) {
        maxRssMiB.set(name, Math.max(maxRssMiB.get(name) ?? 0, sample.rssMiB));
      }
      await delay(everyMs);
    }
  })();
  return {
    maxRssMiB,
    async stop() {
      running = false;
      await loop;
      return maxRssMiB;
    },
  };
}

/** What {@linkcode slowBackend} saw. */
export interface SlowBackendResult {
  /** The durable inputs: lost, answered, duplicated. */
  readonly durable: DurableStats;
  /** The largest backlog of chat-handler's consumer (pending plus unacknowledged). */
  readonly maxBacklog: number;
  /** Its backlog when the results were all in (0 when it drained). */
  readonly finalBacklog: number;
  /** The largest RSS per service in MiB during the fault. */
  readonly maxRssMiB: Map<string, number>;
}

/**
 * Makes the LLM fake slow (`slowMs` per call) while durable inputs go in at
 * `rate`, so chat-handler's JetStream backlog grows (its concurrency bounds
 * what it takes), then heals it and waits for every result. The system must
 * run in JetStream mode on the fakes.
 *
 * @param system The system (`backends: "fakes"`, `consumeMode: "jetstream"`).
 * @param options Rate, count and the backend's delay per call.
 * @returns The counts, the backlog and memory.
 */
export async function slowBackend(
  system: System,
  options: { rate: number; count: number; slowMs: number; settleMs?: number },
): Promise<SlowBackendResult> {
  const llm = system.fakes?.llm;
  if (!llm) throw new Error("Cannot slow the backend: the system runs without the fakes");
  const jsm = await jetstream(system.nc).jetstreamManager();
  const backlog = async () => {
    const info = await jsm.consumers.info("COMPANIONS_CHAT", "chat-handler").catch(() => null);
    return info ? info.num_pending + info.num_ack_pending : 0;
  };
  let maxBacklog = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      maxBacklog = Math.max(maxBacklog, await backlog());
      await delay(200);
    }
  })();
  const memory = startMemorySampler(system);
  let slow = true;
  llm.override(async (request) => {
    // Slow only while the fault lasts; calls already waiting then go on.
    if (slow) await Promise.race([delay(options.slowMs), request.disconnected]);
    return undefined;
  });
  try {
    const durable = await runDurable(system.nc, {
      rate: options.rate,
      count: options.count,
      settleMs: options.settleMs ?? 120_000,
      during: async () => {
        // Slow for as long as the inputs go in, then recover.
        await delay((options.count / options.rate) * 1000);
        slow = false;
      },
    });
    llm.override(undefined);
    let finalBacklog = await backlog();
    for (let i = 0; i < 50 && finalBacklog > 0; i++) {
      await delay(200);
      finalBacklog = await backlog();
    }
    return { durable, maxBacklog, finalBacklog, maxRssMiB: await memory.stop() };
  } finally {
    slow = false;
    llm.override(undefined);
    watching = false;
    await watcher;
    await memory.stop();
  }
}
