import assert from "node:assert/strict";
import { parseSse, type SseEvent, SseParseStream } from "./sse.ts";

const recorded = await Deno.readFile(new URL("./testdata/chat_stream.sse", import.meta.url));
const encoder = new TextEncoder();

async function collect(chunks: (string | Uint8Array)[]): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of parseSse(chunks)) events.push(event);
  return events;
}

async function collectStream(chunks: (string | Uint8Array)[]): Promise<SseEvent[]> {
  return await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(new SseParseStream()));
}

function withLineEnding(bytes: Uint8Array, ending: string): Uint8Array {
  return encoder.encode(new TextDecoder().decode(bytes).replaceAll("\n", ending));
}

Deno.test("parseSse() reads the events of a recorded LLM stream", async () => {
  const events = await collect([recorded]);
  assert.equal(events.length, 13);
  assert.ok(events.every((e) => e.event === "message"));
  assert.equal(events.at(-1)?.data, "[DONE]");
  const deltas = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0].delta.content ?? "");
  assert.equal(deltas.join(""), "Grüße aus Köln 👋! 日本語 ok\n\nÜnïcödé end.");
});

for (const [name, ending] of [["LF", "\n"], ["CRLF", "\r\n"], ["CR", "\r"]] as const) {
  Deno.test(`parseSse() gives the same events for every split point (${name})`, async () => {
    const bytes = withLineEnding(recorded, ending);
    const expected = await collect([recorded]);
    for (let at = 0; at <= bytes.length; at++) {
      const events = await collect([bytes.subarray(0, at), bytes.subarray(at)]);
      assert.deepEqual(events, expected, `split at byte ${at}`);
    }
  });
}

Deno.test("parseSse() gives the same events when fed one byte at a time", async () => {
  const expected = await collect([recorded]);
  for (const ending of ["\n", "\r\n", "\r"]) {
    const bytes = withLineEnding(recorded, ending);
    const pieces = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
    assert.deepEqual(await collect(pieces), expected, JSON.stringify(ending));
  }
});

Deno.test("parseSse() gives the same events for random multi-way splits", async () => {
  const bytes = withLineEnding(recorded, "\r\n");
  const expected = await collect([recorded]);
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 200; round++) {
    const pieces: Uint8Array[] = [];
    for (let start = 0; start < bytes.length;) {
      const size = 1 + Math.floor(random() * 40);
      pieces.push(bytes.subarray(start, start + size));
      start += size;
    }
    assert.deepEqual(await collect(pieces), expected, `round ${round}`);
  }
});

Deno.test("SseParseStream gives the same events as parseSse()", async () => {
  const bytes = withLineEnding(recorded, "\r\n");
  const pieces = [bytes.subarray(0, 301), bytes.subarray(301, 302), bytes.subarray(302)];
  assert.deepEqual(await collectStream(pieces), await collect([recorded]));
});

Deno.test("parseSse() handles a CR at the end of one read and its LF at the start of the next", async () => {
  const events = await collect(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
  assert.deepEqual(events, [{ event: "message", data: "a\nb" }]);
});

Deno.test("parseSse() decodes a multi-byte character split across reads", async () => {
  const bytes = encoder.encode("data: 👋é\n\n");
  for (let at = 6; at < 12; at++) {
    const events = await collect([bytes.subarray(0, at), bytes.subarray(at)]);
    assert.deepEqual(events, [{ event: "message", data: "👋é" }]);
  }
});

Deno.test("parseSse() joins multi-line data and reads event, id and retry fields", async () => {
  const text = "event: update\nid: 7\nretry: 1500\ndata: line one\ndata:line two\ndata\n\n" +
    "data: next\n\n";
  assert.deepEqual(await collect([text]), [
    { event: "update", data: "line one\nline two\n", id: "7", retry: 1500 },
    { event: "message", data: "next", id: "7" },
  ]);
});

Deno.test("parseSse() skips comments, keep-alives and events without data", async () => {
  const text = ": keep-alive\n\n:\n\nevent: ping\n\nunknown: x\nretry: soon\ndata: kept\n\n";
  assert.deepEqual(await collect([text]), [{ event: "message", data: "kept" }]);
});

Deno.test("parseSse() handles several events in one read", async () => {
  const events = await collect(["data: 1\n\ndata: 2\n\ndata: 3\n\n"]);
  assert.deepEqual(events.map((e) => e.data), ["1", "2", "3"]);
});

Deno.test("parseSse() drops an event the stream cut off before its blank line", async () => {
  assert.deepEqual(await collect(["data: complete\n\ndata: cut"]), [
    { event: "message", data: "complete" },
  ]);
  assert.deepEqual(await collect(["data: cut\n"]), []);
});

Deno.test("parseSse() strips a leading byte order mark", async () => {
  const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode("data: x\n\n")]);
  assert.deepEqual(await collect([bytes.subarray(0, 2), bytes.subarray(2)]), [
    { event: "message", data: "x" },
  ]);
  assert.deepEqual(await collect(["\ufeffdata: y\n\n"]), [{ event: "message", data: "y" }]);
});

Deno.test("parseSse() rejects an event longer than maxEventChars", async () => {
  const long = "data: " + "x".repeat(100) + "\n\n";
  await assert.rejects(
    Array.fromAsync(parseSse([long], { maxEventChars: 50 })),
    (error: Error) => error instanceof RangeError && /longer than 50/.test(error.message),
  );
  // A line with no end yet is bounded too.
  await assert.rejects(
    Array.fromAsync(parseSse(["data: " + "y".repeat(100)], { maxEventChars: 50 })),
    RangeError,
  );
  assert.equal((await collect([long])).length, 1);
});

Deno.test("parseSse() ends the source's iteration when the loop breaks", async () => {
  let returned = false;
  const source = {
    async *[Symbol.asyncIterator]() {
      try {
        yield "data: 1\n\n";
        yield "data: 2\n\n";
      } finally {
        returned = true;
      }
    },
  };
  for await (const _ of parseSse(source)) break;
  assert.ok(returned);
});
