/**
 * The endpoints of tts-module, the NATS front of the TTS backend
 * (SYSTEM.md section 5):
 *
 * - `ai.voice.tts.request.{session_id}` (TTSRequest): publishes TTSStatus
 *   `processing`, then `completed` or `error`, on `ai.voice.tts.status.{sid}`.
 *   A request that is invalid from the start (empty or too long text, bad
 *   `speaker_wav_b64`) gets only the `error` status. Every failure also
 *   answers the reply subject with an ErrorResponse.
 *   - `stream=false`: one TTSFullResponse (WAV) on `ai.voice.tts.audio.{sid}`
 *     and on the reply subject. Audio larger than the server's max payload is
 *     refused with InvalidArgument (ask for `stream=true`).
 *   - `stream=true`: TTSAudioChunk messages (raw PCM) on the audio subject,
 *     each sent as soon as the backend sends it, cut at whole sample frames.
 *     When the backend's stream ends, one more chunk with no audio (unless a
 *     dangling odd byte is left) carries `is_last=true` and `total_chunks`
 *     (every other chunk has 0): holding back a chunk to mark it last would
 *     delay all audio by one chunk. A stream that fails sends no `is_last`;
 *     the status subject says `error`. The reply subject gets a
 *     TTSFullResponse with the format and no audio once the last chunk is out
 *     (an endpoint has one reply type, so it is not a TTSStatus).
 *   - Requests of one session id are handled one after the other in arrival
 *     order, so their chunks never interleave; other sessions run in parallel
 *     up to the endpoint's concurrency.
 *   - Speaker: `speaker_wav_b64` (a WAV cloned for this request only) wins;
 *     else `speaker`, default `default`: a custom voice of that name, else
 *     `default` means the backend's default speaker, else a built-in speaker
 *     of the backend; anything else is InvalidArgument. Language: the
 *     request's, else the custom voice's, else `en`.
 * - In JetStream consume mode the requests come from the durable consumer
 *   `tts-module` on `AI_VOICE_STREAM`, without a reply subject: results go
 *   to the per-session subjects only, and a retryable failure (backend
 *   unavailable, timeout) is redelivered, so a session may see `error` and
 *   then a new `processing`. The voice endpoints stay request-reply (core).
 * - `ai.voice.tts.voices.list`: TTSVoiceListResponse. Its payload is ignored.
 * - `ai.voice.tts.voices.refresh`: rescans, then TTSVoiceRefreshResponse. It
 *   has no queue group, so every replica rescans (the requester takes the
 *   first answer). Its payload is ignored.
 *
 * Needs what the handler runtime needs (`--allow-net=<nats>`); the clients
 * and the registry passed in need theirs.
 *
 * @example Serve the endpoints
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { createLogger } from "@homelab/handler-base/log";
 * import { TTSFullResponseSchema, TTSRequestSchema } from "@homelab/handler-base/messages";
 * import { startFakeXtts, startTestService } from "@homelab/handler-base/testing";
 * import { createTtsEndpoints } from "./handler.ts";
 * import { startVoiceRegistry } from "./voices.ts";
 *
 * await using xtts = startFakeXtts();
 * const tts = createTtsClient({ baseUrl: xtts.url });
 * using voices = await startVoiceRegistry({ tts, logger: createLogger({ service: "tts-module" }) });
 * const endpoints = createTtsEndpoints({ tts, voices, concurrency: 4 });
 * await using t = await startTestService({ name: "tts-module", endpoints });
 * const audio = await t.request(
 *   "ai.voice.tts.request.s1",
 *   TTSRequestSchema,
 *   { text: "Hallo", speaker: "Ana Florence" },
 *   TTSFullResponseSchema,
 * );
 * assert.deepEqual([audio.sessionId, audio.sampleRate], ["s1", 24000]);
 * ```
 *
 * @module
 */
import { abortable } from "@homelab/handler-base/async";
import type { AudioFormat, SpeakerLatents, TtsClient } from "@homelab/handler-base/clients/tts";
import { FrameAligner, parseWav } from "@homelab/handler-base/clients/wav";
import { InvalidArgumentError, toErrorResponse } from "@homelab/handler-base/errors";
import { defineEndpoint, type Endpoint, type HandlerContext } from "@homelab/handler-base/handler";
import { exceedsCodePoints } from "@homelab/handler-base/text";
import {
  AudioEncoding,
  create,
  EmptySchema,
  TTSAudioChunkSchema,
  type TTSFullResponse,
  TTSFullResponseSchema,
  type TTSRequest,
  TTSRequestSchema,
  TTSStatusSchema,
  TTSVoiceListResponseSchema,
  TTSVoiceRefreshResponseSchema,
  unixSeconds,
} from "@homelab/handler-base/messages";
import type { VoiceRegistry } from "./voices.ts";

/** The subject of synthesis requests; the last token is the session id. */
export const TTS_REQUEST_SUBJECT = "ai.voice.tts.request.>";
/** The subject of the voice list. */
export const TTS_VOICES_LIST_SUBJECT = "ai.voice.tts.voices.list";
/** The subject of a voice rescan. */
export const TTS_VOICES_REFRESH_SUBJECT = "ai.voice.tts.voices.refresh";

/** The tokens of `ai.voice.tts.request`, before the session id. */
const REQUEST_PREFIX_TOKENS = 4;
/** Room left for the headers (`Msg-Type`, trace context) of a message near the max payload. */
const HEADER_ALLOWANCE_BYTES = 1024;
/** The name that selects the default speaker. */
const DEFAULT_SPEAKER = "default";

/**
 * The subject the TTSStatus messages of a session go to.
 *
 * @param sessionId The session id.
 * @returns The subject.
 *
 * @example Where to listen for a session's progress
 * ```ts
 * import assert from "node:assert/strict";
 * import { statusSubject } from "./handler.ts";
 *
 * assert.equal(statusSubject("s1"), "ai.voice.tts.status.s1");
 * ```
 */
export function statusSubject(sessionId: string): string {
  return `ai.voice.tts.status.${sessionId}`;
}

/**
 * The subject the audio of a session goes to (TTSAudioChunk or TTSFullResponse).
 *
 * @param sessionId The session id.
 * @returns The subject.
 *
 * @example Where to listen for a session's audio
 * ```ts
 * import assert from "node:assert/strict";
 * import { audioSubject } from "./handler.ts";
 *
 * assert.equal(audioSubject("s1"), "ai.voice.tts.audio.s1");
 * ```
 */
export function audioSubject(sessionId: string): string {
  return `ai.voice.tts.audio.${sessionId}`;
}

/** Options of {@linkcode createTtsEndpoints}. */
export interface TtsEndpointsOptions {
  /** The TTS backend client. */
  tts: TtsClient;
  /** The custom voices. */
  voices: VoiceRegistry;
  /**
   * The name `voices.list` answers as `default_speaker`.
   *
   * @default "default"
   */
  defaultSpeaker?: string;
  /**
   * The longest text accepted, in characters (code points).
   *
   * @default 5000
   */
  maxChars?: number;
  /**
   * The largest decoded `speaker_wav_b64`, in bytes.
   *
   * @default 10485760 (10 MiB)
   */
  maxReferenceBytes?: number;
  /**
   * How many syntheses run at once on this replica; the runtime queues more
   * (bounded) and answers Overloaded beyond that.
   *
   * @default 4
   */
  concurrency?: number;
  /**
   * The deadline of one synthesis request, streaming included, in milliseconds.
   *
   * @default 300000
   */
  timeoutMs?: number;
}

/**
 * The session id of a request subject: its last token.
 *
 * @param tokens The subject's tokens.
 * @returns The session id.
 * @throws {InvalidArgumentError} When the subject names no session id.
 *
 * @example The last token of the subject
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionIdOf } from "./handler.ts";
 *
 * assert.equal(sessionIdOf(["ai", "voice", "tts", "request", "s1"]), "s1");
 * ```
 */
export function sessionIdOf(tokens: readonly string[]): string {
  const last = tokens.at(-1) ?? "";
  if (tokens.length <= REQUEST_PREFIX_TOKENS || last === "") {
    throw new InvalidArgumentError(
      `Cannot synthesize speech: the subject "${tokens.join(".")}" names no session id`,
    );
  }
  return last;
}

function checkText(text: string, maxChars: number): void {
  if (text.trim() === "") {
    throw new InvalidArgumentError("Cannot synthesize speech: the text is empty");
  }
  if (exceedsCodePoints(text, maxChars)) {
    throw new InvalidArgumentError(
      `Cannot synthesize speech: the text is longer than ${maxChars} characters`,
    );
  }
}

function decodeReference(base64: string, maxBytes: number): Uint8Array {
  // Base64 carries 3 bytes per 4 characters: refuse before decoding a huge string.
  if (Math.floor(base64.length / 4) * 3 > maxBytes + 3) {
    throw new InvalidArgumentError(
      `Cannot clone the voice: speaker_wav_b64 is larger than ${maxBytes} bytes`,
    );
  }
  let binary: string;
  try {
    binary = atob(base64.replace(/\s+/g, ""));
  } catch {
    throw new InvalidArgumentError("Cannot clone the voice: speaker_wav_b64 is not valid base64");
  }
  if (binary.length > maxBytes) {
    throw new InvalidArgumentError(
      `Cannot clone the voice: speaker_wav_b64 is larger than ${maxBytes} bytes`,
    );
  }
  const wav = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  try {
    parseWav(wav);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new InvalidArgumentError(
      `Cannot clone the voice: speaker_wav_b64 is not WAV (${detail})`,
    );
  }
  return wav;
}

function encodingOf(format: AudioFormat): AudioEncoding {
  return format.encoding === "wav" ? AudioEncoding.WAV : AudioEncoding.PCM_S16LE;
}

function formatFields(format: AudioFormat) {
  return {
    sampleRate: format.sampleRate,
    channels: format.channels,
    bitDepth: format.bitDepth,
    audioEncoding: encodingOf(format),
  };
}

interface ResolvedSpeaker {
  speaker: string | SpeakerLatents | undefined;
  language: string;
}

/**
 * Creates the three endpoints of tts-module: synthesis, voice list and voice
 * refresh.
 *
 * @param options The client, the voice registry and the limits.
 * @returns The endpoints, for `runService` or `createService`.
 *
 * @example The subjects they serve
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { createLogger } from "@homelab/handler-base/log";
 * import { createTtsEndpoints } from "./handler.ts";
 * import { startVoiceRegistry } from "./voices.ts";
 *
 * const tts = createTtsClient({ baseUrl: "http://tts:8000" }); // not called here
 * using voices = await startVoiceRegistry({ tts, logger: createLogger({ service: "demo" }) });
 * const endpoints = createTtsEndpoints({ tts, voices, maxChars: 2000 });
 * assert.deepEqual(endpoints.map((e) => e.subject), [
 *   "ai.voice.tts.request.>",
 *   "ai.voice.tts.voices.list",
 *   "ai.voice.tts.voices.refresh",
 * ]);
 * ```
 */
export function createTtsEndpoints(options: TtsEndpointsOptions): Endpoint[] {
  const { tts, voices } = options;
  const maxChars = options.maxChars ?? 5000;
  const maxReferenceBytes = options.maxReferenceBytes ?? 10 * 1024 * 1024;
  // The tail of each session's queue: requests of one session run in arrival order.
  const sessionTails = new Map<string, Promise<void>>();

  async function inSessionOrder<T>(
    sessionId: string,
    signal: AbortSignal,
    work: () => Promise<T>,
  ): Promise<T> {
    const previous = sessionTails.get(sessionId);
    const done = Promise.withResolvers<void>();
    const tail = (previous ?? Promise.resolve()).then(() => done.promise);
    sessionTails.set(sessionId, tail);
    try {
      if (previous) await abortable(previous, signal);
      return await work();
    } finally {
      done.resolve();
      if (sessionTails.get(sessionId) === tail) sessionTails.delete(sessionId);
    }
  }

  async function resolveSpeaker(
    request: TTSRequest,
    reference: Uint8Array | undefined,
    signal: AbortSignal,
  ): Promise<ResolvedSpeaker> {
    const language = request.language.trim();
    if (reference) {
      return { speaker: await tts.cloneSpeaker(reference, { signal }), language: language || "en" };
    }
    const name = request.speaker.trim() || DEFAULT_SPEAKER;
    const custom = voices.get(name);
    if (custom) {
      const latents = await voices.latents(name, { signal });
      return { speaker: latents, language: language || custom.language || "en" };
    }
    // Built-in names are checked by the client against the backend's speakers.
    return { speaker: name === DEFAULT_SPEAKER ? undefined : name, language: language || "en" };
  }

  async function streamAudio(
    text: string,
    resolved: ResolvedSpeaker,
    sessionId: string,
    ctx: HandlerContext,
  ): Promise<TTSFullResponse> {
    const stream = tts.synthesizeStream(text, { ...resolved, signal: ctx.signal });
    const format = formatFields(stream.format);
    const subject = audioSubject(sessionId);
    const aligner = new FrameAligner(stream.format.channels * (stream.format.bitDepth / 8));
    let chunkIndex = 0;
    for await (const piece of stream) {
      const audio = aligner.push(piece);
      if (audio.length === 0) continue;
      ctx.publish(subject, TTSAudioChunkSchema, {
        sessionId,
        chunkIndex: chunkIndex++,
        totalChunks: 0,
        audio,
        isLast: false,
        timestamp: unixSeconds(),
        ...format,
      });
    }
    ctx.publish(subject, TTSAudioChunkSchema, {
      sessionId,
      chunkIndex,
      totalChunks: chunkIndex + 1,
      audio: aligner.rest(),
      isLast: true,
      timestamp: unixSeconds(),
      ...format,
    });
    return create(TTSFullResponseSchema, { sessionId, timestamp: unixSeconds(), ...format });
  }

  async function fullAudio(
    text: string,
    resolved: ResolvedSpeaker,
    sessionId: string,
    ctx: HandlerContext,
  ): Promise<TTSFullResponse> {
    const { audio, format } = await tts.synthesize(text, { ...resolved, signal: ctx.signal });
    const maxPayload = ctx.nc.info?.max_payload;
    if (maxPayload !== undefined && audio.length + HEADER_ALLOWANCE_BYTES > maxPayload) {
      throw new InvalidArgumentError(
        `Cannot send the audio: ${audio.length} bytes exceed the NATS max payload of ${maxPayload}; request stream=true or a shorter text`,
      );
    }
    const response = create(TTSFullResponseSchema, {
      sessionId,
      audio,
      timestamp: unixSeconds(),
      ...formatFields(format),
    });
    ctx.publish(audioSubject(sessionId), TTSFullResponseSchema, response);
    return response;
  }

  const synthesize = defineEndpoint({
    subject: TTS_REQUEST_SUBJECT,
    name: "synthesize",
    stream: "AI_VOICE_STREAM",
    request: TTSRequestSchema,
    response: TTSFullResponseSchema,
    concurrency: options.concurrency ?? 4,
    timeoutMs: options.timeoutMs ?? 300_000,
    async handle(request, ctx) {
      const sessionId = sessionIdOf(ctx.tokens);
      ctx.addLogFields({ session_id: sessionId });
      const publishStatus = (status: string, message = "") =>
        ctx.publish(statusSubject(sessionId), TTSStatusSchema, {
          sessionId,
          status,
          message,
          timestamp: unixSeconds(),
        });
      try {
        checkText(request.text, maxChars);
        const reference = request.speakerWavB64
          ? decodeReference(request.speakerWavB64, maxReferenceBytes)
          : undefined;
        return await inSessionOrder(sessionId, ctx.signal, async () => {
          publishStatus("processing");
          const resolved = await resolveSpeaker(request, reference, ctx.signal);
          const reply = request.stream
            ? await streamAudio(request.text, resolved, sessionId, ctx)
            : await fullAudio(request.text, resolved, sessionId, ctx);
          publishStatus("completed");
          return reply;
        });
      } catch (error) {
        try {
          publishStatus("error", toErrorResponse(error).message);
        } catch (publishError) {
          // The request's own failure is the one to answer with.
          ctx.log.warn("Cannot publish the error status", { error: publishError });
        }
        throw error;
      }
    },
  });

  // The contract's voice requests are empty: whatever payload or Msg-Type
  // header a client sends is ignored rather than refused.
  function ignoringPayload(endpoint: Endpoint): Endpoint {
    const empty = new Uint8Array(0);
    return {
      ...endpoint,
      invoke: (_data, _msgType, ctx) => endpoint.invoke(empty, undefined, ctx),
    };
  }

  const list = ignoringPayload(defineEndpoint({
    subject: TTS_VOICES_LIST_SUBJECT,
    name: "voices-list",
    request: EmptySchema,
    response: TTSVoiceListResponseSchema,
    handle: () =>
      Promise.resolve({
        defaultSpeaker: options.defaultSpeaker ?? DEFAULT_SPEAKER,
        customVoices: [...voices.list()],
        lastRefresh: voices.lastRefresh,
        timestamp: unixSeconds(),
      }),
  }));

  const refresh = ignoringPayload(defineEndpoint({
    subject: TTS_VOICES_REFRESH_SUBJECT,
    name: "voices-refresh",
    queue: false,
    request: EmptySchema,
    response: TTSVoiceRefreshResponseSchema,
    async handle(_request, ctx) {
      const found = await voices.refresh({ signal: ctx.signal });
      return { count: found.length, customVoices: [...found], timestamp: unixSeconds() };
    },
  }));

  return [synthesize, list, refresh];
}
