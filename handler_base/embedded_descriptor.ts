/**
 * File descriptors embedded as plain data, so that loading the message types
 * costs no protobuf decoding (internal: the generated `gen/` code and
 * `messages.ts` use it; not an export of the package).
 *
 * Why: protoc-gen-es embeds each file's `FileDescriptorProto` as base64 and
 * decodes it at import with `fileDesc()`. Decoding needs the descriptor of
 * `descriptor.proto` itself, which protobuf-es builds at import too. The two
 * took about 20 ms of a service's start (issue 17, docs/PERFORMANCE.md) and
 * neither is needed again. `deno task gen` (scripts/embed_descriptors.ts)
 * instead decodes the descriptor once, when the code is generated, and writes
 * it as JSON: every message object of the descriptor with its own fields, and
 * for each descriptor type the defaults protobuf-es keeps on the object's
 * prototype (descriptor.proto is proto2, where a field that is not on the
 * object itself is "not set"). {@linkcode embeddedFile} rebuilds those objects
 * exactly and registers the file as `fileDesc()` would.
 *
 * @example Embed a file and read a message type from it
 * ```ts
 * import assert from "node:assert/strict";
 * import { create, toBinary } from "@bufbuild/protobuf";
 * import { embeddedFile, messageDesc } from "./embedded_descriptor.ts";
 *
 * const file = embeddedFile(JSON.stringify({
 *   prototypes: {},
 *   file: {
 *     $typeName: "google.protobuf.FileDescriptorProto",
 *     name: "demo.proto", package: "demo", syntax: "proto3", dependency: [],
 *     messageType: [{
 *       $typeName: "google.protobuf.DescriptorProto", name: "Ping",
 *       field: [{
 *         $typeName: "google.protobuf.FieldDescriptorProto", name: "text", number: 1,
 *         label: 1, type: 9, jsonName: "text",
 *       }],
 *       nestedType: [], enumType: [], extensionRange: [], extension: [], oneofDecl: [],
 *       reservedRange: [], reservedName: [],
 *     }],
 *     enumType: [], service: [], extension: [], publicDependency: [], weakDependency: [],
 *     optionDependency: [],
 *   },
 * }));
 * const Ping = messageDesc(file, 0);
 * assert.deepEqual(toBinary(Ping, create(Ping, { text: "hi" })), new Uint8Array([10, 2, 104, 105]));
 * ```
 *
 * @module
 */
import {
  createFileRegistry,
  type DescEnum,
  type DescFile,
  type DescMessage,
} from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt/google/protobuf/descriptor_pb.js";

/** The JSON {@linkcode embeddedFile} reads (what scripts/embed_descriptors.ts writes). */
export interface EmbeddedFileJson {
  /** Per descriptor type name, the defaults its objects inherit from their prototype. */
  readonly prototypes: Record<string, Record<string, unknown>>;
  /** The file's `FileDescriptorProto`: objects with `$typeName` and their own fields. */
  readonly file: Record<string, unknown>;
}

/**
 * Rebuilds a file descriptor from its embedded JSON and registers it.
 *
 * @param json An {@linkcode EmbeddedFileJson}, as a string (parsing one string is
 * faster than evaluating the same object as code). The file imports no other
 * file (scripts/embed_descriptors.ts refuses one that does).
 * @returns The file's descriptor, equal to what `fileDesc()` returns for it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { embeddedFile } from "./embedded_descriptor.ts";
 *
 * assert.throws(() => embeddedFile('{"prototypes":{},"file":{}}'), /Cannot embed/);
 * ```
 */
export function embeddedFile(json: string): DescFile {
  const { prototypes, file } = JSON.parse(json) as EmbeddedFileJson;
  if (file?.$typeName !== "google.protobuf.FileDescriptorProto") {
    throw new Error("Cannot embed a file descriptor: the JSON holds no FileDescriptorProto");
  }
  const shared = new Map<string, object>();
  const revive = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(revive);
    if (value === null || typeof value !== "object") return value;
    const fields = value as Record<string, unknown>;
    const typeName = String(fields.$typeName);
    let prototype = shared.get(typeName);
    if (prototype === undefined) {
      const defaults = prototypes[typeName];
      prototype = defaults ? { ...defaults } : Object.prototype;
      shared.set(typeName, prototype);
    }
    const object = Object.create(prototype);
    for (const key of Object.keys(fields)) object[key] = revive(fields[key]);
    return object;
  };
  const proto = revive(file) as FileDescriptorProto;
  return createFileRegistry(proto, () => undefined).getFile(proto.name)!;
}

/**
 * A message type of a file, by index (nested: index path), as protobuf-es's
 * `messageDesc` of `@bufbuild/protobuf/codegenv2` (whose barrel would load
 * `descriptor.proto` again).
 *
 * @param file The file.
 * @param path The index of the message in the file, then of each nested message.
 * @returns The message's descriptor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { file_messages_v1_messages } from "./gen/messagespb/messages/v1/messages_pb.ts";
 * import { messageDesc } from "./embedded_descriptor.ts";
 *
 * assert.equal(messageDesc(file_messages_v1_messages, 0).typeName, "messages.v1.ErrorResponse");
 * ```
 */
// deno-lint-ignore no-explicit-any
export function messageDesc<T extends DescMessage = any>(
  file: DescFile,
  path: number,
  ...paths: number[]
): T {
  return paths.reduce((desc, index) => desc.nestedMessages[index]!, file.messages[path]!) as T;
}

/**
 * An enum type of a file, by index (nested: the messages' index path, then the
 * enum's), as protobuf-es's `enumDesc`.
 *
 * @param file The file.
 * @param path The index of the enum in the file, or of the message that holds it.
 * @param paths The indexes of nested messages, then of the enum.
 * @returns The enum's descriptor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { file_messages_v1_messages } from "./gen/messagespb/messages/v1/messages_pb.ts";
 * import { enumDesc } from "./embedded_descriptor.ts";
 *
 * assert.equal(enumDesc(file_messages_v1_messages, 0).typeName, "messages.v1.AudioEncoding");
 * ```
 */
// deno-lint-ignore no-explicit-any
export function enumDesc<T extends DescEnum = any>(
  file: DescFile,
  path: number,
  ...paths: number[]
): T {
  if (paths.length === 0) return file.enums[path] as T;
  const index = paths.pop()!;
  const message = paths.reduce(
    (desc, i) => desc.nestedMessages[i]!,
    file.messages[path]!,
  );
  return message.nestedEnums[index] as T;
}
