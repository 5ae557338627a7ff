/**
 * `chat` and `greet`: chat-handler over its contract (SYSTEM.md sections 4
 * and 5). `chat` sends a ChatRequest on `ai.chat.request`, prints the
 * ChatStreamChunk deltas of `ai.chat.response.stream.{request_id}` as they
 * arrive, and takes the ChatResponse from the reply or from
 * `ai.chat.response.{request_id}`. `greet` sends a GreetingRequest on
 * `ai.chat.user.{user}.greeting.request` and takes the GreetingResponse from
 * the reply or from `ai.chat.user.{user}.greeting.response`.
 *
 * @example
 * ```ts ignore
 * import { chat } from "./chat.ts";
 *
 * const result = await chat(ctx, { question: "What is JetStream?", rag: true, stream: true });
 * console.log(result.usedRag);
 * ```
 *
 * @module
 */
import {
  ChatRequestSchema,
  ChatResponseSchema,
  ChatStreamChunkSchema,
  GreetingRequestSchema,
  GreetingResponseSchema,
} from "../messages.ts";
import { decodeMsg } from "../natsutil.ts";
import { callService } from "./call.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";
import { writeOutput } from "./files.ts";
import { seconds } from "./output.ts";

/** Options of {@linkcode chat}. */
export interface ChatOptions {
  /** The question. */
  question: string;
  /** Ask for knowledge-base context (and reranking). @default false */
  rag?: boolean;
  /** Ask for streamed tokens and print them as they arrive. @default false */
  stream?: boolean;
  /** Ask for speech of the answer and write it to this WAV file. @default none */
  ttsFile?: string | undefined;
  /** The user id sent. @default "cli" */
  userId?: string;
  /** The request id. @default a new UUID */
  requestId?: string;
}

/** What {@linkcode chat} returns. */
export interface ChatResult {
  /** The request id. */
  readonly requestId: string;
  /** The answer. */
  readonly response: string;
  /** Whether knowledge-base context was used. */
  readonly usedRag: boolean;
  /** The sources of that context. */
  readonly ragSources: readonly string[];
  /** How many streamed chunks arrived. */
  readonly chunks: number;
  /** Milliseconds from the request to the first chunk, when one came. */
  readonly firstTokenMs?: number;
  /** The WAV file written, with `--tts`. */
  readonly audioFile?: string;
  /** Its size in bytes. */
  readonly audioBytes?: number;
}

/**
 * Asks chat-handler a question, printing tokens as they arrive.
 *
 * @param ctx Connection, output, timeout.
 * @param options The question and what to ask for.
 * @returns The answer.
 * @throws {CliError} When the answer says `success=false` (exit code 1).
 *
 * @example
 * ```ts ignore
 * await chat(ctx, { question: "Hello?", stream: true });
 * ```
 */
export async function chat(ctx: CommandContext, options: ChatOptions): Promise<ChatResult> {
  const { nc, ui } = ctx;
  const requestId = options.requestId ?? crypto.randomUUID();
  const stream = options.stream ?? false;
  const started = performance.now();
  let chunks = 0;
  let firstTokenMs: number | undefined;
  let streamError = "";
  const sub = stream
    ? nc.subscribe(`ai.chat.response.stream.${requestId}`, {
      callback: (_error, msg) => {
        let chunk;
        try {
          chunk = decodeMsg(ChatStreamChunkSchema, msg);
        } catch {
          return;
        }
        if (chunk.type === "chunk" && chunk.content) {
          chunks++;
          firstTokenMs ??= performance.now() - started;
          ui.write(chunk.content);
          ui.event("token", { content: chunk.content });
        } else if (chunk.type === "error") {
          streamError = chunk.content;
        }
      },
    })
    : undefined;
  let answer;
  try {
    ui.progress(`Asking chat-handler (request ${requestId})...`);
    answer = await callService(nc, {
      subject: "ai.chat.request",
      requestSchema: ChatRequestSchema,
      message: {
        requestId,
        userId: options.userId ?? "cli",
        username: options.userId ?? "cli",
        message: options.question,
        enableRag: options.rag ?? false,
        enableReranker: options.rag ?? false,
        enableStreaming: stream,
        enableTts: options.ttsFile !== undefined,
      },
      responseSchema: ChatResponseSchema,
      resultSubject: `ai.chat.response.${requestId}`,
      timeoutMs: ctx.timeoutMs,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    // Chunks published before the answer are delivered before it; this makes sure of it.
    await nc.flush();
  } finally {
    sub?.unsubscribe();
  }
  if (!answer.success) {
    if (chunks > 0) ui.line("");
    throw new CliError(
      EXIT_CODES.remoteError,
      `chat-handler answered: ${answer.error || streamError || "no success"}`,
    );
  }
  if (chunks > 0) ui.line("");
  else ui.line(answer.response);
  const result: ChatResult = {
    requestId,
    response: answer.response || answer.responseText,
    usedRag: answer.usedRag,
    ragSources: [...answer.ragSources],
    chunks,
    ...(firstTokenMs === undefined ? {} : { firstTokenMs: Math.round(firstTokenMs) }),
  };
  if (answer.ragSources.length > 0) ui.progress(`Sources: ${answer.ragSources.join(", ")}`);
  const timing = firstTokenMs === undefined ? "" : `, first token after ${seconds(firstTokenMs)}`;
  ui.progress(`(used_rag=${answer.usedRag}, ${chunks} chunks${timing})`);
  if (options.ttsFile === undefined) return result;
  if (answer.audio.length === 0) {
    throw new CliError(EXIT_CODES.remoteError, "Cannot write the speech: the answer has no audio");
  }
  await writeOutput(options.ttsFile, answer.audio);
  ui.progress(`Wrote ${answer.audio.length} bytes of speech to ${options.ttsFile}`);
  return { ...result, audioFile: options.ttsFile, audioBytes: answer.audio.length };
}

/** Options of {@linkcode greet}. */
export interface GreetOptions {
  /** The user id (a subject token: no dots, spaces or wildcards). */
  user: string;
  /** The nickname to greet. @default none */
  nickname?: string | undefined;
  /** Premium user. @default false */
  premium?: boolean;
}

/** What {@linkcode greet} returns. */
export interface GreetResult {
  /** The user id. */
  readonly userId: string;
  /** The greeting. */
  readonly greeting: string;
}

/**
 * Asks chat-handler for a greeting.
 *
 * @param ctx Connection, output, timeout.
 * @param options The user.
 * @returns The greeting.
 *
 * @example
 * ```ts ignore
 * console.log((await greet(ctx, { user: "ada" })).greeting);
 * ```
 */
export async function greet(ctx: CommandContext, options: GreetOptions): Promise<GreetResult> {
  const { user } = options;
  const reply = await callService(ctx.nc, {
    subject: `ai.chat.user.${user}.greeting.request`,
    requestSchema: GreetingRequestSchema,
    message: {
      userId: user,
      username: user,
      nickname: options.nickname ?? "",
      premium: options.premium ?? false,
    },
    responseSchema: GreetingResponseSchema,
    resultSubject: `ai.chat.user.${user}.greeting.response`,
    timeoutMs: ctx.timeoutMs,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  ctx.ui.line(reply.greeting);
  return { userId: reply.userId || user, greeting: reply.greeting };
}
