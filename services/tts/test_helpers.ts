/**
 * Helpers shared by the tests of tts-module: a subscription that collects
 * decoded messages until a condition holds, and WAV and voice-folder
 * builders. Used only by tests.
 *
 * Requires `--allow-net` to NATS and `--allow-write` for voice folders.
 *
 * @module
 */
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import type { DescMessage, MessageShape } from "@homelab/handler-base/messages";
import { decodeMsg, type NatsConnection } from "@homelab/handler-base/natsutil";

/** Decoded messages of one subject, collected from the moment of subscribing. */
export interface Collector<T> {
  /** Every message received so far, in arrival order. */
  readonly messages: T[];
  /**
   * Waits until the messages received so far satisfy the condition.
   *
   * @param done The condition over all messages so far.
   * @param timeoutMs How long to wait before failing.
   * @returns The messages.
   */
  until(done: (messages: T[]) => boolean, timeoutMs?: number): Promise<T[]>;
  /** Stops the subscription. */
  close(): void;
}

/**
 * Subscribes and decodes every message of a subject (wildcards allowed).
 *
 * @param nc The connection.
 * @param subject The subject.
 * @param schema The type of the messages.
 * @returns The collector; flush the connection before relying on it.
 */
export function collect<Desc extends DescMessage>(
  nc: NatsConnection,
  subject: string,
  schema: Desc,
): Collector<MessageShape<Desc> & { subject: string }> {
  type Item = MessageShape<Desc> & { subject: string };
  const messages: Item[] = [];
  const waiters = new Set<() => void>();
  const sub = nc.subscribe(subject, {
    callback: (_error, msg) => {
      messages.push(Object.assign(decodeMsg(schema, msg), { subject: msg.subject }));
      for (const wake of waiters) wake();
    },
  });
  return {
    messages,
    until(done, timeoutMs = 10_000) {
      if (done(messages)) return Promise.resolve(messages);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`Condition not met on ${subject} after ${messages.length} messages`));
        }, timeoutMs);
        function check() {
          if (!done(messages)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(messages);
        }
        waiters.add(check);
      });
    },
    close: () => sub.unsubscribe(),
  };
}

/**
 * A WAV file of 24 kHz mono 16-bit samples.
 *
 * @param samples How many samples.
 * @returns The file bytes.
 */
export function testWav(samples: number): Uint8Array<ArrayBuffer> {
  const pcm = new Int16Array(samples).map((_, i) => (i * 37) % 2000);
  return wrapPcmAsWav(new Uint8Array(pcm.buffer), { sampleRate: 24000 });
}

/**
 * Writes a voice folder.
 *
 * @param dir The voices directory.
 * @param name The voice's name.
 * @param files File names mapped to contents; an object is written as JSON.
 */
export async function writeVoice(
  dir: string,
  name: string,
  files: Record<string, Uint8Array | string | Record<string, unknown>>,
): Promise<void> {
  await Deno.mkdir(`${dir}/${name}`, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    const path = `${dir}/${name}/${file}`;
    if (content instanceof Uint8Array) await Deno.writeFile(path, content);
    else if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeTextFile(path, JSON.stringify(content));
  }
}
