/**
 * chat-handler: RAG chat and greetings over NATS (SYSTEM.md section 5).
 * Wiring only: configuration, logger, clients, endpoints, runner. The logic
 * lives in `services/chat/`.
 *
 * Run: `deno run -P=chat-handler services/chat.ts` (the permission set in
 * the root `deno.json`: the variables of `chatConfigSpec`, the backends'
 * hosts, loopback and the health listener). A configuration error exits
 * with code 78.
 *
 * @module
 */
import { ConfigError, loadConfig } from "@homelab/handler-base/config";
import { consumeSettingsFromConfig } from "@homelab/handler-base/jetstream";
import { createLogger } from "@homelab/handler-base/log";
import { natsOptionsFromConfig } from "@homelab/handler-base/natsutil";
import { runService } from "@homelab/handler-base/run";
import {
  chatClientsFromConfig,
  type ChatConfig,
  chatConfigSpec,
  chatHandlerOptionsFromConfig,
} from "./chat/config.ts";
import { createChatEndpoints } from "./chat/handler.ts";

if (import.meta.main) {
  let config: ChatConfig;
  try {
    config = loadConfig(chatConfigSpec, Deno.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(78);
  }
  const logger = createLogger({ service: "chat-handler", level: config.logLevel });
  const endpoints = createChatEndpoints(
    chatClientsFromConfig(config, logger),
    chatHandlerOptionsFromConfig(config),
  );
  await runService({
    name: "chat-handler",
    endpoints,
    nats: natsOptionsFromConfig(config),
    healthPort: config.healthPort,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
    ...consumeSettingsFromConfig(config),
  });
}
