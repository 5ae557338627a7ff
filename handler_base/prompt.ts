/**
 * The conversation of one RAG turn, shared by chat and voice: the system
 * prompt, then the user's question with the retrieved context before it.
 *
 * Needs no permission.
 *
 * @example A question with context
 * ```ts
 * import { chatMessages } from "@homelab/handler-base/prompt";
 *
 * const messages = chatMessages("Be brief.", "What is NATS?", "[1] NATS is a messaging system.");
 * console.log(messages[1]?.content.endsWith("Question: What is NATS?")); // true
 * ```
 *
 * @module
 */
import type { ChatMessage } from "./clients/llm.ts";

/**
 * The conversation of one chat turn. With context, the user turn carries the
 * numbered context block (as `retrieve` formats it) first and the question
 * after it; without, the user turn is the question alone.
 *
 * @param systemPrompt The system prompt.
 * @param query The user's question.
 * @param context The numbered context block, or "" for none.
 * @returns The system and user messages.
 *
 * @example Without context
 * ```ts
 * import { chatMessages } from "@homelab/handler-base/prompt";
 *
 * console.log(chatMessages("Be brief.", "Hi", "")[1]); // { role: "user", content: "Hi" }
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
