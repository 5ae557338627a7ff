// The codec against protobuf-es itself: random messages of every schema, init objects, the protoc
// golden vectors, and mutated payloads must give protobuf-es's bytes, values, or errors exactly.
import assert from "node:assert/strict";
import {
  create,
  createFileRegistry,
  type DescField,
  type DescMessage,
  fromBinary,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import {
  AnySchema,
  BoolValueSchema,
  BytesValueSchema,
  DescriptorProtoSchema,
  DoubleValueSchema,
  DurationSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldMaskSchema,
  FileDescriptorProtoSchema,
  FloatValueSchema,
  Int64ValueSchema,
  StructSchema,
  TimestampSchema,
  UInt32ValueSchema,
  UInt64ValueSchema,
} from "@bufbuild/protobuf/wkt";
import { codecFallbacks, compileCodec } from "./codec.ts";
import { EmptySchema, file_messages_v1_messages, TTSStatusSchema } from "./messages.ts";

// ---------------------------------------------------------------------------
// A proto3 test file with the shapes our contract lacks (packed numbers, other scalars, maps of
// int64 and bytes, recursion, 2-byte tags) and two the codec leaves to protobuf-es.

const field = (
  name: string,
  number: number,
  type: Type,
  extra: Record<string, unknown> = {},
) => ({ name, number, type, label: Label.OPTIONAL, jsonName: name, ...extra });
const repeated = { label: Label.REPEATED };
const entry = (name: string, value: Type) => ({
  name,
  field: [field("key", 1, Type.STRING), field("value", 2, value)],
  options: { mapEntry: true },
});
const TEST_FILE = create(FileDescriptorProtoSchema, {
  name: "codectest.proto",
  package: "codectest",
  syntax: "proto3",
  enumType: [{
    name: "Color",
    value: [{ name: "COLOR_UNSPECIFIED", number: 0 }, { name: "RED", number: 1 }, {
      name: "BLUE",
      number: 2,
    }],
  }],
  messageType: [
    {
      name: "Kitchen",
      field: [
        field("ints", 1, Type.INT32, repeated),
        field("longs", 2, Type.INT64, repeated),
        field("doubles", 3, Type.DOUBLE, repeated),
        field("floats", 4, Type.FLOAT, repeated),
        field("bools", 5, Type.BOOL, repeated),
        field("colors", 6, Type.ENUM, { ...repeated, typeName: ".codectest.Color" }),
        field("uints", 7, Type.UINT32, repeated),
        field("ulongs", 8, Type.UINT64, repeated),
        field("u32", 9, Type.UINT32),
        field("u64", 10, Type.UINT64),
        field("f", 11, Type.FLOAT),
        field("color", 12, Type.ENUM, { typeName: ".codectest.Color" }),
        field("counts", 13, Type.MESSAGE, {
          ...repeated,
          typeName: ".codectest.Kitchen.CountsEntry",
        }),
        field("blobs", 14, Type.MESSAGE, {
          ...repeated,
          typeName: ".codectest.Kitchen.BlobsEntry",
        }),
        field("child", 15, Type.MESSAGE, { typeName: ".codectest.Kitchen" }),
        field("chunks", 16, Type.BYTES, repeated),
        field("far", 2000, Type.INT32),
        field("name", 17, Type.STRING),
      ],
      nestedType: [entry("CountsEntry", Type.INT64), entry("BlobsEntry", Type.BYTES)],
    },
    {
      name: "WithOptional",
      field: [field("name", 1, Type.STRING, { proto3Optional: true, oneofIndex: 0 })],
      oneofDecl: [{ name: "_name" }],
    },
    {
      name: "WithOneof",
      field: [
        field("a", 1, Type.STRING, { oneofIndex: 0 }),
        field("b", 2, Type.INT32, { oneofIndex: 0 }),
      ],
      oneofDecl: [{ name: "choice" }],
    },
    { name: "WithSint", field: [field("s", 1, Type.SINT32), field("t", 2, Type.STRING)] },
  ],
});
const registry = createFileRegistry(TEST_FILE, () => undefined);
const testMessage = (name: string) => registry.getMessage(`codectest.${name}`)!;
const KitchenSchema = testMessage("Kitchen");

const FILE_SCHEMAS: DescMessage[] = [...file_messages_v1_messages.messages, EmptySchema];
const FAST_SCHEMAS: DescMessage[] = [
  ...FILE_SCHEMAS,
  KitchenSchema,
  // Top-level well-known types are plain proto3 messages.
  DoubleValueSchema,
  FloatValueSchema,
  Int64ValueSchema,
  UInt64ValueSchema,
  UInt32ValueSchema,
  BoolValueSchema,
  BytesValueSchema,
  TimestampSchema,
  DurationSchema,
  FieldMaskSchema,
  AnySchema,
];
const SLOW_SCHEMAS: DescMessage[] = [
  testMessage("WithOptional"),
  testMessage("WithOneof"),
  testMessage("WithSint"),
  StructSchema, // a oneof, and a map of messages
  DescriptorProtoSchema, // proto2
];

// ---------------------------------------------------------------------------
// Seeded random values

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  u32(): number {
    return this.int(0x1_0000_0000);
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

const PIECES = [
  "a",
  "Z",
  " ",
  "0",
  "\0",
  "ü",
  "ß",
  "☃",
  "中",
  "😀",
  "👍🏽",
  "\uD800", // lone high surrogate
  "\uDC00", // lone low surrogate
  "\uFEFF", // a BOM is text
  "\u07FF",
  "\u0800",
  "\n",
];

function randomString(r: Random): string {
  const length = r.chance(0.1) ? 0 : r.chance(0.05) ? 200 + r.int(5000) : r.int(40);
  if (r.chance(0.5)) {
    let ascii = "";
    for (let i = 0; i < length; i++) ascii += String.fromCharCode(32 + r.int(95));
    return ascii;
  }
  let text = "";
  for (let i = 0; i < length; i++) text += r.pick(PIECES);
  return text;
}

function randomBytes(r: Random): Uint8Array {
  const length = r.pick([0, 1, 3, 127, 128, 129, 300, 16_385 + r.int(2000), r.int(60)]);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = r.int(256);
  return bytes;
}

const INT32_EDGES = [0, 1, -1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, -(2 ** 31), -128];
const INT64_EDGES = [
  0n,
  1n,
  -1n,
  127n,
  128n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  2n ** 53n + 1n,
  -(2n ** 53n) - 1n,
  2n ** 32n,
  -(2n ** 32n),
  1_700_000_000n,
];
const DOUBLE_EDGES = [0, -0, NaN, Infinity, -Infinity, Number.MIN_VALUE, Number.MAX_VALUE, 0.875];

function randomScalar(r: Random, scalar: ScalarType): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return randomString(r);
    case ScalarType.BYTES:
      return randomBytes(r);
    case ScalarType.BOOL:
      return r.chance(0.5);
    case ScalarType.INT32:
    case ScalarType.SINT32:
      return r.chance(0.4) ? r.pick(INT32_EDGES) : r.u32() | 0;
    case ScalarType.UINT32:
      return r.chance(0.3) ? r.pick([0, 1, 0xffffffff, 0x80000000]) : r.u32();
    case ScalarType.INT64:
      return r.chance(0.4) ? r.pick(INT64_EDGES) : BigInt.asIntN(64, r.u64() >> BigInt(r.int(64)));
    case ScalarType.UINT64:
      return r.chance(0.3) ? r.pick([0n, 1n, 2n ** 64n - 1n, 2n ** 63n]) : r.u64();
    case ScalarType.DOUBLE:
      return r.chance(0.4) ? r.pick(DOUBLE_EDGES) : (r.next() - 0.5) * 10 ** r.int(40);
    case ScalarType.FLOAT:
      return Math.fround(r.chance(0.4) ? r.pick(DOUBLE_EDGES) : (r.next() - 0.5) * 10 ** r.int(30));
  }
  throw new Error(`no random ${ScalarType[scalar]}`);
}

function randomEnum(r: Random): number {
  return r.pick([0, 1, 2, 3, 4, 99, -5]);
}

/** A random message of the schema as a message (via create()) or its init object. */
function randomInit(r: Random, schema: DescMessage, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const f of schema.fields) {
    if (!r.chance(0.65)) continue;
    init[f.localName] = randomFieldValue(r, f, depth);
  }
  return init;
}

function randomFieldValue(r: Random, f: DescField, depth: number): unknown {
  const count = () => r.chance(0.2) ? 0 : 1 + r.int(r.chance(0.1) ? 40 : 4);
  switch (f.fieldKind) {
    case "scalar":
      return randomScalar(r, f.scalar);
    case "enum":
      return randomEnum(r);
    case "message":
      return depth < 3 ? randomInit(r, f.message, depth + 1) : undefined;
    case "list":
      return Array.from(
        { length: depth < 3 ? count() : 0 },
        () =>
          f.listKind === "scalar"
            ? randomScalar(r, f.scalar)
            : f.listKind === "enum"
            ? randomEnum(r)
            : randomInit(r, f.message, depth + 1),
      );
    case "map": {
      const record: Record<string, unknown> = {};
      for (let i = count(); i > 0; i--) {
        const key = r.pick(["", "k", "12", "0", "bucket", randomString(r)]);
        record[key] = f.mapKind === "scalar" ? randomScalar(r, f.scalar) : undefined;
      }
      return record;
    }
  }
}

/** Varies how an init object says the same thing, the ways create() accepts. */
function varyInit(r: Random, schema: DescMessage, init: Record<string, unknown>): unknown {
  const out: Record<string, unknown> = {};
  for (const f of schema.fields) {
    const value = init[f.localName];
    if (value === undefined) {
      if (r.chance(0.2)) out[f.localName] = r.chance(0.5) ? null : undefined;
      continue;
    }
    if (f.fieldKind === "scalar" && typeof value === "bigint" && r.chance(0.5)) {
      const n = Number(value);
      out[f.localName] = r.chance(0.5) && Number.isSafeInteger(n) ? n : String(value);
    } else if (f.fieldKind === "scalar" && value instanceof Uint8Array && r.chance(0.3)) {
      out[f.localName] = [...value];
    } else if (f.fieldKind === "message" && r.chance(0.3)) {
      out[f.localName] = create(f.message, value as never); // a message inside an init object
    } else {
      out[f.localName] = value;
    }
  }
  return out;
}

function outcome(fn: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: fn() };
  } catch (error) {
    return { error: String(error) };
  }
}

/** The codec's decode must give fromBinary's value, or throw its error. */
function assertDecodesLikeProtobufEs(schema: DescMessage, bytes: Uint8Array, label: string): void {
  const expected = outcome(() => fromBinary(schema, bytes));
  const actual = outcome(() => compileCodec(schema).decode(bytes));
  assert.deepStrictEqual(actual, expected, label);
}

function assertEncodesLikeProtobufEs(schema: DescMessage, value: unknown, label: string): void {
  const expected = outcome(() => toBinary(schema, create(schema, value as never)));
  const actual = outcome(() => compileCodec(schema).encode(value as never));
  assert.deepStrictEqual(actual, expected, label);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------

for (const schema of [...FAST_SCHEMAS, ...SLOW_SCHEMAS]) {
  Deno.test(`codec: random ${schema.typeName} encode and decode like protobuf-es`, () => {
    const r = new Random(schema.typeName.length * 7919 + schema.fields.length);
    const runs = schema === KitchenSchema ? 300 : SLOW_SCHEMAS.includes(schema) ? 30 : 120;
    for (let i = 0; i < runs; i++) {
      const init = randomInit(r, schema);
      const message = create(schema, init as never);
      const label = `${schema.typeName} #${i}`;
      assertEncodesLikeProtobufEs(schema, message, `${label} message`);
      assertEncodesLikeProtobufEs(schema, init, `${label} init`);
      assertEncodesLikeProtobufEs(schema, varyInit(r, schema, init), `${label} varied init`);
      // proto2 messages with required fields may not encode at all.
      const bytes = outcome(() => toBinary(schema, message));
      if ("value" in bytes) {
        assertDecodesLikeProtobufEs(schema, bytes.value as Uint8Array, `${label} decode`);
      }
    }
  });
}

Deno.test("codec: the protoc golden vectors decode and re-encode like protobuf-es", async () => {
  const golden = new URL("./testdata/golden/", import.meta.url);
  let seen = 0;
  for await (const entry of Deno.readDir(golden)) {
    if (!entry.name.endsWith(".bin")) continue;
    const schema = file_messages_v1_messages.messages.find((m) => `${m.name}.bin` === entry.name)!;
    const bytes = await Deno.readFile(new URL(entry.name, golden));
    const before = { ...codecFallbacks };
    const decoded = compileCodec(schema).decode(bytes);
    assert.deepStrictEqual(decoded, fromBinary(schema, bytes), entry.name);
    assert.deepStrictEqual(compileCodec(schema).encode(decoded), bytes, entry.name);
    assert.deepStrictEqual(codecFallbacks, before, `${entry.name} took the fast path`);
    seen++;
  }
  assert.equal(seen, 9);
});

Deno.test("codec: a normal message of every contract type takes the fast path", () => {
  const r = new Random(42);
  for (const schema of [...FAST_SCHEMAS]) {
    for (let i = 0; i < 20; i++) {
      const init = randomInit(r, schema);
      const before = { ...codecFallbacks };
      const bytes = compileCodec(schema).encode(init as never);
      const message = compileCodec(schema).decode(bytes);
      compileCodec(schema).encode(message);
      assert.deepStrictEqual(codecFallbacks, before, `${schema.typeName} #${i}`);
    }
  }
  const before = codecFallbacks.decode;
  // One unknown field (99, varint): the same bytes are handed to protobuf-es.
  const [ttsRequest] = file_messages_v1_messages.messages.filter((m) => m.name === "TTSRequest");
  const withUnknown = concat(
    compileCodec(ttsRequest!).encode({ text: "hi" }),
    Uint8Array.of(0x98, 0x06, 1),
  );
  assert.deepStrictEqual(
    (compileCodec(ttsRequest!).decode(withUnknown) as { $unknown?: unknown }).$unknown,
    [{ no: 99, wireType: 0, data: Uint8Array.of(1) }],
  );
  assert.equal(codecFallbacks.decode, before + 1);
});

Deno.test("codec: schemas it does not cover always go to protobuf-es", () => {
  for (const schema of SLOW_SCHEMAS) {
    const before = { ...codecFallbacks };
    const bytes = compileCodec(schema).encode({} as never);
    compileCodec(schema).decode(bytes);
    assert.deepStrictEqual(codecFallbacks, {
      decode: before.decode + 1,
      encode: before.encode + 1,
    }, schema.typeName);
  }
});

Deno.test("codec: compiled once per schema", () => {
  assert.equal(compileCodec(KitchenSchema), compileCodec(KitchenSchema));
});

/** Top-level fields of a valid encoding, as byte ranges. */
function splitFields(bytes: Uint8Array): Uint8Array[] {
  const fields: Uint8Array[] = [];
  let pos = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return value;
    }
  };
  while (pos < bytes.length) {
    const start = pos;
    const tag = varint();
    switch (tag & 7) {
      case 0:
        varint();
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const length = varint();
        pos += length;
        break;
      }
      case 5:
        pos += 4;
        break;
    }
    fields.push(bytes.subarray(start, pos));
  }
  return fields;
}

const UNKNOWN_FIELDS = [
  Uint8Array.of(0x98, 0x06, 0x01), // 99 varint
  Uint8Array.of(0x9a, 0x06, 0x02, 0x61, 0x62), // 99 length-delimited
  Uint8Array.of(0x9d, 0x06, 1, 2, 3, 4), // 99 fixed32
  Uint8Array.of(0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8), // 99 fixed64
  Uint8Array.of(0x9b, 0x06, 0x98, 0x06, 0x01, 0x9c, 0x06), // 99 group
  Uint8Array.of(0x9c, 0x06), // a stray end-group
  Uint8Array.of(0x0b, 0x0c), // field 1 as a group
  Uint8Array.of(0x0e), // wire type 6
  Uint8Array.of(0x00, 0x00), // field 0
  Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), // 11-byte varint
  Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x08), // over-long tag
];

for (const schema of [...FAST_SCHEMAS, testMessage("WithSint")]) {
  Deno.test(`codec: mutated ${schema.typeName} payloads decode like protobuf-es`, () => {
    const r = new Random(schema.fields.length * 104729 + 17);
    for (let i = 0; i < 40; i++) {
      const bytes = toBinary(schema, create(schema, randomInit(r, schema) as never));
      const label = `${schema.typeName} #${i}`;
      // Truncated at every cut (a sample of cuts for long payloads).
      const step = Math.max(1, Math.floor(bytes.length / 60));
      for (let cut = 0; cut < bytes.length; cut += step) {
        assertDecodesLikeProtobufEs(schema, bytes.subarray(0, cut), `${label} cut ${cut}`);
      }
      // Flipped bytes.
      for (let k = 0; k < 20 && bytes.length > 0; k++) {
        const mutated = bytes.slice();
        for (let n = 1 + r.int(3); n > 0; n--) mutated[r.int(mutated.length)] = r.int(256);
        assertDecodesLikeProtobufEs(schema, mutated, `${label} flip ${k}`);
      }
      // Unknown and malformed fields before, between and after.
      const fields = splitFields(bytes);
      for (const extra of UNKNOWN_FIELDS) {
        const at = r.int(fields.length + 1);
        const spliced = concat(...fields.slice(0, at), extra, ...fields.slice(at));
        assertDecodesLikeProtobufEs(schema, spliced, `${label} extra ${extra}`);
      }
      // Fields out of order, and the whole message twice (last scalar wins, messages merge,
      // lists append).
      const shuffled = fields.slice().sort(() => r.next() - 0.5);
      assertDecodesLikeProtobufEs(schema, concat(...shuffled), `${label} shuffled`);
      assertDecodesLikeProtobufEs(schema, concat(bytes, bytes), `${label} twice`);
      const other = toBinary(schema, create(schema, randomInit(r, schema) as never));
      assertDecodesLikeProtobufEs(schema, concat(bytes, other), `${label} merged`);
    }
  });
}

Deno.test("codec: packed and unpacked repeated numbers both decode like protobuf-es", () => {
  const r = new Random(7);
  const codec = compileCodec(KitchenSchema);
  for (let i = 0; i < 100; i++) {
    const ints = Array.from({ length: r.int(6) }, () => randomScalar(r, ScalarType.INT32));
    const colors = Array.from({ length: r.int(6) }, () => randomEnum(r));
    const longs = Array.from({ length: r.int(6) }, () => randomScalar(r, ScalarType.INT64));
    const doubles = Array.from({ length: r.int(4) }, () => randomScalar(r, ScalarType.DOUBLE));
    const packed = toBinary(KitchenSchema, create(KitchenSchema, { ints, colors, longs, doubles }));
    // The same values one field each: encode each item as a one-item packed list and rewrite
    // its tag to the scalar wire type.
    const unpacked: Uint8Array[] = [];
    const one = (init: Record<string, unknown>, wireType: number) => {
      const bytes = toBinary(KitchenSchema, create(KitchenSchema, init));
      const body = bytes.subarray(2); // tag (1 byte) and length (1 byte)
      unpacked.push(concat(Uint8Array.of((bytes[0]! & ~7) | wireType), body));
    };
    for (const v of ints) one({ ints: [v] }, 0);
    for (const v of longs) one({ longs: [v] }, 0);
    for (const v of doubles) one({ doubles: [v] }, 1);
    for (const v of colors) one({ colors: [v] }, 0);
    const before = codecFallbacks.decode;
    const mixed = concat(...unpacked.sort(() => r.next() - 0.5), packed);
    assertDecodesLikeProtobufEs(KitchenSchema, mixed, `#${i} mixed`);
    assert.equal(codecFallbacks.decode, before, "unpacked items take the fast path");
    assert.deepStrictEqual(codec.decode(packed), fromBinary(KitchenSchema, packed));
  }
});

Deno.test("codec: values toBinary rejects or coerces are rejected or coerced alike", () => {
  const cases: [DescMessage, unknown][] = [
    [KitchenSchema, { f: 1e300 }], // not a float32
    [KitchenSchema, { u32: -1 }],
    [KitchenSchema, { u64: -1n }],
    [KitchenSchema, { u64: 2n ** 64n }],
    [KitchenSchema, { ints: [1.5] }],
    [KitchenSchema, { longs: [2n ** 63n] }],
    [KitchenSchema, { longs: ["12"] }],
    [KitchenSchema, { counts: { a: "7" } }],
    [KitchenSchema, { name: 42 }],
    [KitchenSchema, { chunks: [[1, 2, 3]] }],
    [KitchenSchema, { child: "nope" }],
    [KitchenSchema, { child: { $typeName: "codectest.Kitchen", name: 5 } }],
    [KitchenSchema, { $typeName: "codectest.Kitchen", name: undefined }],
    [KitchenSchema, {
      $typeName: "codectest.Kitchen",
      $unknown: [{ no: 99, wireType: 0, data: Uint8Array.of(1) }],
    }],
    [FloatValueSchema, { value: 3.4028234663852886e38 }],
    [Int64ValueSchema, { value: "-9223372036854775808" }],
    [Int64ValueSchema, { value: 2 ** 60 }],
    [Int64ValueSchema, { value: 0.5 }],
  ];
  for (const [schema, value] of cases) {
    assertEncodesLikeProtobufEs(schema, value, JSON.stringify(value, (_, v) => String(v)));
  }
});

Deno.test("small results share a slab without overlapping; large ones own their buffer", () => {
  const codec = compileCodec(TTSStatusSchema);
  const results = Array.from(
    { length: 400 },
    (_, i) => codec.encode({ message: `m${i}`.padEnd(30, ".") }),
  );
  for (const [i, bytes] of results.entries()) {
    assert.deepStrictEqual(codec.decode(bytes).message, `m${i}`.padEnd(30, "."));
  }
  // Writing into one result leaves its neighbours intact, across slab boundaries too.
  results.forEach((bytes, i) => i % 2 === 1 && bytes.fill(0xff));
  results.forEach((bytes, i) =>
    i % 2 === 0 && assert.equal(codec.decode(bytes).message, `m${i}`.padEnd(30, "."))
  );
  assert.ok(new Set(results.map((b) => b.buffer)).size > 1, "400 results fill more than one slab");
  const large = codec.encode({ message: "x".repeat(5000) });
  assert.equal(large.byteOffset, 0);
  assert.equal(large.buffer.byteLength, large.byteLength);
});

Deno.test("codec: results that outgrow the slab's free space mid-write encode like protobuf-es", () => {
  // A filler result of random size leaves the slab at every fill level, so the next
  // result moves to a fresh slab or to a buffer of its own partway through, inside nested
  // messages whose lengths need more than one byte too.
  const filler = compileCodec(TTSStatusSchema);
  const r = new Random(4242);
  let moved = 0;
  for (let i = 0; i < 600; i++) {
    const before = filler.encode({ message: "f".repeat(r.int(1200)) });
    const init = randomInit(r, KitchenSchema);
    assertEncodesLikeProtobufEs(KitchenSchema, init, `#${i}`);
    const after = filler.encode({});
    if (after.buffer !== before.buffer) moved++;
  }
  assert.ok(moved > 50, `only ${moved} results moved to a new buffer`);
});

Deno.test("codec: a large result is a copy, so the next large result cannot overwrite it", () => {
  const codec = compileCodec(TTSStatusSchema);
  const first = codec.encode({ message: "a".repeat(20_000) });
  const second = codec.encode({ message: "b".repeat(30_000) });
  const small = codec.encode({ message: "c" });
  assert.equal(codec.decode(first).message, "a".repeat(20_000));
  assert.equal(codec.decode(second).message, "b".repeat(30_000));
  assert.equal(codec.decode(small).message, "c");
  assert.notEqual(first.buffer, second.buffer);
  assert.equal(first.buffer.byteLength, first.byteLength);
  assert.ok(small.buffer.byteLength > small.byteLength, "a small result is a view into the slab");
});

Deno.test("codec: strings with a replacement character, valid or not, decode like protobuf-es", () => {
  const encoder = new TextEncoder();
  const field = (text: Uint8Array) => concat(new Uint8Array([0x0a, text.length]), text);
  const cases: [string, Uint8Array][] = [
    ["short valid U+FFFD", field(encoder.encode("a\uFFFDb"))],
    ["long valid U+FFFD", field(encoder.encode(`${"x".repeat(40)}\uFFFD${"y".repeat(20)}`))],
    ["long invalid byte", field(concat(encoder.encode("x".repeat(40)), new Uint8Array([0xff])))],
    [
      "long truncated sequence",
      field(concat(encoder.encode("y".repeat(30)), new Uint8Array([0xe2, 0x98]))),
    ],
    [
      "long overlong NUL",
      field(concat(encoder.encode("z".repeat(30)), new Uint8Array([0xc0, 0x80]))),
    ],
    ["short invalid byte", field(new Uint8Array([0x61, 0xff]))],
  ];
  for (const [label, bytes] of cases) {
    assertDecodesLikeProtobufEs(TTSStatusSchema, bytes, label);
    assertDecodesLikeProtobufEs(KitchenSchema, bytes, `${label} (Kitchen)`);
  }
});
