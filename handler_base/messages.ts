/**
 * The wire contract: the 22 protobuf message types of `messages.v1` under
 * their own names, their schemas, and encode/decode helpers that turn a
 * malformed payload into a typed {@linkcode DecodeError} instead of an
 * uncaught exception.
 *
 * The generated code in `gen/messagespb/` is never edited by hand; this
 * module is the way in. Nothing here needs a permission.
 *
 * @example Encode a request and decode it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRequestSchema, create, decode, effectiveQuery, encode } from "@homelab/handler-base/messages";
 *
 * const bytes = encode(ChatRequestSchema, create(ChatRequestSchema, { query: "What is NATS?" }));
 * const request = decode(ChatRequestSchema, bytes);
 * assert.equal(effectiveQuery(request), "What is NATS?");
 * ```
 *
 * @module
 */
import type * as protobuf from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import type { Empty } from "@bufbuild/protobuf/wkt/google/protobuf/empty_pb.js";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import { compileCodec } from "./codec.ts";
import { embeddedFile, messageDesc } from "./embedded_descriptor.ts";
import { DecodeError } from "./errors.ts";
import type { ChatRequest } from "./gen/messagespb/messages/v1/messages_pb.ts";

export * from "./gen/messagespb/messages/v1/messages_pb.ts";
export { create };

/**
 * The request schema of an endpoint that takes no payload
 * (`ai.voice.tts.voices.list`): `google.protobuf.Empty`. Such an endpoint
 * ignores whatever payload and `Msg-Type` a request carries, as the Go
 * services did.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EmptySchema } from "@homelab/handler-base/messages";
 *
 * assert.equal(EmptySchema.typeName, "google.protobuf.Empty");
 * ```
 */
export const EmptySchema: GenMessage<Empty> = messageDesc(
  // google/protobuf/empty.proto, embedded as gen/ embeds ours (protobuf-es's own EmptySchema
  // decodes it, and descriptor.proto first, at import); embedded_descriptor_test.ts checks
  // it is the same.
  embeddedFile(
    '{"prototypes":{"google.protobuf.FileDescriptorProto":{"name":"","package":"","syntax":"","edition":0},"google.protobuf.DescriptorProto":{"name":"","visibility":0},"google.protobuf.FileOptions":{"javaPackage":"","javaOuterClassname":"","javaMultipleFiles":false,"javaGenerateEqualsAndHash":false,"javaStringCheckUtf8":false,"optimizeFor":1,"goPackage":"","ccGenericServices":false,"javaGenericServices":false,"pyGenericServices":false,"deprecated":false,"ccEnableArenas":true,"objcClassPrefix":"","csharpNamespace":"","swiftPrefix":"","phpClassPrefix":"","phpNamespace":"","phpMetadataNamespace":"","rubyPackage":""}},"file":{"$typeName":"google.protobuf.FileDescriptorProto","dependency":[],"publicDependency":[],"weakDependency":[],"optionDependency":[],"messageType":[{"$typeName":"google.protobuf.DescriptorProto","field":[],"extension":[],"nestedType":[],"enumType":[],"extensionRange":[],"oneofDecl":[],"reservedRange":[],"reservedName":[],"name":"Empty"}],"enumType":[],"service":[],"extension":[],"name":"google/protobuf/empty.proto","package":"google.protobuf","options":{"$typeName":"google.protobuf.FileOptions","uninterpretedOption":[],"javaPackage":"com.google.protobuf","javaOuterClassname":"EmptyProto","javaMultipleFiles":true,"goPackage":"google.golang.org/protobuf/types/known/emptypb","ccEnableArenas":true,"objcClassPrefix":"GPB","csharpNamespace":"Google.Protobuf.WellKnownTypes"},"syntax":"proto3"}}',
  ),
  0,
);

/** The schema (descriptor) of a message type, such as `ChatRequestSchema`. */
export type DescMessage = protobuf.DescMessage;

/** The message type a schema describes. */
export type MessageShape<Desc extends DescMessage> = protobuf.MessageShape<Desc>;

/** The plain object of fields that creates a message of a schema. */
export type MessageInitShape<Desc extends DescMessage> = protobuf.MessageInitShape<Desc>;

/**
 * The NATS header naming the protobuf type of a payload
 * (`Msg-Type: messages.v1.ChatRequest`).
 */
export const MSG_TYPE_HEADER = "Msg-Type";

/**
 * The text a chat request asks about: the first non-empty of `message` and
 * `query`, trimmed; empty when both are blank.
 *
 * @param request The chat request.
 * @returns The query text, possibly empty.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRequestSchema, create, effectiveQuery } from "@homelab/handler-base/messages";
 *
 * assert.equal(effectiveQuery(create(ChatRequestSchema, { message: "", query: "hi" })), "hi");
 * ```
 */
export function effectiveQuery(request: Pick<ChatRequest, "message" | "query">): string {
  return (request.message.trim() || request.query.trim());
}

/**
 * Serializes a message to protobuf binary.
 *
 * @typeParam Desc The message schema.
 * @param schema The message's schema (`ChatRequestSchema`, ...).
 * @param message The message, or a plain init object of its fields.
 * @returns The protobuf bytes. A small result (up to 1 KiB) is a view into a
 * buffer shared with other results, like Node's pooled `Buffer`s: read its
 * `.buffer` only with its `byteOffset` and `byteLength`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encode, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * const bytes = encode(TTSStatusSchema, { sessionId: "s1", status: "processing" });
 * assert.equal(bytes.length > 0, true);
 * ```
 */
export function encode<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc> | MessageInitShape<Desc>,
): Uint8Array {
  // Byte for byte toBinary(schema, create(schema, message)), compiled per schema.
  return compileCodec(schema).encode(message);
}

/** Options of {@linkcode decode}. */
export interface DecodeOptions {
  /**
   * The `Msg-Type` header of the NATS message, when it had one. A header that
   * names another type fails the decode at once.
   *
   * @default undefined (only the bytes are checked)
   */
  msgType?: string | undefined;
}

/**
 * Parses protobuf binary as the given type. Unknown fields are kept (a newer
 * sender may add fields); anything that is not a valid encoding of the type
 * throws a {@linkcode DecodeError}.
 *
 * @typeParam Desc The message schema.
 * @param schema The expected message's schema.
 * @param data The payload.
 * @param options The `Msg-Type` header, when present.
 * @returns The decoded message.
 * @throws {DecodeError} When the payload is malformed, truncated, or of another type.
 *
 * @example Malformed bytes become a typed error
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRequestSchema, decode } from "@homelab/handler-base/messages";
 * import { DecodeError } from "@homelab/handler-base/errors";
 *
 * try {
 *   decode(ChatRequestSchema, new Uint8Array([0xff, 0xff]));
 * } catch (error) {
 *   assert.equal(error instanceof DecodeError, true);
 * }
 * ```
 */
export function decode<Desc extends DescMessage>(
  schema: Desc,
  data: Uint8Array,
  options: DecodeOptions = {},
): MessageShape<Desc> {
  const { msgType } = options;
  if (msgType && msgType !== schema.typeName) {
    throw new DecodeError(schema.typeName, {
      cause: new Error(`the ${MSG_TYPE_HEADER} header says ${msgType}`),
    });
  }
  try {
    return compileCodec(schema).decode(data);
  } catch (cause) {
    throw new DecodeError(schema.typeName, { cause });
  }
}

/**
 * Decodes a payload that may be one of several types (a transcription subject
 * carries `STTTranscription` and `STTInterrupt`): the `Msg-Type` header picks
 * the type; without it each schema is tried in order.
 *
 * @param schemas The candidate schemas, most likely first.
 * @param data The payload.
 * @param options The `Msg-Type` header, when present.
 * @returns The decoded message; its `$typeName` says which type it is.
 * @throws {DecodeError} When no candidate decodes the payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   decodeOneOf, encode, STTInterruptSchema, STTTranscriptionSchema,
 * } from "@homelab/handler-base/messages";
 *
 * const bytes = encode(STTInterruptSchema, { sessionId: "s", type: "interrupt" });
 * const message = decodeOneOf([STTTranscriptionSchema, STTInterruptSchema], bytes, {
 *   msgType: "messages.v1.STTInterrupt",
 * });
 * assert.equal(message.$typeName, "messages.v1.STTInterrupt");
 * ```
 */
export function decodeOneOf<const Descs extends readonly DescMessage[]>(
  schemas: Descs,
  data: Uint8Array,
  options: DecodeOptions = {},
): MessageShape<Descs[number]> {
  const { msgType } = options;
  const candidates = msgType ? schemas.filter((s) => s.typeName === msgType) : schemas;
  let lastError: unknown;
  for (const schema of candidates) {
    try {
      return compileCodec(schema).decode(data) as MessageShape<Descs[number]>;
    } catch (cause) {
      lastError = cause;
    }
  }
  const names = schemas.map((s) => s.typeName).join(" or ");
  const cause = msgType && candidates.length === 0
    ? new Error(`the ${MSG_TYPE_HEADER} header says ${msgType}`)
    : lastError;
  throw new DecodeError(names, { cause });
}

/**
 * The current time as the contract writes timestamps: whole Unix seconds in an
 * `int64`.
 *
 * @param now The time in milliseconds since the epoch.
 * @returns Unix seconds as a bigint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unixSeconds } from "@homelab/handler-base/messages";
 *
 * assert.equal(unixSeconds(1_700_000_000_999), 1700000000n);
 * ```
 */
export function unixSeconds(now: number = Date.now()): bigint {
  return BigInt(Math.floor(now / 1000));
}
