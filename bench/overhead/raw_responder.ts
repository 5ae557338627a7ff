/**
 * The baseline of `bench/overhead.ts`: raw nats.js responders doing what
 * tts-module's endpoints do, without handler-base. Each message is handled in
 * the subscription's callback, with no slots, deadline, run object or error
 * boundary:
 *
 * - `bench.raw.voices.list`: decodes the (empty) request and encodes the
 *   TTSVoiceListResponse tts-module answers with an empty voices directory;
 * - `bench.raw.tts.request.<session>`: decodes the TTSRequest, publishes the
 *   `processing` TTSStatus, synthesizes with the same TTS client
 *   (`ttsClientFromConfig`, the fake XTTS's default speaker), publishes the
 *   TTSFullResponse on the audio subject and the `completed` status, and
 *   answers with the TTSFullResponse.
 *
 * Run as a subprocess: `deno run -A bench/overhead/raw_responder.ts <nats-url> <tts-url>`;
 * it prints `READY` once subscribed and stops on SIGTERM.
 *
 * @module
 */
import { loadConfig } from "../../handler_base/config.ts";
import { ttsClientFromConfig, ttsConfigSpec } from "../../handler_base/clients/tts.ts";
import {
  AudioEncoding,
  create,
  decode,
  EmptySchema,
  encode,
  MSG_TYPE_HEADER,
  TTSFullResponseSchema,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
  unixSeconds,
} from "../../handler_base/messages.ts";
import { connectNats, messageHeaders, type Msg, publish } from "../../handler_base/natsutil.ts";

/** The subjects of the raw responders. */
export const RAW_SUBJECTS = {
  voices: "bench.raw.voices.list",
  synthesize: "bench.raw.tts.request.",
} as const;

if (import.meta.main) {
  const [url, ttsUrl] = Deno.args;
  const nc = await connectNats({ servers: url!, name: "bench-raw" });
  const tts = ttsClientFromConfig(loadConfig(ttsConfigSpec, { TTS_URL: ttsUrl! }));
  const lastRefresh = unixSeconds();
  const voicesHeaders = messageHeaders(TTSVoiceListResponseSchema.typeName);
  nc.subscribe(RAW_SUBJECTS.voices, {
    callback: (_error, msg) => {
      decode(EmptySchema, msg.data);
      const reply = encode(TTSVoiceListResponseSchema, {
        defaultSpeaker: "default",
        customVoices: [],
        lastRefresh,
        timestamp: unixSeconds(),
      });
      msg.respond(reply, { headers: voicesHeaders });
    },
  });
  const fullHeaders = messageHeaders(TTSFullResponseSchema.typeName);
  const synthesize = async (msg: Msg): Promise<void> => {
    const request = decode(TTSRequestSchema, msg.data, {
      msgType: msg.headers?.get(MSG_TYPE_HEADER) || undefined,
    });
    const sessionId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    const status = (status: string) =>
      publish(nc, `ai.voice.tts.status.${sessionId}`, TTSStatusSchema, {
        sessionId,
        status,
        message: "",
        timestamp: unixSeconds(),
      });
    status("processing");
    const { audio, format } = await tts.synthesize(request.text, { language: "en" });
    const response = create(TTSFullResponseSchema, {
      sessionId,
      audio,
      timestamp: unixSeconds(),
      sampleRate: format.sampleRate,
      channels: format.channels,
      bitDepth: format.bitDepth,
      audioEncoding: format.encoding === "wav" ? AudioEncoding.WAV : AudioEncoding.PCM_S16LE,
    });
    publish(nc, `ai.voice.tts.audio.${sessionId}`, TTSFullResponseSchema, response);
    status("completed");
    msg.respond(encode(TTSFullResponseSchema, response), { headers: fullHeaders });
  };
  nc.subscribe(`${RAW_SUBJECTS.synthesize}>`, {
    callback: (_error, msg) => {
      synthesize(msg).catch((error) => console.error("raw synthesize failed", error));
    },
  });
  await nc.flush();
  console.log("READY");
  await new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve(undefined)));
  await nc.close();
  Deno.exit(0);
}
