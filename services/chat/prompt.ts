/**
 * The prompts of chat-handler's own: its default system prompt and the
 * greeting conversation. The chat turn itself (system prompt, context,
 * question) is `chatMessages` of `@homelab/handler-base/prompt`, shared with
 * voice-assistant.
 *
 * Needs no permission.
 *
 * @example A greeting
 * ```ts
 * import assert from "node:assert/strict";
 * import { greetingMessages } from "./prompt.ts";
 *
 * assert.equal(greetingMessages("Ada")[0]?.role, "system");
 * ```
 *
 * @module
 */
import type { ChatMessage } from "@homelab/handler-base/clients/llm";
import { truncateText } from "@homelab/handler-base/text";

/** The chat turn, now shared with voice-assistant; re-exported for chat's existing importers. */
export { chatMessages } from "@homelab/handler-base/prompt";

/** The system prompt used when neither the request nor `CHAT_SYSTEM_PROMPT` gives one. */
export const DEFAULT_SYSTEM_PROMPT: string =
  "You are a helpful, friendly assistant. Answer clearly and concisely. When context is " +
  "provided, base your answer on it, and say so when it does not contain the answer.";

/** How many characters of a user's name go into the greeting prompt. */
const MAX_NAME_CHARS = 64;

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
