/**
 * Collects the decoded messages of a subject from the moment of subscribing,
 * with bounded waits: {@linkcode Collector.until} fails after a timeout
 * instead of hanging a test.
 *
 * Needs `--allow-net` for the NATS server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, publish } from "@homelab/handler-base/natsutil";
 * import { TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { collect, startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "test" });
 * const statuses = collect(nc, "ai.voice.tts.status.s1", TTSStatusSchema);
 * publish(nc, "ai.voice.tts.status.s1", TTSStatusSchema, { status: "processing" });
 * const [first] = await statuses.until((all) => all.length >= 1, { timeoutMs: 5000 });
 * assert.equal(first?.status, "processing");
 * statuses.close();
 * await nc.close();
 * ```
 *
 * @module
 */
import type { DescMessage, MessageShape } from "../messages.ts";
import { decodeMsg, type NatsConnection } from "../natsutil.ts";

/** Options of {@linkcode Collector.until}. */
export interface UntilOptions {
  /**
   * How long to wait before failing, in milliseconds.
   *
   * @default 10000
   */
  timeoutMs?: number;
}

/** Decoded messages of one subject (wildcards allowed), each with its subject. */
export interface Collector<T> extends Disposable {
  /** Every message received so far, in arrival order. */
  readonly messages: T[];
  /**
   * Waits until the messages received so far satisfy the condition.
   *
   * @param done The condition over all messages so far.
   * @param options How long to wait.
   * @returns The messages.
   * @throws {Error} When the timeout passes first, naming the subject and the count.
   */
  until(done: (messages: T[]) => boolean, options?: UntilOptions): Promise<T[]>;
  /** Stops the subscription. */
  close(): void;
}

/**
 * Subscribes to a subject and decodes every message with a schema. A message
 * that does not decode fails the next {@linkcode Collector.until}.
 *
 * @param nc The connection.
 * @param subject The subject.
 * @param schema The type of its messages.
 * @returns The collector; dispose or close it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, publish } from "@homelab/handler-base/natsutil";
 * import { ChatStreamChunkSchema } from "@homelab/handler-base/messages";
 * import { collect, startNatsServer } from "@homelab/handler-base/testing";
 *
 * await using server = await startNatsServer({ jetstream: false });
 * const nc = await connectNats({ servers: server.url, name: "test" });
 * using chunks = collect(nc, "ai.chat.response.stream.r1", ChatStreamChunkSchema);
 * for (const content of ["Hel", "lo"]) {
 *   publish(nc, "ai.chat.response.stream.r1", ChatStreamChunkSchema, { content });
 * }
 * publish(nc, "ai.chat.response.stream.r1", ChatStreamChunkSchema, { done: true });
 * const all = await chunks.until((all) => all.some((c) => c.done));
 * assert.equal(all.map((c) => c.content).join(""), "Hello");
 * await nc.close();
 * ```
 */
export function collect<Desc extends DescMessage>(
  nc: NatsConnection,
  subject: string,
  schema: Desc,
): Collector<MessageShape<Desc> & { subject: string }> {
  type Item = MessageShape<Desc> & { subject: string };
  const messages: Item[] = [];
  const waiters = new Set<() => void>();
  let failure: unknown;
  const sub = nc.subscribe(subject, {
    callback: (_error, msg) => {
      try {
        messages.push(Object.assign(decodeMsg(schema, msg), { subject: msg.subject }));
      } catch (error) {
        failure ??= error;
      }
      for (const wake of waiters) wake();
    },
  });
  return {
    messages,
    until(done, options = {}) {
      const { timeoutMs = 10_000 } = options;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `Condition not met on ${subject} within ${timeoutMs} ms after ` +
                `${messages.length} messages`,
            ),
          );
        }, timeoutMs);
        function check() {
          if (failure !== undefined) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(failure);
          } else if (done(messages)) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(messages);
          }
        }
        waiters.add(check);
        check();
      });
    },
    close: () => sub.unsubscribe(),
    [Symbol.dispose]: () => sub.unsubscribe(),
  };
}
