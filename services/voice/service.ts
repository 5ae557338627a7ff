/**
 * The definition of voice-assistant: its variables (`config.ts`) and the
 * setup that builds the backend clients and the endpoint (`handler.ts`).
 * Stage spans (`voice.stt`, `voice.rag`, `voice.llm`, `voice.tts`) come from
 * the service's telemetry, the same tracer as the runtime's message spans.
 *
 * Needs what `handler.ts` needs; loading the configuration needs the
 * `voice-assistant` permission set.
 *
 * @example Run it in-process over a test server
 * ```ts ignore
 * import { startTestService } from "@homelab/handler-base/testing";
 * import { voiceService } from "./service.ts";
 *
 * await using t = await startTestService({
 *   definition: voiceService,
 *   env: { WHISPER_URL: whisper.url, VLLM_URL: llm.url, TTS_URL: xtts.url, VOICE_ENABLE_RAG: "false" },
 * });
 * ```
 *
 * @module
 */
import { llmClientFromConfig } from "@homelab/handler-base/clients/llm";
import { ragClientsFromConfig } from "@homelab/handler-base/clients/rag";
import { sttClientFromConfig } from "@homelab/handler-base/clients/stt";
import { ttsClientFromConfig } from "@homelab/handler-base/clients/tts";
import { defineService } from "@homelab/handler-base/main";
import { createTelemetry } from "@homelab/handler-base/telemetry";
import { voiceModuleConfigSpec, voiceOptionsFromConfig } from "./config.ts";
import { createVoiceEndpoints } from "./handler.ts";

/** voice-assistant: speech in, speech out, the first audio while the LLM still writes. */
export const voiceService = defineService({
  name: "voice-assistant",
  description:
    "Voice to voice: STT, optional RAG, a streamed LLM answer spoken sentence by sentence",
  config: voiceModuleConfigSpec,
  setup(config, { name, logger }) {
    const options = voiceOptionsFromConfig(config);
    const telemetry = createTelemetry({ serviceName: name });
    const clients = {
      stt: sttClientFromConfig(config, { logger }),
      llm: llmClientFromConfig(config, { logger }),
      tts: ttsClientFromConfig(config, { logger }),
      ...(config.enableRag ? { rag: ragClientsFromConfig(config, { logger }) } : {}),
    };
    const endpoints = createVoiceEndpoints(clients, { ...options, tracer: telemetry.tracer });
    return { endpoints, telemetry };
  },
});
