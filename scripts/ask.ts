/**
 * Talks to a running stack the way a frontend does, over NATS with protobuf:
 * a chat (streamed token by token to the terminal), or speech written to a
 * WAV file.
 *
 * Run (against `deno task stack`):
 * - `deno run -A scripts/ask.ts chat "What is JetStream?" [--rag] [--no-stream]`
 * - `deno run -A scripts/ask.ts tts "Hello there" out.wav`
 *
 * `NATS_URL` picks the broker (default `nats://127.0.0.1:4222`).
 *
 * @module
 */
import {
  ChatRequestSchema,
  ChatResponseSchema,
  ChatStreamChunkSchema,
  TTSFullResponseSchema,
  TTSRequestSchema,
} from "../handler_base/messages.ts";
import { connectNats, decodeMsg, type NatsConnection, request } from "../handler_base/natsutil.ts";

/** What {@linkcode askChat} got back. */
export interface ChatAnswer {
  /** The whole answer. */
  readonly text: string;
  /** Whether knowledge-base context was used. */
  readonly usedRag: boolean;
  /** How many stream chunks arrived before the answer (0 without streaming). */
  readonly chunks: number;
}

/**
 * Asks chat-handler on `ai.chat.request`, printing streamed chunks as they come.
 *
 * @param nc The connection.
 * @param question The question.
 * @param options RAG, streaming, and where chunks go.
 * @returns The answer.
 */
export async function askChat(
  nc: NatsConnection,
  question: string,
  options: { rag?: boolean; stream?: boolean; onChunk?: (text: string) => void } = {},
): Promise<ChatAnswer> {
  const { rag = false, stream = true, onChunk } = options;
  const requestId = crypto.randomUUID();
  let chunks = 0;
  const sub = nc.subscribe(`ai.chat.response.stream.${requestId}`, {
    callback: (_err, msg) => {
      const chunk = decodeMsg(ChatStreamChunkSchema, msg);
      if (chunk.type === "chunk") {
        chunks++;
        onChunk?.(chunk.content);
      }
    },
  });
  try {
    await nc.flush();
    const answer = await request(
      nc,
      "ai.chat.request",
      ChatRequestSchema,
      {
        requestId,
        userId: "operator",
        message: question,
        enableRag: rag,
        enableReranker: rag,
        enableStreaming: stream,
      },
      ChatResponseSchema,
      { timeout: 60_000 },
    );
    if (!answer.success) throw new Error(`Cannot chat: ${answer.error}`);
    return { text: answer.response, usedRag: answer.usedRag, chunks };
  } finally {
    sub.unsubscribe();
  }
}

/**
 * Asks tts-module for speech on `ai.voice.tts.request.<session>`.
 *
 * @param nc The connection.
 * @param text What to say.
 * @returns The WAV bytes and their sample rate.
 */
export async function speak(
  nc: NatsConnection,
  text: string,
): Promise<{ audio: Uint8Array; sampleRate: number }> {
  const reply = await request(
    nc,
    `ai.voice.tts.request.${crypto.randomUUID()}`,
    TTSRequestSchema,
    { text },
    TTSFullResponseSchema,
    { timeout: 60_000 },
  );
  if (reply.audio.length === 0) throw new Error("Cannot speak: the answer has no audio");
  return { audio: reply.audio, sampleRate: reply.sampleRate };
}

if (import.meta.main) {
  const [command, text, output] = Deno.args.filter((a) => !a.startsWith("--"));
  const flags = new Set(Deno.args.filter((a) => a.startsWith("--")));
  const nc = await connectNats({
    servers: Deno.env.get("NATS_URL") ?? "nats://127.0.0.1:4222",
    name: "ask",
  });
  const encoder = new TextEncoder();
  try {
    if (command === "chat" && text) {
      const answer = await askChat(nc, text, {
        rag: flags.has("--rag"),
        stream: !flags.has("--no-stream"),
        onChunk: (chunk) => Deno.stdout.writeSync(encoder.encode(chunk)),
      });
      if (answer.chunks === 0) console.log(answer.text);
      else console.log();
      console.error(`(used_rag=${answer.usedRag}, ${answer.chunks} chunks)`);
    } else if (command === "tts" && text && output) {
      const { audio, sampleRate } = await speak(nc, text);
      await Deno.writeFile(output, audio);
      console.error(`Wrote ${audio.length} bytes at ${sampleRate} Hz to ${output}`);
    } else {
      console.error(
        'Usage: ask.ts chat "question" [--rag] [--no-stream] | ask.ts tts "text" out.wav',
      );
      Deno.exitCode = 2;
    }
  } finally {
    await nc.close();
  }
}
