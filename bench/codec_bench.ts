/**
 * protobuf-es (reflective `fromBinary`, `create` + `toBinary`) against the
 * compiled codec of `handler_base/codec.ts` that `messages.ts` uses, on the
 * messages a request costs most often. Each group's baseline is protobuf-es,
 * so `deno bench` prints how many times faster the codec is.
 *
 * Run: `deno bench bench/codec_bench.ts`
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { compileCodec } from "../handler_base/codec.ts";
import {
  ChatRequestSchema,
  ChatResponseSchema,
  PipelineTriggerSchema,
  STTStreamMessageSchema,
  TTSRequestSchema,
  TTSStatusSchema,
} from "../handler_base/messages.ts";

const ttsRequest = toBinary(
  TTSRequestSchema,
  create(TTSRequestSchema, { text: "Hello there, how are you today?", speaker: "default" }),
);
const ttsStatus = { sessionId: "sess-1", status: "processing", message: "Synthesizing" };
const chatRequest = toBinary(
  ChatRequestSchema,
  create(ChatRequestSchema, {
    requestId: "req-42",
    userId: "user-7",
    username: "ada",
    message: "What is NATS, and how does JetStream differ from core NATS?",
    enableRag: true,
    topK: 5,
    collection: "knowledge_base",
  }),
);
const chatResponse = create(ChatResponseSchema, {
  userId: "user-7",
  response: "NATS is a messaging system. ".repeat(8),
  usedRag: true,
  ragSources: ["docs/nats.md", "docs/jetstream.md"],
  success: true,
});
const audio = new Uint8Array(3200).map((_, i) => (i * 31) & 0xff);
const sttStream = toBinary(
  STTStreamMessageSchema,
  create(STTStreamMessageSchema, {
    type: "chunk",
    audio,
    sampleRate: 16000,
    channels: 1,
    bitDepth: 16,
    timestamp: 1_764_283_000n,
  }),
);
const trigger = {
  requestId: "pipe-1",
  pipeline: "document-ingestion",
  parameters: { bucket: "docs", prefix: "2026/", mode: "full" },
};

const codecs = {
  ttsRequest: compileCodec(TTSRequestSchema),
  ttsStatus: compileCodec(TTSStatusSchema),
  chatRequest: compileCodec(ChatRequestSchema),
  chatResponse: compileCodec(ChatResponseSchema),
  sttStream: compileCodec(STTStreamMessageSchema),
  trigger: compileCodec(PipelineTriggerSchema),
};

Deno.bench("protobuf-es", { group: "decode TTSRequest", baseline: true }, () => {
  fromBinary(TTSRequestSchema, ttsRequest);
});
Deno.bench("codec", { group: "decode TTSRequest" }, () => {
  codecs.ttsRequest.decode(ttsRequest);
});

Deno.bench("protobuf-es", { group: "encode TTSStatus from init", baseline: true }, () => {
  toBinary(TTSStatusSchema, create(TTSStatusSchema, ttsStatus));
});
Deno.bench("codec", { group: "encode TTSStatus from init" }, () => {
  codecs.ttsStatus.encode(ttsStatus);
});

Deno.bench(
  "protobuf-es",
  { group: "decode ChatRequest + encode ChatResponse", baseline: true },
  () => {
    fromBinary(ChatRequestSchema, chatRequest);
    toBinary(ChatResponseSchema, chatResponse);
  },
);
Deno.bench("codec", { group: "decode ChatRequest + encode ChatResponse" }, () => {
  codecs.chatRequest.decode(chatRequest);
  codecs.chatResponse.encode(chatResponse);
});

Deno.bench(
  "protobuf-es",
  { group: "decode STTStreamMessage (3,200 B audio)", baseline: true },
  () => {
    fromBinary(STTStreamMessageSchema, sttStream);
  },
);
Deno.bench("codec", { group: "decode STTStreamMessage (3,200 B audio)" }, () => {
  codecs.sttStream.decode(sttStream);
});

Deno.bench("protobuf-es", { group: "encode PipelineTrigger with a map", baseline: true }, () => {
  toBinary(PipelineTriggerSchema, create(PipelineTriggerSchema, trigger));
});
Deno.bench("codec", { group: "encode PipelineTrigger with a map" }, () => {
  codecs.trigger.encode(trigger);
});
