/**
 * A server-sent events parser (the WHATWG `text/event-stream` format), as a
 * `TransformStream` and as an async generator over any byte or text source.
 *
 * It accepts input split at any byte, inside a multi-byte UTF-8 character or
 * between the CR and LF of a line break; several events in one read; CRLF, CR
 * and LF line endings; comment lines (`: keep-alive`); multi-line `data`. As
 * the format says, an event is dispatched only at the blank line that ends it,
 * so an event cut off by the end of the stream is dropped.
 *
 * Needs no permission.
 *
 * @example Parse an OpenAI-style stream
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSse } from "@homelab/handler-base/clients/sse";
 *
 * const body = ReadableStream.from(["data: {\"n\":1}\r\n\r\n: ping\n\ndata: [DONE]\n\n"]);
 * const data = [];
 * for await (const event of parseSse(body)) data.push(event.data);
 * assert.deepEqual(data, ['{"n":1}', "[DONE]"]);
 * ```
 *
 * @module
 */

/** One dispatched server-sent event. */
export interface SseEvent {
  /** The event type: the `event` field, or `"message"` when there was none. */
  event: string;
  /** The `data` lines of the event joined by `\n`. */
  data: string;
  /** The last event ID seen so far in the stream (the `id` field), if any. */
  id?: string;
  /** The reconnection time in ms when this event carried a valid `retry` field. */
  retry?: number;
}

/** Options of {@linkcode SseParseStream} and {@linkcode parseSse}. */
export interface SseParseOptions {
  /**
   * The largest event (or line) in UTF-16 code units; a longer one fails the
   * parse with a `RangeError` instead of growing the buffer without bound.
   *
   * @default 1048576
   */
  maxEventChars?: number;
}

const DEFAULT_MAX_EVENT_CHARS = 1_048_576;
const LF = 10;

/** The parser state; feeds on text or bytes and emits events through a callback. */
class SseDecoder {
  readonly #maxChars: number;
  readonly #decoder = new TextDecoder();
  #started = false;
  #partial = "";
  #skipLf = false;
  #data: string[] = [];
  #dataChars = 0;
  #event = "";
  #id: string | undefined;
  #retry: number | undefined;

  constructor(maxChars: number) {
    this.#maxChars = maxChars;
  }

  push(chunk: string | Uint8Array, emit: (event: SseEvent) => void): void {
    let text = typeof chunk === "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.#pushText(text, emit);
  }

  end(emit: (event: SseEvent) => void): void {
    this.#pushText(this.#decoder.decode(), emit);
  }

  #pushText(text: string, emit: (event: SseEvent) => void): void {
    const length = text.length;
    if (length === 0) return;
    let pos = 0;
    if (this.#skipLf) {
      this.#skipLf = false;
      if (text.charCodeAt(0) === LF) pos = 1;
    }
    let nextLf = text.indexOf("\n", pos);
    let nextCr = text.indexOf("\r", pos);
    while (nextLf >= 0 || nextCr >= 0) {
      let end: number;
      let next: number;
      if (nextCr >= 0 && (nextLf < 0 || nextCr < nextLf)) {
        end = nextCr;
        if (end + 1 < length) {
          next = text.charCodeAt(end + 1) === LF ? end + 2 : end + 1;
        } else {
          next = end + 1;
          this.#skipLf = true;
        }
      } else {
        end = nextLf;
        next = end + 1;
      }
      const piece = text.slice(pos, end);
      const line = this.#partial ? this.#partial + piece : piece;
      this.#partial = "";
      this.#line(line, emit);
      pos = next;
      if (nextLf >= 0 && nextLf < pos) nextLf = text.indexOf("\n", pos);
      if (nextCr >= 0 && nextCr < pos) nextCr = text.indexOf("\r", pos);
    }
    if (pos < length) {
      this.#partial += text.slice(pos);
      this.#checkSize(this.#partial.length);
    }
  }

  #line(line: string, emit: (event: SseEvent) => void): void {
    if (line.length === 0) {
      this.#dispatch(emit);
      return;
    }
    if (line.charCodeAt(0) === 0x3a /* ":" */) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20 /* " " */) value = value.slice(1);
    switch (field) {
      case "data":
        this.#data.push(value);
        this.#dataChars += value.length + 1;
        this.#checkSize(this.#dataChars);
        break;
      case "event":
        this.#event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.#id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
    }
  }

  #dispatch(emit: (event: SseEvent) => void): void {
    if (this.#data.length > 0) {
      const event: SseEvent = { event: this.#event || "message", data: this.#data.join("\n") };
      if (this.#id !== undefined) event.id = this.#id;
      if (this.#retry !== undefined) event.retry = this.#retry;
      emit(event);
    }
    this.#data = [];
    this.#dataChars = 0;
    this.#event = "";
    this.#retry = undefined;
  }

  #checkSize(chars: number): void {
    if (chars > this.#maxChars) {
      throw new RangeError(
        `Cannot parse server-sent events: an event is longer than ${this.#maxChars} characters`,
      );
    }
  }
}

/**
 * A `TransformStream` from `text/event-stream` bytes (or text) to events.
 *
 * @example Pipe a fetch body through it
 * ```ts
 * import assert from "node:assert/strict";
 * import { SseParseStream } from "@homelab/handler-base/clients/sse";
 *
 * const bytes = new TextEncoder().encode("event: tick\ndata: 1\n\n");
 * const events = ReadableStream.from([bytes.subarray(0, 5), bytes.subarray(5)])
 *   .pipeThrough(new SseParseStream());
 * const [tick] = await Array.fromAsync(events);
 * assert.deepEqual([tick?.event, tick?.data], ["tick", "1"]);
 * ```
 */
export class SseParseStream extends TransformStream<string | Uint8Array, SseEvent> {
  /**
   * Creates the parse stream.
   *
   * @param options The size limit.
   */
  constructor(options: SseParseOptions = {}) {
    const decoder = new SseDecoder(options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS);
    super({
      transform(chunk, controller) {
        decoder.push(chunk, (event) => controller.enqueue(event));
      },
      flush(controller) {
        decoder.end((event) => controller.enqueue(event));
      },
    });
  }
}

/**
 * Parses a `text/event-stream` source into events as they complete. Leaving
 * the loop early ends the iteration of the source (which cancels a body).
 *
 * @param source Bytes or text, such as a response body or an `HttpStream`.
 * @param options The size limit.
 * @returns The events, in order.
 * @throws {RangeError} When an event is longer than `maxEventChars`.
 *
 * @example Several events in one read, one split in the middle of a character
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSse } from "@homelab/handler-base/clients/sse";
 *
 * const bytes = new TextEncoder().encode("data: héllo\n\ndata: a\ndata: b\n\n");
 * const chunks = [bytes.subarray(0, 8), bytes.subarray(8)];
 * const data = [];
 * for await (const event of parseSse(chunks)) data.push(event.data);
 * assert.deepEqual(data, ["héllo", "a\nb"]);
 * ```
 */
export async function* parseSse(
  source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>,
  options: SseParseOptions = {},
): AsyncGenerator<SseEvent, void, undefined> {
  const decoder = new SseDecoder(options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS);
  let ready: SseEvent[] = [];
  const emit = (event: SseEvent) => ready.push(event);
  for await (const chunk of source) {
    decoder.push(chunk, emit);
    if (ready.length > 0) {
      const batch = ready;
      ready = [];
      yield* batch;
    }
  }
  decoder.end(emit);
  yield* ready;
}
