/**
 * A reply written straight into the connection's outbound buffer, the bytes
 * nats.js's `Msg.respond` would write, without its per-publish costs.
 *
 * For every publish nats.js builds its `HPUB` line as a string and encodes it
 * with a new `TextEncoder` result (an off-heap allocation: about 1.2 µs in
 * Deno, whatever the size), then queues the line, the headers, the payload
 * and a CRLF as four pieces that its flush copies together. Here the whole
 * reply is written once into a shared slab and queued as one view: about
 * 1 µs less per reply (docs/PERFORMANCE.md). The slab is only ever appended
 * to; a full one is replaced, never reused, so a view queued for the next
 * flush stays intact.
 *
 * It goes through nats-core's protocol handler (`sendCommand`, the
 * `outBytes`/`outMsgs` counters, `info.max_payload`, `noMorePublishing`),
 * and {@linkcode replyBytesOf} reads the reply subject's bytes from the
 * parsed message (`_msg.reply`), neither of which nats-core exports as API.
 * Whenever they are not as expected, or the reply needs what only nats.js
 * does (a closed or draining connection's error, a payload over the server's
 * limit, a non-ASCII reply subject given as a string), {@linkcode respondFast}
 * answers `false` (or `replyBytesOf` `undefined`) and the caller uses
 * `Msg.respond`. `fast_reply_test.ts` checks, against the nats-core this
 * project pins, that both write the same bytes and that this path is taken.
 *
 * @module
 */
import type { Msg, MsgHdrs, NatsConnection } from "./natsutil.ts";

/** The part of nats-core's protocol handler a reply needs. */
interface ProtocolHandler {
  sendCommand(command: Uint8Array): void;
  outBytes: number;
  outMsgs: number;
  noMorePublishing?: boolean;
  info?: { max_payload?: number };
}

/** How many replies went each way (for tests). */
export const fastReplies: { written: number; declined: number } = { written: 0, declined: 0 };

const SLAB_BYTES = 64 * 1024;
// Empty until the first reply: a service that never replies allocates none.
let slab = new Uint8Array(0);
let slabUsed = 0;

/** The protocol handler of `nc`, when it has the shape this module relies on. */
function protocolOf(nc: NatsConnection): ProtocolHandler | undefined {
  const protocol = (nc as unknown as { protocol?: Partial<ProtocolHandler> }).protocol;
  return protocol && typeof protocol.sendCommand === "function" &&
      typeof protocol.outBytes === "number" && typeof protocol.outMsgs === "number"
    ? protocol as ProtocolHandler
    : undefined;
}

/**
 * The reply subject of `msg` as the bytes it arrived as, when nats-core's
 * message has the shape this module relies on: reading `msg.reply` decodes
 * them into a new string (about 0.4 µs), only for a reply to encode it again.
 *
 * @param msg A message nats-core delivered.
 * @returns Its reply subject's bytes, empty when it has none, or `undefined`
 * when the message is not as expected (use `msg.reply`).
 */
export function replyBytesOf(msg: Msg): Uint8Array | undefined {
  const args = (msg as unknown as { _msg?: { reply?: unknown } })._msg;
  if (args === null || typeof args !== "object") return undefined;
  const reply = args.reply;
  if (reply === undefined) return EMPTY;
  return reply instanceof Uint8Array ? reply : undefined;
}

const EMPTY = new Uint8Array(0);

/**
 * Queues a reply to `reply` with `headers` and `data` on `nc`, as
 * `msg.respond(data, { headers })` would.
 *
 * @param nc The connection the request came in on.
 * @param reply The request's reply subject, as a string or as the bytes it arrived as.
 * @param headers The reply's headers.
 * @param data The reply's payload.
 * @returns `false` when the reply was not written: call `msg.respond` instead.
 */
export function respondFast(
  nc: NatsConnection,
  reply: string | Uint8Array,
  headers: MsgHdrs,
  data: Uint8Array,
): boolean {
  const protocol = protocolOf(nc);
  if (!protocol || protocol.noMorePublishing || nc.isClosed() || reply.length === 0) {
    return decline();
  }
  const head = (headers as MsgHdrs & { encode(): Uint8Array }).encode();
  const total = head.length + data.length;
  const maxPayload = protocol.info?.max_payload;
  if (maxPayload !== undefined && total > maxPayload) return decline();
  // "HPUB ", the reply, two lengths of at most 16 digits and their spaces, and two CRLFs.
  const size = reply.length + total + 43;
  if (slabUsed + size > slab.length) {
    slab = new Uint8Array(Math.max(SLAB_BYTES, size));
    slabUsed = 0;
  }
  const start = slabUsed;
  let at = start;
  slab[at++] = 72; // H
  slab[at++] = 80; // P
  slab[at++] = 85; // U
  slab[at++] = 66; // B
  slab[at++] = 32;
  if (typeof reply === "string") {
    for (let i = 0; i < reply.length; i++) {
      const code = reply.charCodeAt(i);
      if (code > 0x7f) return decline();
      slab[at++] = code;
    }
  } else {
    slab.set(reply, at);
    at += reply.length;
  }
  slab[at++] = 32;
  at = writeDecimal(slab, at, head.length);
  slab[at++] = 32;
  at = writeDecimal(slab, at, total);
  slab[at++] = 13;
  slab[at++] = 10;
  slab.set(head, at);
  at += head.length;
  slab.set(data, at);
  at += data.length;
  slab[at++] = 13;
  slab[at++] = 10;
  slabUsed = at;
  protocol.outBytes += total;
  protocol.outMsgs++;
  protocol.sendCommand(slab.subarray(start, at));
  fastReplies.written++;
  return true;
}

/** Writes a non-negative integer in decimal at `at`; returns where it ends. */
function writeDecimal(buf: Uint8Array, at: number, value: number): number {
  if (value < 10) {
    buf[at] = 48 + value;
    return at + 1;
  }
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  let rest = value;
  for (let i = at + digits - 1; i >= at; i--) {
    buf[i] = 48 + rest % 10;
    rest = Math.floor(rest / 10);
  }
  return at + digits;
}

function decline(): false {
  fastReplies.declined++;
  return false;
}
