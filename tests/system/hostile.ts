/**
 * Hostile input for every subject the services of `services/table.ts`
 * subscribe to: random bytes from 0 B to the broker's max payload, valid
 * messages truncated and bit-flipped, a message of another type with and
 * without its `Msg-Type` header, and text fields at their limit and one past
 * it counted in code points with astral characters. Each is sent as a
 * request; in core mode every one on a request-reply subject must be
 * answered (a result or an ErrorResponse).
 *
 * @example
 * ```ts ignore
 * import { hostileSubjects, sendHostile } from "./hostile.ts";
 *
 * const stats = await sendHostile(nc, hostileSubjects(), { count: 1000, concurrency: 16 });
 * ```
 *
 * @module
 */
import { encode, type MessageInitShape } from "../../handler_base/messages.ts";
import {
  ChatRequestSchema,
  ErrorResponseSchema,
  GreetingRequestSchema,
  PipelineTriggerSchema,
  STTStreamMessageSchema,
  TTSRequestSchema,
} from "../../handler_base/messages.ts";
import { headers } from "@nats-io/nats-core";
import type { NatsConnection } from "../../handler_base/natsutil.ts";
import { SERVICES } from "../../services/table.ts";

/**
 * Inputs without a reply in the contract (SYSTEM.md): a message that decodes
 * gets no reply there, its results and errors go to another subject.
 */
export const ONE_WAY: readonly string[] = ["ai.voice.stream.>"];

/** A concrete subject of a service input (wildcards filled in). */
export interface HostileSubject {
  readonly service: string;
  readonly subject: string;
  /** Whether the contract answers every request on it (not one of {@linkcode ONE_WAY}). */
  readonly requestReply: boolean;
}

/**
 * Every input subject of every service of the table, wildcards filled with a token.
 *
 * @returns The subjects.
 */
export function hostileSubjects(): HostileSubject[] {
  return SERVICES.flatMap((entry) =>
    entry.deploy.nats.subscribe.map((line) => {
      const pattern = line.split(" ")[0]!;
      return {
        service: entry.name,
        subject: pattern.replaceAll("*", "hostile").replace(/>$/, "hostile"),
        requestReply: !ONE_WAY.includes(pattern),
      };
    })
  );
}

/** A deterministic pseudo-random generator (mulberry32). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One U+1F600 (two UTF-16 units, one code point) repeated. */
const astral = (n: number) => "\u{1F600}".repeat(n);

/** Valid messages of each input type, with fields at their limit and one past it. */
function validMessages(): { typeName: string; bytes: Uint8Array }[] {
  const make = <T extends Parameters<typeof encode>[0]>(
    schema: T,
    message: MessageInitShape<T>,
  ) => ({ typeName: schema.typeName, bytes: encode(schema, message) });
  return [
    make(ChatRequestSchema, { requestId: "h", userId: "h", message: astral(8000) }),
    make(ChatRequestSchema, { requestId: "h", userId: "h", message: astral(8001) }),
    make(ChatRequestSchema, { requestId: "x".repeat(257), userId: "h", message: "hi" }),
    make(GreetingRequestSchema, { userId: "h", username: astral(300) }),
    make(TTSRequestSchema, { text: astral(5000) }),
    make(TTSRequestSchema, { text: astral(5001) }),
    make(TTSRequestSchema, { text: "hi", speaker: astral(200), speakerWavB64: "!".repeat(1000) }),
    make(STTStreamMessageSchema, { type: "start" }),
    make(STTStreamMessageSchema, { type: "chunk", audio: new Uint8Array(333) }),
    make(STTStreamMessageSchema, { type: astral(100) }),
    make(PipelineTriggerSchema, { requestId: astral(300), pipeline: "document-ingestion" }),
    make(PipelineTriggerSchema, { requestId: "h", pipeline: "../../etc/passwd" }),
    make(ErrorResponseSchema, { error: true, message: "not a request", type: "Internal" }),
  ];
}

/** One hostile message: its bytes and the `Msg-Type` header, if any. */
export interface HostileMessage {
  readonly kind: string;
  readonly data: Uint8Array;
  readonly msgType?: string;
}

/**
 * The `i`-th hostile message of a seeded sequence.
 *
 * @param next The random generator.
 * @param maxPayload The broker's max payload in bytes.
 * @returns The message.
 */
export function hostileMessage(next: () => number, maxPayload: number): HostileMessage {
  const valid = validMessages();
  const pick = valid[Math.floor(next() * valid.length)]!;
  const choice = Math.floor(next() * 6);
  if (choice === 0) {
    // Random bytes, sizes spread over orders of magnitude up to the max payload.
    const size = Math.min(maxPayload, Math.floor(Math.pow(maxPayload, next())) - 1);
    const data = new Uint8Array(Math.max(0, size));
    for (let i = 0; i < data.length; i += 4096) data[i] = Math.floor(next() * 256);
    return { kind: "random", data };
  }
  if (choice === 1) {
    return { kind: "truncated", data: pick.bytes.slice(0, Math.floor(next() * pick.bytes.length)) };
  }
  if (choice === 2) {
    const data = pick.bytes.slice();
    for (let flips = 1 + Math.floor(next() * 4); flips > 0 && data.length; flips--) {
      data[Math.floor(next() * data.length)]! ^= 1 << Math.floor(next() * 8);
    }
    return { kind: "bit-flipped", data, msgType: pick.typeName };
  }
  if (choice === 3) {
    const other = valid[Math.floor(next() * valid.length)]!;
    return { kind: "wrong-type+header", data: other.bytes, msgType: pick.typeName };
  }
  if (choice === 4) return { kind: "wrong-type", data: pick.bytes };
  return { kind: "limits", data: pick.bytes, msgType: pick.typeName };
}

/** What became of the hostile requests. */
export interface HostileStats {
  sent: number;
  /** Sent on request-reply subjects. */
  sentRequestReply: number;
  /** Answered with anything (a result or an ErrorResponse) on request-reply subjects. */
  answered: number;
  /** Answered on one-way subjects (where a message that decodes gets no reply). */
  answeredOneWay: number;
  /** Not answered in time on request-reply subjects, by subject. */
  unanswered: Record<string, number>;
  /** Sent per kind. */
  kinds: Record<string, number>;
}

/**
 * Sends `count` hostile requests spread over the subjects, `concurrency` at a time.
 *
 * @param nc The connection.
 * @param subjects Where.
 * @param options How many, how many at once, the seed and each request's timeout.
 * @returns The counts.
 */
export async function sendHostile(
  nc: NatsConnection,
  subjects: readonly HostileSubject[],
  options: { count: number; concurrency: number; seed?: number; timeoutMs?: number },
): Promise<HostileStats> {
  const next = random(options.seed ?? 18);
  const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
  const stats: HostileStats = {
    sent: 0,
    sentRequestReply: 0,
    answered: 0,
    answeredOneWay: 0,
    unanswered: {},
    kinds: {},
  };
  let i = 0;
  const worker = async () => {
    while (i < options.count) {
      const n = i++;
      const { subject, requestReply } = subjects[n % subjects.length]!;
      const message = hostileMessage(next, maxPayload);
      stats.sent++;
      if (requestReply) stats.sentRequestReply++;
      stats.kinds[message.kind] = (stats.kinds[message.kind] ?? 0) + 1;
      const h = headers();
      if (message.msgType) h.set("Msg-Type", message.msgType);
      try {
        await nc.request(subject, message.data, {
          // One-way inputs answer only what does not decode: a short wait.
          // Longer than any service's own deadline (VOICE_TIMEOUT_MS, 60 s): a message that
          // decodes is real work, and under load it waits for the backends like any other.
          timeout: requestReply ? options.timeoutMs ?? 90_000 : 500,
          ...(message.msgType ? { headers: h } : {}),
        });
        if (requestReply) stats.answered++;
        else stats.answeredOneWay++;
      } catch {
        if (requestReply) stats.unanswered[subject] = (stats.unanswered[subject] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return stats;
}
