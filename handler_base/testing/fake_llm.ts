/**
 * A fake OpenAI chat completions server (an LLM such as vLLM): whole
 * answers, and SSE-streamed ones that can be split at any byte, paced and cut
 * in the middle; and {@linkcode chatCompletionEvents}, the events of such a
 * stream for tests and benchmarks that need the bytes without a server.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example A streamed answer split into one-byte reads
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 *
 * await using llm = startFakeLlm({ reply: "Hello there", chunkSize: 1 });
 * const client = createLlmClient({ baseUrl: llm.url });
 * const deltas = await Array.fromAsync(client.stream([{ role: "user", content: "Hi" }]));
 * assert.deepEqual(deltas, ["Hello ", "there"]);
 * assert.deepEqual(llm.requests[0]?.json, {
 *   messages: [{ role: "user", content: "Hi" }],
 *   max_tokens: 1024,
 *   temperature: 0.7,
 *   stream: true,
 * });
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import {
  chunkBytes,
  concatBytes,
  type FakeServer,
  notFound,
  pacedBody,
  splitBytes,
  startFakeHttpServer,
  type StreamPacing,
} from "./fake_http.ts";

const encoder = new TextEncoder();

/** Options of {@linkcode chatCompletionEvents}. */
export interface ChatCompletionEventsOptions {
  /**
   * The `model` of every chunk.
   *
   * @default "fake-model"
   */
  model?: string;
  /**
   * The `finish_reason` of the last chunk; null sends no finishing chunk.
   *
   * @default "stop"
   */
  finishReason?: string | null;
  /**
   * End with `data: [DONE]`.
   *
   * @default true
   */
  done?: boolean;
  /**
   * The line ending of the stream.
   *
   * @default "\n"
   */
  lineEnding?: "\n" | "\r\n" | "\r";
  /**
   * Put a `: keep-alive` comment before every event.
   *
   * @default false
   */
  keepAlive?: boolean;
}

/**
 * The server-sent events of an OpenAI chat completions stream: a role chunk,
 * one chunk per delta, a chunk with the finish reason, then `[DONE]`.
 *
 * @param deltas The text deltas.
 * @param options Model, finish reason, `[DONE]`, line ending and keep-alives.
 * @returns One string per event, each ending with its blank line.
 *
 * @example Build a recorded stream
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatCompletionEvents } from "@homelab/handler-base/testing";
 *
 * const events = chatCompletionEvents(["Hel", "lo"]);
 * assert.equal(events.length, 5); // role, two deltas, finish reason, [DONE]
 * assert.equal(events.at(-1), "data: [DONE]\n\n");
 * ```
 */
export function chatCompletionEvents(
  deltas: readonly string[],
  options: ChatCompletionEventsOptions = {},
): string[] {
  const { model = "fake-model", finishReason = "stop", done = true, lineEnding = "\n" } = options;
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    JSON.stringify({
      id: "chatcmpl-fake",
      object: "chat.completion.chunk",
      created: 0,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
  const data = [
    chunk({ role: "assistant", content: "" }, null),
    ...deltas.map((content) => chunk({ content }, null)),
  ];
  if (finishReason !== null) data.push(chunk({}, finishReason));
  if (done) data.push("[DONE]");
  const prefix = options.keepAlive ? `: keep-alive${lineEnding}${lineEnding}` : "";
  return data.map((d) => `${prefix}data: ${d}${lineEnding}${lineEnding}`);
}

/** The behaviour of {@linkcode startFakeLlm}; tests may change it between calls. */
export interface FakeLlmConfig extends StreamPacing, ChatCompletionEventsOptions {
  /**
   * The answer, or a function of the parsed request body.
   *
   * @default "Hello from the fake LLM."
   */
  reply?: string | ((request: Record<string, unknown>) => string);
  /**
   * The deltas of a streamed answer.
   *
   * @default the reply split into words (each with its trailing space)
   */
  deltas?: string[];
  /**
   * Split the streamed bytes into pieces of this size.
   *
   * @default one piece per event
   */
  chunkSize?: number;
  /**
   * Split the streamed bytes at these offsets (overrides `chunkSize`).
   *
   * @default none
   */
  splitAt?: number[];
  /**
   * Send this many events, then half of the next, then break the connection.
   *
   * @default never
   */
  cutAfterEvents?: number;
}

/** A fake LLM server. */
export interface FakeLlm extends FakeServer {
  /** The behaviour; change it between calls. */
  config: FakeLlmConfig;
}

/**
 * Starts a fake OpenAI chat completions server (`POST /v1/chat/completions`):
 * a JSON answer, or with `stream: true` an SSE stream shaped by `config`.
 * Bodies without `messages` get a vLLM-style 400.
 *
 * @param config The initial behaviour.
 * @returns The running fake.
 *
 * @example Cut the first stream, answer the next normally
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 * import { BackendUnavailableError } from "@homelab/handler-base/errors";
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 *
 * await using llm = startFakeLlm({ reply: "one two three", cutAfterEvents: 2 });
 * const client = createLlmClient({ baseUrl: llm.url });
 * const read = async () => (await Array.fromAsync(client.stream([{ role: "user", content: "Hi" }]))).join("");
 * await assert.rejects(read(), BackendUnavailableError);
 * llm.config.cutAfterEvents = undefined;
 * assert.equal(await read(), "one two three");
 * ```
 */
export function startFakeLlm(config: FakeLlmConfig = {}): FakeLlm {
  const fake: FakeLlm = Object.assign(
    startFakeHttpServer((request, context) => {
      if (request.method !== "POST" || request.path !== "/v1/chat/completions") {
        return notFound(request);
      }
      const body = request.json;
      if (!isRecord(body) || !Array.isArray(body.messages) || body.messages.length === 0) {
        return Response.json(
          { object: "error", message: "messages is required", type: "BadRequestError", code: 400 },
          { status: 400 },
        );
      }
      const c = fake.config;
      const model = typeof body.model === "string" ? body.model : c.model ?? "fake-model";
      const reply = typeof c.reply === "function"
        ? c.reply(body)
        : c.reply ?? "Hello from the fake LLM.";
      const deltas = c.deltas ?? reply.match(/\S+\s*|\s+/g) ?? [];
      if (body.stream !== true) {
        return Response.json({
          id: "chatcmpl-fake",
          object: "chat.completion",
          created: 0,
          model,
          choices: [{
            index: 0,
            message: { role: "assistant", content: c.deltas ? deltas.join("") : reply },
            finish_reason: c.finishReason === undefined ? "stop" : c.finishReason,
          }],
        });
      }
      const events = chatCompletionEvents(deltas, { ...c, model }).map((e) => encoder.encode(e));
      let bytes = concatBytes(events);
      const cut = c.cutAfterEvents !== undefined;
      if (cut) {
        const kept = events.slice(0, c.cutAfterEvents);
        const next = events[c.cutAfterEvents!];
        bytes = concatBytes([
          ...kept,
          next?.subarray(0, Math.floor(next.length / 2)) ?? new Uint8Array(0),
        ]);
      }
      let pieces: Uint8Array[];
      if (c.splitAt) pieces = splitBytes(bytes, c.splitAt);
      else if (c.chunkSize) pieces = chunkBytes(bytes, c.chunkSize);
      else if (cut) pieces = [bytes];
      else pieces = events;
      return new Response(pacedBody(pieces, context, { ...c, cut }), {
        headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      });
    }),
    { config },
  );
  return fake;
}
