import assert from "node:assert/strict";
import { chatMessages } from "./prompt.ts";

Deno.test("chatMessages() puts the system prompt first and the question alone without context", () => {
  assert.deepEqual(chatMessages("Be brief.", "What is NATS?", ""), [
    { role: "system", content: "Be brief." },
    { role: "user", content: "What is NATS?" },
  ]);
});

Deno.test("chatMessages() puts the context before the question", () => {
  const [, user] = chatMessages("Be brief.", "What is NATS?", "[1] A bus.\n\n[2] Fast.");
  assert.equal(
    user?.content,
    "Answer the question using the context below where it is relevant.\n\nContext:\n" +
      "[1] A bus.\n\n[2] Fast.\n\nQuestion: What is NATS?",
  );
});
