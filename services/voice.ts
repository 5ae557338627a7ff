/**
 * voice-assistant: speech in, speech out (SYSTEM.md section 5). A
 * VoiceRequest on `ai.voice.request` is transcribed, optionally answered
 * with retrieved context, and the LLM's answer is spoken sentence by
 * sentence while it is still being written: TTSAudioChunk messages on
 * `ai.voice.response.audio.{request_id}`, then the VoiceResponse on
 * `ai.voice.response.{request_id}` and the reply subject. See
 * `voice/handler.ts` for the behaviour and `voice/config.ts` for the
 * variables.
 *
 * Run: `deno run -P=voice-assistant services/voice.ts`. A configuration
 * error exits with code 78.
 *
 * @example Run against a local stack
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 WHISPER_URL=http://127.0.0.1:8010 VLLM_URL=http://127.0.0.1:8000 \
 *   TTS_URL=http://127.0.0.1:8020 VOICE_ENABLE_RAG=false deno run -P=voice-assistant services/voice.ts
 * ```
 *
 * @module
 */
import { serviceMain } from "@homelab/handler-base/main";
import { voiceService } from "./voice/service.ts";

if (import.meta.main) await serviceMain(voiceService);
