import assert from "node:assert/strict";
import { createFileRegistry, type DescFile, fromBinary, toBinary } from "@bufbuild/protobuf";
import { fileDesc } from "@bufbuild/protobuf/codegenv2";
import { base64Encode } from "@bufbuild/protobuf/wire";
import {
  file_google_protobuf_descriptor,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, embedDescriptor } from "../scripts/embed_descriptors.ts";
import { embeddedFile } from "./embedded_descriptor.ts";
import { EmptySchema } from "./messages.ts";
import { file_messages_v1_messages } from "./gen/messagespb/messages/v1/messages_pb.ts";

/**
 * Asserts that two descriptor messages are the same objects as protobuf-es
 * builds them: the same own fields, recursively, and the same defaults on
 * their prototypes (where proto2 presence lives). `deepStrictEqual` alone would
 * compare the prototypes by identity.
 */
function assertSameMessage(actual: unknown, expected: unknown, at = "file"): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${at} is not an array`);
    assert.equal(actual.length, expected.length, `${at}.length`);
    expected.forEach((e, i) => assertSameMessage(actual[i], e, `${at}[${i}]`));
    return;
  }
  if (expected === null || typeof expected !== "object") {
    assert.deepStrictEqual(actual, expected, at);
    return;
  }
  assert.ok(actual !== null && typeof actual === "object", `${at} is not an object`);
  assert.deepStrictEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${at} keys`);
  const prototypeOf = (o: object) => {
    const p = Object.getPrototypeOf(o);
    return p === Object.prototype ? "Object.prototype" : { ...p };
  };
  assert.deepStrictEqual(prototypeOf(actual), prototypeOf(expected), `${at} prototype`);
  for (const key of Object.keys(expected)) {
    assertSameMessage(
      (actual as Record<string, unknown>)[key],
      (expected as Record<string, unknown>)[key],
      `${at}.${key}`,
    );
  }
}

Deno.test("embeddedFile() rebuilds exactly what fileDesc() decodes, proto2 and proto3", () => {
  // descriptor.proto is proto2 with defaults, options and extension ranges; struct.proto has a
  // oneof, a map and an enum; timestamp.proto has int64.
  for (
    const wkt of [
      file_google_protobuf_empty,
      file_google_protobuf_timestamp,
      file_google_protobuf_struct,
      file_google_protobuf_descriptor,
    ]
  ) {
    // As generated code embeds it: the binary descriptor, decoded by fileDesc().
    const file = fileDesc(base64Encode(toBinary(FileDescriptorProtoSchema, wkt.proto)));
    const embedded = embeddedFile(JSON.stringify(describe(file.proto)));
    assertSameMessage(embedded.proto, file.proto, file.proto.name);
    assert.deepEqual(
      embedded.messages.map((m) => [m.typeName, m.fields.map((f) => [f.number, f.fieldKind])]),
      file.messages.map((m) => [m.typeName, m.fields.map((f) => [f.number, f.fieldKind])]),
    );
  }
});

Deno.test("EmptySchema is google.protobuf.Empty as protobuf-es embeds it", () => {
  assertSameMessage(EmptySchema.file.proto, file_google_protobuf_empty.proto);
  assert.equal(EmptySchema.typeName, "google.protobuf.Empty");
  assert.deepEqual(EmptySchema.fields, []);
});

Deno.test("the embedded messages.v1 file describes what protoc compiles from the .proto", async () => {
  const out = await Deno.makeTempFile({ suffix: ".pb" });
  try {
    const { code, stderr } = await new Deno.Command("protoc", {
      args: ["--proto_path=proto", `--descriptor_set_out=${out}`, "messages/v1/messages.proto"],
      cwd: new URL("../", import.meta.url).pathname,
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const set = fromBinary(FileDescriptorSetSchema, await Deno.readFile(out));
    const compiled = createFileRegistry(set).getFile("messages/v1/messages.proto")!;
    const shape = (file: DescFile) => ({
      enums: file.enums.map((e) => [e.typeName, e.values.map((v) => [v.name, v.number])]),
      messages: file.messages.map((m) => ({
        typeName: m.typeName,
        nested: m.nestedMessages.map((n) => n.typeName),
        fields: m.fields.map((f) => ({
          name: f.name,
          number: f.number,
          jsonName: f.jsonName,
          localName: f.localName,
          kind: f.fieldKind,
          scalar: f.scalar,
          list: f.fieldKind === "list" ? [f.listKind, f.scalar, f.packed] : undefined,
          map: f.fieldKind === "map" ? [f.mapKey, f.mapKind, f.scalar] : undefined,
          message: f.message?.typeName,
          enum: f.enum?.typeName,
          presence: f.presence,
        })),
      })),
    });
    assert.equal(file_messages_v1_messages.messages.length, 22);
    assert.deepStrictEqual(shape(file_messages_v1_messages), shape(compiled));
  } finally {
    await Deno.remove(out);
  }
});

Deno.test("embedDescriptor() rewrites protoc-gen-es output, and refuses anything else", () => {
  const source = [
    'import type { GenFile } from "@bufbuild/protobuf/codegenv2";',
    'import { fileDesc, messageDesc } from "@bufbuild/protobuf/codegenv2";',
    // An empty FileDescriptorProto except for its name, "x.proto".
    'export const file_x: GenFile = /*@__PURE__*/ fileDesc("Cgd4LnByb3Rv");',
    "export const A = messageDesc(file_x, 0);",
  ].join("\n");
  const rewritten = embedDescriptor(source, "../embedded_descriptor.ts");
  assert.match(
    rewritten,
    /^import \{ embeddedFile, messageDesc \} from "\.\.\/embedded_descriptor\.ts";$/m,
  );
  assert.ok(!rewritten.includes("fileDesc"), rewritten);
  const json = JSON.parse(/embeddedFile\((".*")\)/.exec(rewritten)![1]!);
  assert.equal(embeddedFile(json).proto.name, "x.proto");
  assert.throws(
    () => embedDescriptor(source.replace('"Cgd4LnByb3Rv")', '"Cgd4LnByb3Rv", [file_y])'), "x"),
    /imports other files/,
  );
  assert.throws(
    () => embedDescriptor(source.replace("messageDesc }", "messageDesc, serviceDesc }"), "x"),
    /serviceDesc is not supported/,
  );
});
