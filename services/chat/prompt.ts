/**
 * The conversations chat-handler sends to the LLM: a chat turn (system
 * prompt, then the question with the retrieved context) and a greeting.
 *
 * Needs no permission.
 *
 * @example A question with context
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatMessages } from "./prompt.ts";
 *
 * const messages = chatMessages("Be brief.", "What is NATS?", "[1] NATS is a messaging system.");
 * assert.equal(messages[1]?.content.endsWith("Question: What is NATS?"), true);
 * ```
 *
 * @module
 */
import type { ChatMessage } from "@homelab/handler-base/clients/llm";
import { truncateText } from "@homelab/handler-base/text";

/** The system prompt used when neither the request nor `CHAT_SYSTEM_PROMPT` gives one. */
export const DEFAULT_SYSTEM_PROMPT: string =
  "You are a helpful, friendly assistant. Answer clearly and concisely. When context is " +
  "provided, base your answer on it, and say so when it does not contain the answer.";

/** How many characters of a user's name go into the greeting prompt. */
const MAX_NAME_CHARS = 64;

/**
 * The conversation of one chat turn. With context, the user turn carries the
 * numbered context block first and the question after it.
 *
 * @param systemPrompt The system prompt.
 * @param query The user's question.
 * @param context The numbered context block, or "" for none.
 * @returns The system and user messages.
 *
 * @example Without context
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatMessages } from "./prompt.ts";
 *
 * assert.deepEqual(chatMessages("Be brief.", "Hi", "")[1], { role: "user", content: "Hi" });
 * ```
 */
export function chatMessages(systemPrompt: string, query: string, context: string): ChatMessage[] {
  const content = context === "" ? query : [
    "Answer the question using the context below where it is relevant.",
    "",
    "Context:",
    context,
    "",
    `Question: ${query}`,
  ].join("\n");
  return [{ role: "system", content: systemPrompt }, { role: "user", content }];
}

/**
 * The conversation that asks for a short personal greeting.
 *
 * @param name The nickname or username, or "" when unknown.
 * @returns The system and user messages.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { greetingMessages } from "./prompt.ts";
 *
 * assert.equal(greetingMessages("Ada")[1]?.content, "Greet Ada, who just logged in.");
 * ```
 */
export function greetingMessages(name: string): ChatMessage[] {
  const who = truncateText(name.trim(), MAX_NAME_CHARS);
  return [
    {
      role: "system",
      content: "You greet the users of a companion chat app. Write one short, warm, personal " +
        "greeting of at most two sentences. Answer with the greeting only.",
    },
    {
      role: "user",
      content: who ? `Greet ${who}, who just logged in.` : "Greet the user, who just logged in.",
    },
  ];
}
