/**
 * Stand-in for the LLM (vLLM on a GPU): OpenAI chat completions,
 * `POST /v1/chat/completions {model, messages, max_tokens, stream}`, whole
 * (`choices[0].message.content`) or as server-sent events
 * (`choices[0].delta.content`, a `finish_reason` on the last chunk, then
 * `data: [DONE]`).
 *
 * It writes no text of its own: it answers from the retrieved context it
 * finds in the last user turn (the numbered `[n] ...` blocks chat-handler
 * puts under "Context:", with the question after "Question:"), picking the
 * sentences that share the most (and the rarest) terms with the question,
 * each followed by its `[n]`, then a "Sources:" line naming the passages
 * used. Without context it says that it only answers from retrieved
 * documents; asked for a greeting (chat-handler's greeting prompt), it greets.
 *
 * Like a real server it takes time: a first-token delay, then one token (a
 * word piece of up to six characters with its leading space) per
 * `tokenIntervalMs`, streamed or not. `max_tokens` cuts the answer with
 * `finish_reason: "length"`. A client that goes away stops the generation
 * (see {@linkcode LlmStandIn.generations}).
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Stream an answer through the project's client
 * ```ts ignore
 * import { startLlmStandIn } from "./llm.ts";
 * import { createLlmClient } from "../../handler_base/clients/llm.ts";
 *
 * await using llm = startLlmStandIn({ tokenIntervalMs: 5 });
 * const client = createLlmClient({ baseUrl: llm.url });
 * const content = "Context:\n[1] NATS is a messaging system.\n\nQuestion: What is NATS?";
 * for await (const delta of client.stream([{ role: "user", content }])) console.log(delta);
 * ```
 *
 * @module
 */
import { delay } from "../../handler_base/async.ts";
import type { Logger } from "../../handler_base/log.ts";
import { isRecord } from "../../handler_base/clients/_json.ts";
import { LABEL_SEPARATOR } from "./docs_corpus.ts";
import { sentences, terms } from "./_text.ts";
import { HttpError, readJsonObject, serveStandIn, type StandIn } from "./_server.ts";

/** A chat message as the stand-in reads it. */
export interface PromptMessage {
  /** `system`, `user` or `assistant`. */
  role: string;
  /** The text. */
  content: string;
}

/** One numbered block of retrieved context. */
export interface ContextBlock {
  /** Its number, `n` of `[n]`. */
  number: number;
  /** Where it comes from (its label line, such as `README.md › Two commands`), when it has one. */
  label?: string;
  /** Its text, without the label line. */
  body: string;
}

/** What the stand-in reads from a conversation. */
export interface Prompt {
  /** The user's question. */
  question: string;
  /** The retrieved context, in its order. */
  context: ContextBlock[];
}

/** The most sentences an answer quotes. */
const MAX_SENTENCES = 3;

/**
 * Reads the question and the numbered context blocks of the last user turn.
 *
 * @param messages The conversation.
 * @returns The question and the context (empty when there is none).
 */
export function readPrompt(messages: readonly PromptMessage[]): Prompt {
  const turn = messages.findLast((m) => m.role === "user")?.content ?? "";
  const context: ContextBlock[] = [];
  const blockPattern = /^\[(\d+)\] ([\s\S]*?)(?=\n\s*\n\[\d+\] |\n\s*\nQuestion:|$(?![\s\S]))/gm;
  for (const match of turn.matchAll(blockPattern)) {
    const text = match[2]!.trim();
    const [first = "", ...rest] = text.split("\n");
    const labelled = first.includes(LABEL_SEPARATOR) && /^\S+\.md /.test(first) &&
      rest.length > 0;
    context.push({
      number: Number(match[1]),
      ...(labelled ? { label: first.trim() } : {}),
      body: labelled ? rest.join("\n") : text,
    });
  }
  const asked = /(?:^|\n)Question:\s*([\s\S]*)$/.exec(turn);
  const question = (asked ? asked[1]! : context.length > 0 ? "" : turn).trim();
  return { question, context };
}

/**
 * Writes the stand-in's answer to a conversation.
 *
 * @param messages The conversation.
 * @returns The answer.
 */
export function composeAnswer(messages: readonly PromptMessage[]): string {
  const { question, context } = readPrompt(messages);
  if (context.length === 0) return answerWithoutContext(question);

  const questionTerms = [...new Set(terms(question))];
  const candidates = context.flatMap((block, rank) =>
    sentences(block.body).map((text, position) => ({ block, rank, position, text }))
  );
  // Rarer terms (found in fewer sentences) say more about what was asked.
  const weight = new Map(questionTerms.map((term) => {
    const found = candidates.filter((c) => terms(c.text).includes(term)).length;
    return [term, found === 0 ? 0 : Math.log(1 + candidates.length / found)];
  }));
  const scored = candidates
    .map((c) => {
      const words = new Set(terms(c.text));
      const score = questionTerms.reduce((s, t) => s + (words.has(t) ? weight.get(t)! : 0), 0);
      return { ...c, score };
    })
    .filter((c) => c.score > 0)
    .sort((a, b) => b.score - a.score || a.rank - b.rank || a.position - b.position);
  const best = scored[0]?.score ?? 0;
  const chosen = scored.filter((c) => c.score >= best * 0.5).slice(0, MAX_SENTENCES);
  if (chosen.length === 0) {
    const covers = context.map((b) => b.label ?? `[${b.number}]`).join("; ");
    return `The retrieved context does not answer "${clip(question)}". It covers: ${covers}.`;
  }
  const body = chosen.map((c) => `${c.text} [${c.block.number}]`).join(" ");
  const cited = [...new Map(chosen.map((c) => [c.block.number, c.block])).values()]
    .sort((a, b) => a.number - b.number)
    .map((b) => `[${b.number}] ${b.label ?? clip(b.body.split("\n")[0]!, 60)}`);
  return `${body}\n\nSources: ${cited.join("; ")}`;
}

function answerWithoutContext(question: string): string {
  const greet = /^Greet (.+?), who just logged in\.?$/.exec(question);
  if (greet) return `Hello ${greet[1]}, welcome back! It is good to see you again.`;
  if (/^Greet the user, who just logged in\.?$/.test(question)) {
    return "Hello, welcome back! It is good to see you again.";
  }
  return "I am the local stack's stand-in language model: I answer only from retrieved " +
    "documents, and this question came without any. Ask again with RAG enabled to get an " +
    `answer from the project's documentation. You asked: "${clip(question)}"`;
}

function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Splits an answer into tokens as the stand-in streams them: word pieces of
 * up to six characters, each with the whitespace before it. Joined, they are
 * the trimmed answer.
 *
 * @param answer The answer.
 * @returns Its tokens.
 */
export function tokenize(answer: string): string[] {
  return answer.trim().match(/\s*\S{1,6}/g) ?? [];
}

/** How one generation ended. */
export interface GenerationOutcome {
  /** `"stop"`, `"length"`, or null when the client went away first. */
  finishReason: "stop" | "length" | null;
  /** How many tokens were sent before it ended. */
  sent: number;
}

/** One generation the stand-in ran (the last 50 are kept). */
export interface GenerationRecord {
  /** Its completion id. */
  id: string;
  /** Whether it was streamed. */
  stream: boolean;
  /** How many tokens it would send in full (after `max_tokens`). */
  tokens: number;
  /** Settles when it ended (completed, cut by `max_tokens`, or the client went away). */
  ended: Promise<GenerationOutcome>;
}

/** Options of {@linkcode startLlmStandIn}. */
export interface LlmStandInOptions {
  /**
   * Milliseconds before the first token (the prompt's processing).
   *
   * @default 150
   */
  firstTokenDelayMs?: number;
  /**
   * Milliseconds between tokens (30 ms is about 33 tokens a second).
   *
   * @default 30
   */
  tokenIntervalMs?: number;
  /**
   * The model name answers carry when the request names none.
   *
   * @default "stand-in-extractive"
   */
  model?: string;
  /**
   * The port (0: a free one).
   *
   * @default 0
   */
  port?: number;
  /**
   * Where bad requests are logged.
   *
   * @default none
   */
  logger?: Logger;
}

/** A running LLM stand-in. */
export interface LlmStandIn extends StandIn {
  /** The recent generations, oldest first. */
  readonly generations: readonly GenerationRecord[];
}

const KEPT_GENERATIONS = 50;

function readMessages(body: Record<string, unknown>): PromptMessage[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new HttpError(400, "Cannot complete the chat: messages must be a non-empty list");
  }
  return messages.map((m, i) => {
    if (!isRecord(m) || typeof m.role !== "string") {
      throw new HttpError(400, `Cannot complete the chat: message ${i} has no role`);
    }
    let content = m.content;
    // The list-of-parts form: [{type: "text", text}].
    if (Array.isArray(content)) {
      content = content.map((p) => isRecord(p) && typeof p.text === "string" ? p.text : "")
        .join("");
    }
    if (typeof content !== "string" && content !== null && content !== undefined) {
      throw new HttpError(400, `Cannot complete the chat: message ${i} has no text content`);
    }
    return { role: m.role, content: content ?? "" };
  });
}

function readMaxTokens(body: Record<string, unknown>): number | undefined {
  const value = body.max_tokens ?? body.max_completion_tokens;
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new HttpError(400, "Cannot complete the chat: max_tokens must be a positive integer");
  }
  return value;
}

/**
 * Starts the LLM stand-in.
 *
 * @param options Pace, model name, port and logger.
 * @returns The running stand-in.
 */
export function startLlmStandIn(options: LlmStandInOptions = {}): LlmStandIn {
  const { firstTokenDelayMs = 150, tokenIntervalMs = 30, logger } = options;
  const generations: GenerationRecord[] = [];
  const encoder = new TextEncoder();

  function remember(record: GenerationRecord): void {
    generations.push(record);
    if (generations.length > KEPT_GENERATIONS) generations.shift();
  }

  const server = serveStandIn({
    name: "llm",
    port: options.port,
    logger,
    errorBody: (status, message) => ({
      object: "error",
      message,
      type: "BadRequestError",
      code: status,
    }),
    routes: {
      async "POST /v1/chat/completions"(request, { signal }) {
        const body = await readJsonObject(request);
        const messages = readMessages(body);
        const maxTokens = readMaxTokens(body);
        const stream = body.stream === true;
        const model = typeof body.model === "string" ? body.model : options.model ??
          "stand-in-extractive";
        const all = tokenize(composeAnswer(messages));
        const tokens = maxTokens === undefined ? all : all.slice(0, maxTokens);
        const finishReason = tokens.length < all.length ? "length" : "stop";
        const id = `chatcmpl-${crypto.randomUUID()}`;
        const created = Math.floor(Date.now() / 1000);
        const promptTokens = messages.reduce((n, m) => n + tokenize(m.content).length, 0);
        const usage = {
          prompt_tokens: promptTokens,
          completion_tokens: tokens.length,
          total_tokens: promptTokens + tokens.length,
        };
        const ended = Promise.withResolvers<GenerationOutcome>();
        remember({ id, stream, tokens: tokens.length, ended: ended.promise });

        if (!stream) {
          try {
            await delay(firstTokenDelayMs + tokenIntervalMs * tokens.length, { signal });
          } catch (error) {
            ended.resolve({ finishReason: null, sent: 0 });
            throw error;
          }
          ended.resolve({ finishReason, sent: tokens.length });
          return Response.json({
            id,
            object: "chat.completion",
            created,
            model,
            choices: [{
              index: 0,
              message: { role: "assistant", content: tokens.join("") },
              finish_reason: finishReason,
            }],
            usage,
          });
        }

        const includeUsage = isRecord(body.stream_options) &&
          body.stream_options.include_usage === true;
        const event = (delta: Record<string, unknown>, finish: string | null) =>
          encoder.encode(
            `data: ${
              JSON.stringify({
                id,
                object: "chat.completion.chunk",
                created,
                model,
                choices: [{ index: 0, delta, finish_reason: finish }],
              })
            }\n\n`,
          );
        let sent = 0;
        let finished = false;
        const stop = () => {
          if (!finished) ended.resolve({ finishReason: null, sent });
          finished = true;
        };
        signal.addEventListener("abort", stop, { once: true });
        let step = -1;
        const body$ = new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              if (step === -1) {
                step++;
                controller.enqueue(event({ role: "assistant", content: "" }, null));
                return;
              }
              if (step < tokens.length) {
                await delay(step === 0 ? firstTokenDelayMs : tokenIntervalMs, { signal });
                if (finished) return;
                controller.enqueue(event({ content: tokens[step++] }, null));
                sent++;
                return;
              }
              controller.enqueue(event({}, finishReason));
              if (includeUsage) {
                controller.enqueue(encoder.encode(
                  `data: ${
                    JSON.stringify({
                      id,
                      object: "chat.completion.chunk",
                      created,
                      model,
                      choices: [],
                      usage,
                    })
                  }\n\n`,
                ));
              }
              controller.enqueue(encoder.encode("data: [DONE]\n\n"));
              controller.close();
              finished = true;
              ended.resolve({ finishReason, sent });
              signal.removeEventListener("abort", stop);
            } catch {
              // The client went away or the server is closing: stop generating.
              stop();
              try {
                controller.close();
              } catch {
                // Already cancelled.
              }
            }
          },
          cancel: stop,
        });
        return new Response(body$, {
          headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
        });
      },
    },
  });
  return {
    url: server.url,
    generations,
    readiness: {
      backend: "llm",
      url: server.url,
      standIn: `extractive answers from the retrieved context, a token every ${tokenIntervalMs} ms`,
      ok: true,
    },
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
}
