/**
 * chat-handler: RAG chat and greetings over NATS (SYSTEM.md section 5). The
 * definition is `chat/service.ts`, the behaviour `chat/handler.ts`, the
 * variables `chat/config.ts`.
 *
 * Run: `deno run -P=chat-handler services/chat.ts` (the permission set in
 * the root `deno.json`: the variables of `chatService.spec`, the backends'
 * hosts, loopback and the health listener). A configuration error exits
 * with code 78.
 *
 * @example Run against a local stack
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 VLLM_URL=http://127.0.0.1:8000 \
 *   deno run -P=chat-handler services/chat.ts
 * ```
 *
 * @module
 */
import { serviceMain } from "@homelab/handler-base/main";
import { chatService } from "./chat/service.ts";

if (import.meta.main) await serviceMain(chatService);
