/**
 * A slow consumer for the system suite: a raw TCP client that subscribes to
 * the subjects the workload's results and streams travel on, then never reads
 * its socket, so that nats-server cuts it (write deadline or pending bytes).
 * The services and the other clients must not notice.
 *
 * The workload's own results are a few megabytes a minute, which the kernel's
 * socket buffers absorb; {@linkcode SlowConsumer.fill} publishes large
 * messages on one of its subjects that nobody else reads (from a connection of
 * its own, which nats-server may stall) until the server cuts it.
 *
 * @example
 * ```ts ignore
 * import { startSlowConsumer } from "./slow_consumer.ts";
 *
 * await using slow = await startSlowConsumer(system.server!.url, system.monitorUrls);
 * const reason = await slow.fill({ timeoutMs: 60_000 });
 * console.log(reason); // "Slow Consumer (Write Deadline)"
 * ```
 *
 * @module
 */
import { connectNats } from "../../handler_base/natsutil.ts";

/** The subjects the workload's results and streams use (SYSTEM.md). */
export const WATCHED_SUBJECTS: readonly string[] = [
  "ai.chat.response.>",
  "ai.voice.tts.audio.>",
  "ai.voice.tts.status.>",
  "ai.voice.transcription.>",
  "ai.voice.response.>",
  "ai.voice.stream.>",
  "ai.pipeline.status.>",
];

/** A client that stopped reading. */
export interface SlowConsumer extends AsyncDisposable {
  /** Its connection name, as `/connz` shows it. */
  readonly name: string;
  /**
   * Publishes 64 KiB messages on a subject only it receives until the server
   * closes it, or `maxBytes` or `timeoutMs` is reached.
   *
   * @returns The server's reason for closing it, or undefined when it was not cut.
   */
  fill(options?: { maxBytes?: number; timeoutMs?: number }): Promise<string | undefined>;
  /** The server's reason for closing it, if it was closed (any node of `monitorUrls`). */
  closedReason(): Promise<string | undefined>;
}

interface Connz {
  connections?: { name?: string; reason?: string }[];
}

/**
 * Connects a raw client to `url`, subscribes to `subjects` and never reads.
 *
 * @param url The broker (one node).
 * @param monitorUrls The monitoring endpoints of the nodes (`/connz`).
 * @param subjects What it subscribes to. @default WATCHED_SUBJECTS
 * @returns The slow consumer; dispose it to close its socket.
 */
export async function startSlowConsumer(
  url: string,
  monitorUrls: readonly string[],
  subjects: readonly string[] = WATCHED_SUBJECTS,
): Promise<SlowConsumer> {
  const { hostname, port } = new URL(url);
  const name = `slow-consumer-${crypto.randomUUID().slice(0, 8)}`;
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const fillSubject = `ai.voice.tts.audio.${name}`;
  const lines = [
    `CONNECT ${
      JSON.stringify({ verbose: false, pedantic: false, name, lang: "raw", protocol: 1 })
    }`,
    ...subjects.map((subject, i) => `SUB ${subject} ${i + 1}`),
    "PING",
  ];
  const bytes = new TextEncoder().encode(lines.map((l) => `${l}\r\n`).join(""));
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }

  const closedReason = async (): Promise<string | undefined> => {
    for (const monitor of monitorUrls) {
      const connz = await fetch(`${monitor}/connz?state=closed&limit=1000`)
        .then((r) => r.json() as Promise<Connz>)
        .catch(() => ({} as Connz));
      const mine = connz.connections?.find((c) => c.name === name);
      if (mine) return mine.reason ?? "closed";
    }
    return undefined;
  };

  return {
    name,
    closedReason,
    async fill({ maxBytes = 512 * 1024 * 1024, timeoutMs = 60_000 } = {}) {
      const nc = await connectNats({ servers: url, name: `${name}-filler` });
      const payload = new Uint8Array(64 * 1024);
      const deadline = performance.now() + timeoutMs;
      let sent = 0;
      try {
        while (sent < maxBytes && performance.now() < deadline) {
          for (let i = 0; i < 16; i++) nc.publish(fillSubject, payload);
          sent += 16 * payload.length;
          await nc.flush();
          // Checked every 4 MiB: the monitor is an HTTP round trip.
          if (sent % (4 * 1024 * 1024) === 0) {
            const reason = await closedReason();
            if (reason) return reason;
          }
        }
        // The write deadline may still be running out for what is queued.
        const until = performance.now() + 15_000;
        while (performance.now() < until) {
          const reason = await closedReason();
          if (reason) return reason;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
        return undefined;
      } finally {
        await nc.close().catch(() => {});
      }
    },
    [Symbol.asyncDispose]() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      return Promise.resolve();
    },
  };
}
