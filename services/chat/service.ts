/**
 * The definition of chat-handler: its variables and how they become the
 * backend clients and the chat and greeting endpoints (see `handler.ts` for
 * the behaviour and `config.ts` for the variables).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chatService } from "./service.ts";
 *
 * assert.deepEqual([chatService.name, chatService.spec.vllmUrl.name], ["chat-handler", "VLLM_URL"]);
 * ```
 *
 * @module
 */
import { defineService } from "@homelab/handler-base/main";
import {
  chatClientsFromConfig,
  chatHandlerOptionsFromConfig,
  chatModuleConfigSpec,
} from "./config.ts";
import { createChatEndpoints } from "./handler.ts";

/** chat-handler: RAG chat with token streaming, TTS and greetings. */
export const chatService = defineService({
  name: "chat-handler",
  description: "RAG chat with streamed tokens, optional speech, and greetings",
  config: chatModuleConfigSpec,
  setup(config, { clients }) {
    const endpoints = createChatEndpoints(
      chatClientsFromConfig(config, clients),
      chatHandlerOptionsFromConfig(config),
    );
    return { endpoints };
  },
});
