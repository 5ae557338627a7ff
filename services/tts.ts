/**
 * tts-module: the NATS front of the TTS backend. The definition is
 * `tts/service.ts`, the behaviour `tts/handler.ts`, the variables
 * `tts/config.ts`.
 *
 * Run: `deno run -P=tts-module services/tts.ts`. The `tts-module` permission
 * set of the root `deno.json` allows reading `/voices`, the voices directory
 * of the container image; with another `TTS_VOICES_DIR`, add
 * `--allow-read=<that directory>`.
 *
 * @example Run against a local stack
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 TTS_URL=http://127.0.0.1:8020 \
 *   deno run -P=tts-module services/tts.ts
 * ```
 *
 * @module
 */
import { serviceMain } from "@homelab/handler-base/main";
import { ttsService } from "./tts/service.ts";

if (import.meta.main) await serviceMain(ttsService);
