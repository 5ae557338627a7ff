import assert from "node:assert/strict";
import {
  create,
  type DescField,
  type DescMessage,
  equals,
  isFieldSet,
  type MessageShape,
  ScalarType,
} from "@bufbuild/protobuf";
import { reflect, type ScalarValue } from "@bufbuild/protobuf/reflect";
import { DecodeError } from "./errors.ts";
import {
  AudioEncoding,
  ChatRequestSchema,
  ChatStreamChunkSchema,
  decode,
  decodeOneOf,
  effectiveQuery,
  encode,
  ErrorResponseSchema,
  file_messages_v1_messages,
  PipelineStatusSchema,
  PipelineTriggerSchema,
  STTInterruptSchema,
  STTTranscriptionSchema,
  TTSAudioChunkSchema,
  TTSVoiceListResponseSchema,
  unixSeconds,
  VoiceResponseSchema,
} from "./messages.ts";

const GOLDEN = new URL("./testdata/golden/", import.meta.url);

function scalarSample(type: ScalarType, seed: number): ScalarValue {
  switch (type) {
    case ScalarType.STRING:
      return `s${seed}-ü☃`;
    case ScalarType.BOOL:
      return true;
    case ScalarType.BYTES:
      return new Uint8Array([seed & 0xff, 0, 255, 128]);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return seed + 0.5;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return BigInt(-seed * 1_000_000_007);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return BigInt(seed * 1_000_000_007);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return -seed;
    default:
      return seed;
  }
}

/** A message of the schema with every field set to a non-default value. */
function populated<Desc extends DescMessage>(schema: Desc, seed = 1): MessageShape<Desc> {
  const message = reflect(schema);
  for (const field of schema.fields) {
    setSample(message, field, seed + field.number);
  }
  return message.message as MessageShape<Desc>;
}

function setSample(message: ReturnType<typeof reflect>, field: DescField, seed: number): void {
  switch (field.fieldKind) {
    case "scalar":
      message.set(field, scalarSample(field.scalar, seed));
      break;
    case "enum":
      message.set(field, field.enum.values.at(-1)!.number);
      break;
    case "message":
      message.set(field, reflect(field.message, populated(field.message, seed)));
      break;
    case "list": {
      const list = message.get(field);
      for (let i = 0; i < 3; i++) {
        if (field.listKind === "scalar") list.add(scalarSample(field.scalar, seed + i));
        else if (field.listKind === "message") {
          list.add(reflect(field.message, populated(field.message, seed + i)));
        } else list.add(field.enum.values.at(-1)!.number);
      }
      break;
    }
    case "map": {
      const map = message.get(field);
      for (let i = 0; i < 3; i++) {
        map.set(`k${i}`, field.mapKind === "scalar" ? scalarSample(field.scalar, seed + i) : 0);
      }
      break;
    }
  }
}

const ALL_MESSAGES = file_messages_v1_messages.messages;

Deno.test("the contract has the 22 message types and the AudioEncoding enum", () => {
  assert.equal(ALL_MESSAGES.length, 22);
  assert.deepEqual(
    file_messages_v1_messages.enums[0]?.values.map((v) => [v.number, v.name]),
    [
      [0, "AUDIO_ENCODING_UNSPECIFIED"],
      [1, "AUDIO_ENCODING_PCM_S16LE"],
      [2, "AUDIO_ENCODING_WAV"],
      [3, "AUDIO_ENCODING_OGG_OPUS"],
      [4, "AUDIO_ENCODING_MP3"],
    ],
  );
});

for (const schema of ALL_MESSAGES) {
  Deno.test(`encode() then decode() gives an equal ${schema.name} with every field set`, () => {
    const message = populated(schema);
    for (const field of schema.fields) {
      assert.ok(isFieldSet(message, field), `${schema.name}.${field.name} is set`);
    }
    const bytes = encode(schema, message);
    const decoded = decode(schema, bytes);
    assert.ok(equals(schema, decoded, message), `${schema.name} round-trips`);
    assert.deepEqual(encode(schema, decoded), bytes);
  });
}

async function golden(type: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(`${type}.bin`, GOLDEN));
}

const GOLDEN_CASES = [
  {
    schema: ChatRequestSchema,
    expected: create(ChatRequestSchema, {
      requestId: "req-42",
      userId: "user-7",
      username: "ada",
      message: "Wie funktioniert NATS? ☃",
      query: "fallback query",
      premium: true,
      enableRag: true,
      enableReranker: true,
      enableStreaming: true,
      topK: 8,
      collection: "knowledge_base",
      enableTts: true,
      systemPrompt: "You are a helpful assistant.",
      responseSubject: "ai.chat.response.custom",
    }),
  },
  {
    schema: ChatStreamChunkSchema,
    expected: create(ChatStreamChunkSchema, {
      requestId: "req-42",
      type: "chunk",
      content: "Hello, wörld",
      timestamp: 1764283000n,
    }),
  },
  {
    schema: ErrorResponseSchema,
    expected: create(ErrorResponseSchema, {
      error: true,
      message: "Cannot chat: the query is empty",
      type: "InvalidArgument",
    }),
  },
  {
    schema: TTSAudioChunkSchema,
    expected: create(TTSAudioChunkSchema, {
      sessionId: "sess-1",
      chunkIndex: 3,
      totalChunks: -1,
      audio: new Uint8Array([0, 1, 255, 254, ...new TextEncoder().encode("RIFF")]),
      isLast: true,
      timestamp: 1764283001n,
      sampleRate: 24000,
      channels: 1,
      bitDepth: 16,
      audioEncoding: AudioEncoding.PCM_S16LE,
    }),
  },
  {
    schema: TTSVoiceListResponseSchema,
    expected: create(TTSVoiceListResponseSchema, {
      defaultSpeaker: "default",
      customVoices: [
        {
          name: "narrator",
          language: "en",
          modelType: "xtts_v2",
          createdAt: "2026-11-01T10:00:00Z",
        },
        { name: "oma", language: "de", modelType: "xtts_v2", createdAt: "2026-11-02T11:30:00Z" },
      ],
      lastRefresh: 1764280000n,
      timestamp: 1764283002n,
    }),
  },
  {
    schema: STTTranscriptionSchema,
    expected: create(STTTranscriptionSchema, {
      sessionId: "sess-2",
      transcript: "turn on the lights",
      sequence: 5,
      isFinal: true,
      timestamp: 1764283003n,
      speakerId: "spk-1",
      hasVoiceActivity: true,
      state: "listening",
    }),
  },
  {
    schema: VoiceResponseSchema,
    expected: create(VoiceResponseSchema, {
      requestId: "voice-9",
      response: "It is sunny.",
      audio: new Uint8Array([82, 73, 70, 70, 0, 0]),
      transcription: "what is the weather",
      sources: [{ text: "Weather report", score: 0.875 }, { text: "Forecast", score: -1.5 }],
    }),
  },
  {
    schema: PipelineTriggerSchema,
    expected: create(PipelineTriggerSchema, {
      requestId: "pipe-1",
      pipeline: "document-ingestion",
      parameters: { bucket: "docs" },
    }),
  },
  {
    schema: PipelineStatusSchema,
    expected: create(PipelineStatusSchema, {
      requestId: "pipe-1",
      status: "error",
      error: 'Unknown pipeline "nope"',
      availablePipelines: ["batch-inference", "document-ingestion"],
    }),
  },
] as const;

for (const { schema, expected } of GOLDEN_CASES) {
  Deno.test(`decode() reads the protoc golden vector of ${schema.name}`, async () => {
    const bytes = await golden(schema.name);
    const decoded = decode(schema as DescMessage, bytes);
    assert.ok(equals(schema as DescMessage, decoded, expected), `${schema.name} matches`);
  });

  Deno.test(`encode() reproduces the protoc bytes of ${schema.name}`, async () => {
    assert.deepEqual(encode(schema as DescMessage, expected), await golden(schema.name));
  });
}

Deno.test("every golden fixture has a checked-in vector and a test case", async () => {
  const fixtures: string[] = [];
  for await (const entry of Deno.readDir(GOLDEN)) {
    if (entry.name.endsWith(".txtpb")) fixtures.push(entry.name.replace(".txtpb", ""));
  }
  assert.deepEqual(fixtures.sort(), GOLDEN_CASES.map((c) => c.schema.name).sort());
});

Deno.test("decode() turns garbage into a DecodeError naming the expected type", () => {
  const payloads = [
    new Uint8Array([0xff, 0xff, 0xff]),
    new TextEncoder().encode("hello world"),
    new Uint8Array([0x0a, 0x10, 0x61]), // a string field longer than the payload
  ];
  for (const payload of payloads) {
    assert.throws(
      () => decode(ChatRequestSchema, payload),
      (error: unknown) =>
        error instanceof DecodeError && error.typeName === "messages.v1.ChatRequest" &&
        error.type === "InvalidMessage" && error.message.startsWith(
          "Cannot decode messages.v1.ChatRequest",
        ),
    );
  }
});

Deno.test("decode() rejects a truncated payload at every cut", () => {
  const bytes = encode(ChatRequestSchema, populated(ChatRequestSchema));
  let rejected = 0;
  for (let cut = 1; cut < bytes.length; cut++) {
    try {
      decode(ChatRequestSchema, bytes.subarray(0, cut));
    } catch (error) {
      assert.ok(error instanceof DecodeError);
      rejected++;
    }
  }
  // A cut that falls exactly between two fields is a valid shorter message.
  assert.ok(rejected >= bytes.length - 1 - ChatRequestSchema.fields.length);
  assert.ok(rejected > 0);
});

Deno.test("decode() rejects another type's payload", () => {
  const chunk = encode(TTSAudioChunkSchema, populated(TTSAudioChunkSchema));
  assert.throws(() => decode(ChatRequestSchema, chunk), DecodeError);
});

Deno.test("decode() rejects a payload whose Msg-Type header names another type", () => {
  const bytes = encode(ChatRequestSchema, { query: "hi" });
  assert.throws(
    () => decode(ChatRequestSchema, bytes, { msgType: "messages.v1.TTSRequest" }),
    (error: unknown) =>
      error instanceof DecodeError && /Msg-Type header says messages\.v1\.TTSRequest/.test(
        error.message,
      ),
  );
  assert.equal(
    decode(ChatRequestSchema, bytes, { msgType: "messages.v1.ChatRequest" }).query,
    "hi",
  );
});

Deno.test("decodeOneOf() picks the type by header, or by trying each", () => {
  const interrupt = encode(STTInterruptSchema, { sessionId: "s", type: "interrupt" });
  const byHeader = decodeOneOf([STTTranscriptionSchema, STTInterruptSchema], interrupt, {
    msgType: "messages.v1.STTInterrupt",
  });
  assert.equal(byHeader.$typeName, "messages.v1.STTInterrupt");
  const byTrying = decodeOneOf([STTInterruptSchema, STTTranscriptionSchema], interrupt);
  assert.equal(byTrying.$typeName, "messages.v1.STTInterrupt");
  assert.throws(
    () =>
      decodeOneOf([STTTranscriptionSchema, STTInterruptSchema], interrupt, {
        msgType: "messages.v1.ChatRequest",
      }),
    (error: unknown) =>
      error instanceof DecodeError &&
      error.typeName === "messages.v1.STTTranscription or messages.v1.STTInterrupt",
  );
});

Deno.test("effectiveQuery() takes the first non-empty of message and query", () => {
  assert.equal(effectiveQuery(create(ChatRequestSchema, { message: "a", query: "b" })), "a");
  assert.equal(effectiveQuery(create(ChatRequestSchema, { message: "  ", query: " b " })), "b");
  assert.equal(effectiveQuery(create(ChatRequestSchema, {})), "");
});

Deno.test("encode() accepts a plain init object as well as a message", () => {
  const init = { sessionId: "s1", chunkIndex: 2 };
  assert.deepEqual(
    encode(TTSAudioChunkSchema, init),
    encode(TTSAudioChunkSchema, create(TTSAudioChunkSchema, init)),
  );
});

Deno.test("unixSeconds() writes whole seconds as int64", () => {
  assert.equal(unixSeconds(1_700_000_000_999), 1_700_000_000n);
  assert.equal(typeof unixSeconds(), "bigint");
});
