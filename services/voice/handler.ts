/**
 * The endpoint of voice-assistant (SYSTEM.md section 5): `ai.voice.request`
 * (VoiceRequest) in; speech out while the LLM still writes; one
 * VoiceResponse at the end.
 *
 * For each request (a missing `request_id` gets a random UUID):
 * 1. The audio is checked ({@linkcode checkVoiceAudio}: WAV, or raw PCM
 *    16 kHz mono s16le, at most `maxAudioBytes`) and the `language` too.
 *    A bad request publishes `VoiceResponse{request_id, error}` on
 *    `ai.voice.response.{request_id}` and answers the reply subject with an
 *    `InvalidArgument` ErrorResponse.
 * 2. The turn runs ({@linkcode runVoicePipeline}). Its audio goes out as
 *    TTSAudioChunk messages on `ai.voice.response.audio.{request_id}`: raw
 *    PCM in whole frames with its format (`sample_rate`, `channels`,
 *    `bit_depth`, `audio_encoding` PCM_S16LE), `session_id` = request id,
 *    `chunk_index` from 0, `total_chunks` 0; then one chunk without audio
 *    with `is_last=true` and `total_chunks` set. No audio, no chunks.
 * 3. Then the VoiceResponse `{request_id, transcription, response, audio,
 *    sources, error}` goes to `ai.voice.response.{request_id}` and is the
 *    reply. `audio` is one WAV whose samples are the chunks joined. When a
 *    stage failed, the response still goes out, with what was obtained and
 *    `error` set (the chunk stream, if it started, still ends with
 *    `is_last`). When the WAV is larger than the server's max payload allows,
 *    `audio` stays empty and `error` too: the answer is whole, and the
 *    chunks, which always carry all of it, are its audio.
 *
 * The deadline (`timeoutMs`) and the shutdown cancel every stage; the reply
 * subject then gets the runtime's `Timeout` ErrorResponse, and the per-id
 * subject still gets the VoiceResponse. Nothing is retried: the requester
 * already has its answer, so a JetStream redelivery would only repeat it.
 *
 * In JetStream consume mode the requests come from the durable consumer
 * `voice-assistant` on `AI_VOICE_STREAM`. That stream is `no_ack`, and the
 * stored message has no reply subject: a request there gets no answer, and
 * the results arrive on the per-id subjects only.
 *
 * Requires `--allow-net` to the backends and NATS (through the clients and
 * the runtime).
 *
 * @example Serve the endpoint
 * ```ts ignore
 * import { createService } from "@homelab/handler-base/handler";
 * import { createVoiceEndpoints } from "./handler.ts";
 *
 * const endpoints = createVoiceEndpoints({ stt, llm, tts, rag }, { maxAudioBytes: 1 << 22 });
 * await using service = createService(nc, { name: "voice-assistant", endpoints, logger });
 * await service.start();
 * ```
 *
 * @module
 */
import { trace, type Tracer } from "@opentelemetry/api";
import type { AudioFormat } from "@homelab/handler-base/clients/tts";
import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
import { errorType, InvalidArgumentError, toErrorResponse } from "@homelab/handler-base/errors";
import { defineEndpoint, type Endpoint } from "@homelab/handler-base/handler";
import {
  AudioEncoding,
  create,
  TTSAudioChunkSchema,
  unixSeconds,
  VoiceRequestSchema,
  type VoiceResponse,
  VoiceResponseSchema,
} from "@homelab/handler-base/messages";
import { recordError } from "@homelab/handler-base/telemetry";
import { checkVoiceAudio, languageCode } from "./audio.ts";
import { runVoicePipeline, type VoiceClients, type VoicePipelineOptions } from "./pipeline.ts";

/** The subject of voice requests. */
export const VOICE_REQUEST_SUBJECT = "ai.voice.request";

/** Options of {@linkcode createVoiceEndpoints}. */
export interface VoiceHandlerOptions extends VoicePipelineOptions {
  /**
   * The largest accepted audio, in bytes.
   *
   * @default 4194304 (4 MiB: about two minutes of 16 kHz mono s16le)
   */
  maxAudioBytes?: number;
  /**
   * The deadline of one request, all stages included, in milliseconds.
   *
   * @default 60000
   */
  timeoutMs?: number;
  /**
   * How many requests run at once on one replica.
   *
   * @default 8
   */
  concurrency?: number;
  /**
   * The tracer of the stage spans.
   *
   * @default the global tracer "voice-assistant" (Deno's with `OTEL_DENO=true`)
   */
  tracer?: Tracer;
}

/** The JetStream stream that stores `ai.voice.>` (SYSTEM.md section 4). */
const VOICE_STREAM = "AI_VOICE_STREAM";
const MAX_ID_CHARS = 256;
/** A subject token: no separator, wildcard or whitespace. */
const SUBJECT_TOKEN = /^[^\s.*>]+$/;
/** Room left for the headers and the other fields of a response near the max payload. */
const RESPONSE_ALLOWANCE_BYTES = 64 * 1024;

/**
 * The subject a request's VoiceResponse goes to.
 *
 * @param requestId The request id.
 * @returns The subject.
 *
 * @example
 * ```ts
 * import { responseSubject } from "./handler.ts";
 *
 * console.log(responseSubject("r1")); // "ai.voice.response.r1"
 * ```
 */
export function responseSubject(requestId: string): string {
  return `ai.voice.response.${requestId}`;
}

/**
 * The subject a request's TTSAudioChunk messages go to.
 *
 * @param requestId The request id.
 * @returns The subject.
 *
 * @example
 * ```ts
 * import { audioSubject } from "./handler.ts";
 *
 * console.log(audioSubject("r1")); // "ai.voice.response.audio.r1"
 * ```
 */
export function audioSubject(requestId: string): string {
  return `ai.voice.response.audio.${requestId}`;
}

function formatFields(format: AudioFormat) {
  return {
    sampleRate: format.sampleRate,
    channels: format.channels,
    bitDepth: format.bitDepth,
    audioEncoding: format.encoding === "wav" ? AudioEncoding.WAV : AudioEncoding.PCM_S16LE,
  };
}

function joinPcm(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, piece) => n + piece.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

/**
 * Creates the endpoint of voice-assistant over the given clients.
 *
 * @param clients The STT, LLM, TTS and (optional) RAG clients.
 * @param options Limits, prompt, retrieval, chunking and synthesis settings.
 * @returns The endpoint on `ai.voice.request`.
 *
 * @example
 * ```ts ignore
 * import { createVoiceEndpoints } from "./handler.ts";
 *
 * const [endpoint] = createVoiceEndpoints({ stt, llm, tts }, { enableRag: false });
 * console.log(endpoint?.subject, endpoint?.stream); // "ai.voice.request" "AI_VOICE_STREAM"
 * ```
 */
export function createVoiceEndpoints(
  clients: VoiceClients,
  options: VoiceHandlerOptions = {},
): Endpoint[] {
  const {
    maxAudioBytes = 4 * 1024 * 1024,
    timeoutMs = 60_000,
    concurrency = 8,
    tracer = trace.getTracer("voice-assistant"),
    ...pipeline
  } = options;

  const endpoint = defineEndpoint({
    subject: VOICE_REQUEST_SUBJECT,
    name: "voice-request",
    stream: VOICE_STREAM,
    request: VoiceRequestSchema,
    response: VoiceResponseSchema,
    concurrency,
    timeoutMs,
    async handle(request, ctx): Promise<VoiceResponse> {
      const requestId = request.requestId || crypto.randomUUID();
      ctx.addLogFields({ request_id: requestId });
      if (requestId.length > MAX_ID_CHARS || !SUBJECT_TOKEN.test(requestId)) {
        throw new InvalidArgumentError(
          `Cannot answer the voice request: request_id must be one subject token of at most ${MAX_ID_CHARS} characters`,
        );
      }
      const responseTo = responseSubject(requestId);
      let language: string;
      try {
        const audio = checkVoiceAudio(request.audio, maxAudioBytes);
        language = languageCode(request.language);
        ctx.span.setAttributes({
          "voice.request_id": requestId,
          "voice.audio_kind": audio.kind,
          "voice.audio_ms": audio.durationMs,
          "voice.audio_bytes": request.audio.length,
        });
      } catch (error) {
        ctx.publish(responseTo, VoiceResponseSchema, {
          requestId,
          error: toErrorResponse(error).message,
        });
        throw error;
      }

      const chunks = audioSubject(requestId);
      let chunkIndex = 0;
      let lastFormat: AudioFormat | undefined;
      const outcome = await runVoicePipeline(
        { audio: request.audio, language, collection: request.collection.trim() },
        clients,
        pipeline,
        {
          signal: ctx.signal,
          log: ctx.log,
          span: ctx.span,
          tracer,
          onAudio(audio, format) {
            lastFormat = format;
            ctx.publish(chunks, TTSAudioChunkSchema, {
              sessionId: requestId,
              chunkIndex: chunkIndex++,
              totalChunks: 0,
              audio,
              isLast: false,
              timestamp: unixSeconds(),
              ...formatFields(format),
            });
          },
        },
      );
      if (lastFormat) {
        ctx.publish(chunks, TTSAudioChunkSchema, {
          sessionId: requestId,
          chunkIndex,
          totalChunks: chunkIndex + 1,
          isLast: true,
          timestamp: unixSeconds(),
          ...formatFields(lastFormat),
        });
      }

      const errors: string[] = [];
      if (outcome.error !== undefined) errors.push(toErrorResponse(outcome.error).message);
      let audio = new Uint8Array(0);
      if (outcome.format && outcome.pcm.length > 0) {
        const { sampleRate, channels, bitDepth } = outcome.format;
        audio = wrapPcmAsWav(joinPcm(outcome.pcm), { sampleRate, channels, bitDepth });
        const maxPayload = ctx.nc.info?.max_payload;
        if (maxPayload !== undefined && audio.length + RESPONSE_ALLOWANCE_BYTES > maxPayload) {
          ctx.log.info(
            "Not attaching the audio: larger than the max payload; the chunks carry it",
            {
              audio_bytes: audio.length,
              max_payload: maxPayload,
              chunks: chunkIndex,
            },
          );
          audio = new Uint8Array(0);
        }
      }
      const response = create(VoiceResponseSchema, {
        requestId,
        transcription: outcome.transcription,
        response: outcome.response,
        audio,
        sources: outcome.sources.map(({ text, score }) => ({ text, score })),
        error: errors.join("; "),
      });
      ctx.span.setAttributes({
        "voice.audio_chunks": chunkIndex,
        "voice.sentences": outcome.sentences,
        "voice.used_llm": outcome.usedLlm,
      });
      if (outcome.error !== undefined) {
        recordError(ctx.span, outcome.error);
        ctx.log.warn("Answering with what was obtained: a stage failed", {
          error: outcome.error,
          error_type: errorType(outcome.error),
          transcription_chars: outcome.transcription.length,
          response_chars: outcome.response.length,
          audio_chunks: chunkIndex,
        });
      }
      ctx.publish(responseTo, VoiceResponseSchema, response);
      return response;
    },
  });
  return [endpoint];
}
