/**
 * A fast protobuf binary codec for the contract's messages, byte for byte and
 * value for value equivalent to protobuf-es (`toBinary`, `fromBinary`,
 * `create`). Internal: {@linkcode encode} and {@linkcode decode} of
 * `messages.ts` go through it; nothing else should need it.
 *
 * {@linkcode compileCodec} walks a schema's descriptor once (public
 * `DescMessage` API only) and keeps a plan per message type: tags, zero
 * values, field kinds. Encoding and decoding then interpret that plan over
 * one reusable buffer, without protobuf-es's reflective per-field work. No
 * code is generated at run time (no `eval`, no `new Function`).
 *
 * The fast path covers the shapes of proto3 files: singular scalars of the
 * common types with implicit presence, open enums, singular and repeated
 * messages, repeated scalars (packed or not), and `map<string, scalar>`.
 * Anything else falls back to protobuf-es, which then gives the exact
 * reference result or the exact reference error: a schema with a shape the
 * plan does not cover (oneofs, explicit presence, proto2 and editions files,
 * well-known wrapper types, ...) always takes protobuf-es; a payload with
 * anything unusual (unknown fields, unexpected wire types, groups, truncation,
 * invalid UTF-8, ...) is decoded again by `fromBinary`; a message with
 * `$unknown` fields or values of an unexpected type is encoded by `toBinary`.
 *
 * @example Encode an init object and decode it back
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
 * import { compileCodec } from "./codec.ts";
 * import { TTSStatusSchema } from "./messages.ts";
 *
 * const codec = compileCodec(TTSStatusSchema);
 * const init = { sessionId: "s1", status: "processing", timestamp: 1700000000n };
 * const bytes = codec.encode(init);
 * assert.deepEqual(bytes, toBinary(TTSStatusSchema, create(TTSStatusSchema, init)));
 * assert.deepStrictEqual(codec.decode(bytes), fromBinary(TTSStatusSchema, bytes));
 * ```
 *
 * @module
 */
import {
  create,
  type DescField,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";

/** A compiled encoder and decoder of one message type. */
export interface Codec<Desc extends DescMessage> {
  /**
   * Serializes a message, or a plain init object of its fields, to exactly
   * the bytes of protobuf-es's `toBinary(schema, create(schema, value))`.
   */
  encode(message: MessageShape<Desc> | MessageInitShape<Desc>): Uint8Array;
  /**
   * Parses protobuf binary to a message deep-equal to protobuf-es's
   * `fromBinary(schema, bytes)`, or throws what `fromBinary` throws.
   */
  decode(bytes: Uint8Array): MessageShape<Desc>;
}

/**
 * How often the codecs handed work to protobuf-es, for tests: a normal message
 * must not. Counts both schemas the plan does not cover and payloads or values
 * the fast path gave up on.
 */
export const codecFallbacks: { decode: number; encode: number } = { decode: 0, encode: 0 };

const EDITION_PROTO3 = 999;
const IMPLICIT = 2;
/** protobuf-es's default recursion limit of `fromBinary`. */
const RECURSION_LIMIT = 100;

const WIRE_VARINT = 0;
const WIRE_BIT64 = 1;
const WIRE_LEN = 2;
const WIRE_BIT32 = 5;

const K_SCALAR = 0;
const K_MESSAGE = 1;
const K_LIST_SCALAR = 2;
const K_LIST_MESSAGE = 3;
const K_MAP = 4;

/** The scalar types the fast path reads and writes (enums are INT32). */
const FAST_SCALARS = new Set<ScalarType>([
  ScalarType.STRING,
  ScalarType.BYTES,
  ScalarType.BOOL,
  ScalarType.INT32,
  ScalarType.UINT32,
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.DOUBLE,
  ScalarType.FLOAT,
]);

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const TWO_32 = 0x1_0000_0000;
const EMPTY_BYTES = new Uint8Array(0);

/** Thrown inside the fast path to hand the whole message to protobuf-es. */
const FALLBACK: unique symbol = Symbol("codec fallback");

interface FieldPlan {
  kind: number;
  name: string;
  number: number;
  /** Scalar type of a scalar, list item or map value; INT32 for enums. */
  scalar: ScalarType;
  /** The zero of an enum field (its first value); unused otherwise. */
  enumZero: number;
  /** The tag (number << 3 | wire type) of the field's canonical encoding. */
  tag: number;
  /** Whether strings must be valid UTF-8 (protobuf-es's `utf8Validation`). */
  strict: boolean;
  /** The message of a message field or list. */
  child: Plan | undefined;
}

interface Plan {
  desc: DescMessage;
  typeName: string;
  /** False when the message has a shape the fast path does not cover. */
  fast: boolean;
  /** Fields in field-number order, the order `toBinary` writes. */
  fields: FieldPlan[];
  /** Field by tag, for the tags the fast path reads. */
  byTag: (FieldPlan | undefined)[];
  /**
   * The zero message, copied by spread: scalar zeros, and placeholders for
   * lists and maps (so that keys keep create()'s order).
   */
  template: Record<string, unknown>;
  /** Names of list fields (a fresh `[]` each) and map fields (a fresh `{}`). */
  lists: string[];
  maps: string[];
}

const plans = new WeakMap<DescMessage, Plan>();
const codecs = new WeakMap<DescMessage, Codec<DescMessage>>();

/**
 * The codec of a message type, compiled on first use and cached per schema.
 *
 * @typeParam Desc The message schema.
 * @param schema The message's schema (`TTSRequestSchema`, ...).
 * @returns Its encoder and decoder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compileCodec } from "./codec.ts";
 * import { TTSRequestSchema } from "./messages.ts";
 *
 * const codec = compileCodec(TTSRequestSchema);
 * assert.equal(codec, compileCodec(TTSRequestSchema));
 * assert.equal(codec.decode(codec.encode({ text: "hello" })).text, "hello");
 * ```
 */
export function compileCodec<Desc extends DescMessage>(schema: Desc): Codec<Desc> {
  let codec = codecs.get(schema);
  if (codec === undefined) {
    codec = makeCodec(planOf(schema));
    codecs.set(schema, codec);
  }
  return codec as Codec<Desc>;
}

function makeCodec(plan: Plan): Codec<DescMessage> {
  const desc = plan.desc;
  const typeName = plan.typeName;
  const slowEncode = (value: unknown, full: boolean): Uint8Array => {
    codecFallbacks.encode++;
    // deno-lint-ignore no-explicit-any
    return toBinary(desc, full ? value as any : create(desc, value as any));
  };
  const slowDecode = (bytes: Uint8Array) => {
    codecFallbacks.decode++;
    return fromBinary(desc, bytes);
  };
  return {
    encode(value) {
      const full = (value as { $typeName?: unknown }).$typeName === typeName;
      if (!plan.fast) return slowEncode(value, full);
      const w = acquireWriter();
      try {
        writeMessage(plan, w, value as Record<string, unknown>, !full);
        return w.finish();
      } catch {
        return slowEncode(value, full);
      } finally {
        releaseWriter(w);
      }
    },
    decode(bytes) {
      if (!plan.fast) return slowDecode(bytes);
      try {
        const r = new Reader(bytes);
        const message = zeroOf(plan);
        readMessage(plan, r, message, bytes.length, 1);
        return message as MessageShape<DescMessage>;
      } catch {
        return slowDecode(bytes);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Plans

function planOf(desc: DescMessage): Plan {
  let plan = plans.get(desc);
  if (plan !== undefined) return plan;
  plan = {
    desc,
    typeName: desc.typeName,
    fast: true,
    fields: [],
    byTag: [],
    template: { $typeName: desc.typeName },
    lists: [],
    maps: [],
  };
  // Registered before the fields, so that recursive types resolve to this plan.
  plans.set(desc, plan);
  if (desc.file.edition !== EDITION_PROTO3 || desc.oneofs.length > 0) {
    plan.fast = false;
    return plan;
  }
  for (const field of desc.fields) {
    const fieldPlan = planField(field);
    if (fieldPlan === undefined) {
      plan.fast = false;
      return plan;
    }
    plan.fields.push(fieldPlan);
    register(plan, fieldPlan.tag, fieldPlan);
    switch (fieldPlan.kind) {
      case K_SCALAR:
        plan.template[field.localName] = zeroOfScalar(field);
        break;
      case K_LIST_SCALAR:
        plan.template[field.localName] = undefined;
        plan.lists.push(field.localName);
        if (isPackable(fieldPlan.scalar)) {
          // Both encodings are read: packed (the canonical one) and one by one.
          register(plan, (field.number << 3) | wireTypeOf(fieldPlan.scalar), fieldPlan);
        }
        break;
      case K_LIST_MESSAGE:
        plan.template[field.localName] = undefined; // keeps create()'s key order
        plan.lists.push(field.localName);
        break;
      case K_MAP:
        plan.template[field.localName] = undefined;
        plan.maps.push(field.localName);
        break;
    }
  }
  plan.fields.sort((a, b) => a.number - b.number);
  return plan;
}

function register(plan: Plan, tag: number, field: FieldPlan): void {
  // Tags beyond a small table are read by protobuf-es (none occur in our files).
  if (tag >= 0x4000) {
    plan.fast = false;
    return;
  }
  plan.byTag[tag] = field;
}

/** The plan of a field, or undefined when the fast path does not cover it. */
function planField(field: DescField): FieldPlan | undefined {
  if (field.oneof !== undefined) return undefined;
  const base = {
    name: field.localName,
    number: field.number,
    enumZero: 0,
    strict: false,
    child: undefined,
  };
  switch (field.fieldKind) {
    case "scalar":
    case "enum": {
      if (field.presence !== IMPLICIT || field.getDefaultValue() !== undefined) return undefined;
      let scalar = ScalarType.INT32;
      let enumZero = 0;
      if (field.fieldKind === "enum") {
        if (!field.enum.open) return undefined;
        enumZero = field.enum.values[0]!.number;
      } else {
        if (!FAST_SCALARS.has(field.scalar) || field.longAsString) return undefined;
        scalar = field.scalar;
      }
      return {
        ...base,
        kind: K_SCALAR,
        scalar,
        enumZero,
        strict: field.utf8Validation,
        tag: (field.number << 3) | wireTypeOf(scalar),
      };
    }
    case "message":
      if (field.delimitedEncoding || !plainMessage(field.message)) return undefined;
      return {
        ...base,
        kind: K_MESSAGE,
        scalar: ScalarType.INT32,
        tag: (field.number << 3) | WIRE_LEN,
        child: planOf(field.message),
      };
    case "list": {
      if (field.listKind === "message") {
        if (field.delimitedEncoding || !plainMessage(field.message)) return undefined;
        return {
          ...base,
          kind: K_LIST_MESSAGE,
          scalar: ScalarType.INT32,
          tag: (field.number << 3) | WIRE_LEN,
          child: planOf(field.message),
        };
      }
      let scalar = ScalarType.INT32;
      if (field.listKind === "enum") {
        if (!field.enum.open) return undefined;
      } else {
        if (!FAST_SCALARS.has(field.scalar) || field.longAsString) return undefined;
        scalar = field.scalar;
      }
      // Only the canonical proto3 layout: packed numbers, strings and bytes one by one.
      if (isPackable(scalar) !== field.packed) return undefined;
      return {
        ...base,
        kind: K_LIST_SCALAR,
        scalar,
        strict: field.utf8Validation,
        tag: (field.number << 3) | (field.packed ? WIRE_LEN : wireTypeOf(scalar)),
      };
    }
    case "map": {
      if (field.mapKey !== ScalarType.STRING || field.mapKind !== "scalar") return undefined;
      if (!FAST_SCALARS.has(field.scalar)) return undefined;
      return {
        ...base,
        kind: K_MAP,
        scalar: field.scalar,
        strict: field.utf8Validation,
        tag: (field.number << 3) | WIRE_LEN,
      };
    }
  }
}

/**
 * Whether a message field's local value is the message itself: not a
 * well-known type that protobuf-es unwraps (wrappers) or represents as JSON
 * (Struct), which create() and toBinary() convert.
 */
function plainMessage(desc: DescMessage): boolean {
  return !desc.typeName.startsWith("google.protobuf.");
}

function isPackable(scalar: ScalarType): boolean {
  return scalar !== ScalarType.STRING && scalar !== ScalarType.BYTES;
}

function wireTypeOf(scalar: ScalarType): number {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WIRE_LEN;
    case ScalarType.DOUBLE:
      return WIRE_BIT64;
    case ScalarType.FLOAT:
      return WIRE_BIT32;
    default:
      return WIRE_VARINT;
  }
}

function zeroOfScalar(field: DescField): unknown {
  if (field.fieldKind === "enum") return field.enum.values[0]!.number;
  if (field.fieldKind !== "scalar") return undefined;
  return zeroOfScalarType(field.scalar);
}

function zeroOf(plan: Plan): Record<string, unknown> {
  const message: Record<string, unknown> = { ...plan.template };
  for (const name of plan.lists) message[name] = [];
  for (const name of plan.maps) message[name] = {};
  return message;
}

// ---------------------------------------------------------------------------
// Decoding

class Reader {
  buf: Uint8Array;
  pos = 0;
  view: DataView | undefined = undefined;

  constructor(buf: Uint8Array) {
    this.buf = buf;
  }

  dataView(): DataView {
    return this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Lenient = new TextDecoder("utf-8", { ignoreBOM: true });
/** The longest string decoded in JavaScript when it is ASCII (longer ones concatenate slower than TextDecoder). */
const SHORT_STRING = 16;

/** Reads a varint as protobuf-es's `uint32()` does: its low 32 bits, up to 10 bytes. */
function readVarint32(r: Reader): number {
  const buf = r.buf;
  let pos = r.pos;
  let b = buf[pos++]!;
  if (b < 0x80) {
    r.pos = pos;
    return b;
  }
  let result = b & 0x7f;
  b = buf[pos++]!;
  result |= (b & 0x7f) << 7;
  if (b < 0x80) {
    r.pos = pos;
    return result;
  }
  b = buf[pos++]!;
  result |= (b & 0x7f) << 14;
  if (b < 0x80) {
    r.pos = pos;
    return result;
  }
  b = buf[pos++]!;
  result |= (b & 0x7f) << 21;
  if (b < 0x80) {
    r.pos = pos;
    return result;
  }
  b = buf[pos++]!;
  result |= (b & 0x0f) << 28;
  for (let read = 5; b >= 0x80 && read < 10; read++) b = buf[pos++]!;
  // Past the end of the buffer (b undefined) or an 11th byte: protobuf-es decides.
  if (!(b < 0x80)) throw FALLBACK;
  r.pos = pos;
  return result >>> 0;
}

/** Reads a 64-bit varint as protobuf-es's `int64()` or `uint64()`. */
function readVarint64(r: Reader, signed: boolean): bigint {
  const buf = r.buf;
  let pos = r.pos;
  let lo = 0;
  let hi = 0;
  let b = 0;
  let done = false;
  for (let shift = 0; shift < 28; shift += 7) {
    b = buf[pos++]!;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) {
      done = true;
      break;
    }
  }
  if (!done) {
    b = buf[pos++]!;
    lo |= (b & 0x0f) << 28;
    hi = (b & 0x70) >> 4;
    if (b >= 0x80) {
      for (let shift = 3; shift <= 31; shift += 7) {
        b = buf[pos++]!;
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) {
          done = true;
          break;
        }
      }
      if (!done) throw FALLBACK;
    }
  }
  if (!(b < 0x80)) throw FALLBACK; // ran past the buffer
  r.pos = pos;
  const low = lo >>> 0;
  if (signed) {
    // hi as a signed int32 times 2^32 plus the unsigned low word is the int64.
    const high = hi | 0;
    if (high >= -0x200000 && high < 0x200000) return BigInt(high * TWO_32 + low);
    return BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(low));
  }
  const high = hi >>> 0;
  if (high < 0x200000) return BigInt(high * TWO_32 + low);
  return (BigInt(high) << 32n) | BigInt(low);
}

function readScalar(r: Reader, scalar: ScalarType, strict: boolean, end: number): unknown {
  switch (scalar) {
    case ScalarType.STRING: {
      const len = readVarint32(r);
      const start = r.pos;
      const stop = start + len;
      if (stop > end) throw FALLBACK;
      r.pos = stop;
      const buf = r.buf;
      // Short ASCII strings (ids, names, codes) are built in JavaScript: a TextDecoder call
      // costs about 300 ns whatever the length, as much as 20 characters this way.
      if (len <= SHORT_STRING) {
        let text = "";
        let i = start;
        for (; i < stop; i++) {
          const c = buf[i]!;
          if (c > 0x7f) break;
          text += String.fromCharCode(c);
        }
        if (i === stop) return text;
      }
      const bytes = buf.subarray(start, stop);
      const text = utf8Lenient.decode(bytes);
      // A fatal TextDecoder costs about three times a lenient one in Deno. Without a
      // replacement character in the result nothing was replaced, so the bytes were valid
      // UTF-8; with one, the strict decoder decides (it throws on invalid UTF-8, and
      // protobuf-es then throws its own error).
      return strict && text.includes("\uFFFD") ? utf8Strict.decode(bytes) : text;
    }
    case ScalarType.BYTES: {
      const len = readVarint32(r);
      const start = r.pos;
      const stop = start + len;
      if (stop > end) throw FALLBACK;
      r.pos = stop;
      // A view into the payload, as protobuf-es returns.
      return r.buf.subarray(start, stop);
    }
    case ScalarType.BOOL: {
      const b = r.buf[r.pos]!;
      if (!(b < 0x80)) throw FALLBACK;
      r.pos++;
      return b !== 0;
    }
    case ScalarType.INT32:
      return readVarint32(r) | 0;
    case ScalarType.UINT32:
      return readVarint32(r);
    case ScalarType.INT64:
      return readVarint64(r, true);
    case ScalarType.UINT64:
      return readVarint64(r, false);
    case ScalarType.DOUBLE: {
      const pos = r.pos;
      if (pos + 8 > end) throw FALLBACK;
      r.pos = pos + 8;
      return r.dataView().getFloat64(pos, true);
    }
    case ScalarType.FLOAT: {
      const pos = r.pos;
      if (pos + 4 > end) throw FALLBACK;
      r.pos = pos + 4;
      return r.dataView().getFloat32(pos, true);
    }
  }
  throw FALLBACK;
}

/** Reads a length prefix and returns where the delimited value ends. */
function readLength(r: Reader, end: number): number {
  const len = readVarint32(r);
  const stop = r.pos + len;
  if (stop > end) throw FALLBACK;
  return stop;
}

function readTag(r: Reader): number {
  const buf = r.buf;
  const b = buf[r.pos]!;
  if (b < 0x80) {
    r.pos++;
    return b;
  }
  // Tags of the plan's fields fit 2 bytes; longer (or non-minimal) ones go to protobuf-es.
  const b2 = buf[r.pos + 1]!;
  if (!(b2 < 0x80)) throw FALLBACK;
  r.pos += 2;
  return (b & 0x7f) | (b2 << 7);
}

/**
 * Reads the fields of a message body into `target` (merging, as protobuf-es
 * does for a message field that occurs twice).
 */
function readMessage(
  plan: Plan,
  r: Reader,
  target: Record<string, unknown>,
  end: number,
  depth: number,
): void {
  if (depth >= RECURSION_LIMIT) throw FALLBACK;
  const byTag = plan.byTag;
  while (r.pos < end) {
    const tag = readTag(r);
    const field = byTag[tag];
    if (field === undefined) throw FALLBACK;
    switch (field.kind) {
      case K_SCALAR:
        target[field.name] = readScalar(r, field.scalar, field.strict, end);
        break;
      case K_MESSAGE: {
        const child = field.child!;
        if (!child.fast) throw FALLBACK;
        const stop = readLength(r, end);
        const existing = target[field.name] as Record<string, unknown> | undefined;
        const message = existing ?? zeroOf(child);
        readMessage(child, r, message, stop, depth + 1);
        target[field.name] = message;
        break;
      }
      case K_LIST_MESSAGE: {
        const child = field.child!;
        if (!child.fast) throw FALLBACK;
        const stop = readLength(r, end);
        const message = zeroOf(child);
        readMessage(child, r, message, stop, depth + 1);
        (target[field.name] as unknown[]).push(message);
        break;
      }
      case K_LIST_SCALAR: {
        const items = target[field.name] as unknown[];
        if ((tag & 7) === WIRE_LEN && isPackable(field.scalar)) {
          const stop = readLength(r, end);
          while (r.pos < stop) items.push(readScalar(r, field.scalar, false, stop));
          if (r.pos !== stop) throw FALLBACK;
        } else {
          items.push(readScalar(r, field.scalar, field.strict, end));
        }
        break;
      }
      case K_MAP:
        readMapEntry(field, r, target[field.name] as Record<string, unknown>, end);
        break;
    }
  }
  if (r.pos !== end) throw FALLBACK;
}

function readMapEntry(
  field: FieldPlan,
  r: Reader,
  record: Record<string, unknown>,
  end: number,
): void {
  const stop = readLength(r, end);
  const valueTag = (2 << 3) | wireTypeOf(field.scalar);
  let key = "";
  let value: unknown = undefined;
  while (r.pos < stop) {
    const tag = readTag(r);
    if (tag === ((1 << 3) | WIRE_LEN)) {
      key = readScalar(r, ScalarType.STRING, field.strict, stop) as string;
    } else if (tag === valueTag) {
      value = readScalar(r, field.scalar, field.strict, stop);
    } else {
      throw FALLBACK;
    }
  }
  if (r.pos !== stop || key === "__proto__") throw FALLBACK;
  if (value === undefined) {
    value = field.scalar === ScalarType.BYTES ? new Uint8Array(0) : zeroOfScalarType(field.scalar);
  }
  record[key] = value;
}

function zeroOfScalarType(scalar: ScalarType): unknown {
  switch (scalar) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      // create() shares one empty array among messages too.
      return EMPTY_BYTES;
    case ScalarType.INT64:
    case ScalarType.UINT64:
      return 0n;
    default:
      return 0;
  }
}

// ---------------------------------------------------------------------------
// Encoding

/**
 * Where an encode writes: straight into the shared slab (below), so a small
 * result is returned as a view of the bytes written, without a copy. Positions
 * are absolute in `buf`; `base` is where this result starts.
 */
class Writer {
  buf: Uint8Array;
  #view: DataView | undefined;
  base = 0;
  pos = 0;
  busy = false;
  /** Whether this is the shared writer (it may write into the slab and keep a large buffer). */
  readonly shared: boolean;

  constructor(buf: Uint8Array, shared: boolean) {
    this.buf = buf;
    this.shared = shared;
  }

  /** A view of `buf` for floating-point writes (rare: made when first needed). */
  get view(): DataView {
    return this.#view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** Starts a result at `base` of `buf`. */
  reset(buf: Uint8Array, base: number): void {
    if (buf !== this.buf) {
      this.buf = buf;
      this.#view = undefined;
    }
    this.base = base;
    this.pos = base;
  }

  ensure(size: number): void {
    if (this.pos + size <= this.buf.length) return;
    this.#move(this.pos - this.base + size);
  }

  /**
   * Moves what this result has so far to a buffer that holds `needed` bytes
   * from its start: a fresh slab while the result is still small, else a
   * buffer of its own (the shared writer keeps one for the next large result).
   * Offsets from `base` stay valid; `fork` and `join` keep theirs that way.
   */
  #move(needed: number): void {
    let target: Uint8Array;
    if (this.shared && needed <= SLAB_SHARE_LIMIT) {
      target = slab = new Uint8Array(SLAB_SIZE);
      slabUsed = 0;
    } else if (this.shared && large !== undefined && large !== this.buf && large.length >= needed) {
      target = large;
    } else {
      let length = INITIAL_SIZE;
      while (length < needed) length *= 2;
      target = new Uint8Array(length);
      if (this.shared && length <= RETAIN_LIMIT) large = target;
    }
    const written = this.pos - this.base;
    target.set(this.buf.subarray(this.base, this.pos));
    this.reset(target, 0);
    this.pos = written;
  }

  finish(): Uint8Array {
    const { base, pos } = this;
    if (this.buf !== slab || pos - base > SLAB_SHARE_LIMIT) return this.buf.slice(base, pos);
    // Keep each result 8-byte aligned, as its own allocation would be.
    slabUsed = (pos + 7) & ~7;
    return slab.subarray(base, pos);
  }
}

/**
 * Small results are views into a shared slab, as Node's `Buffer` pool does: in Deno a new
 * `Uint8Array` costs about 1 µs however small (an off-heap allocation), as much as encoding a
 * small message, and a view of one 70 ns, so an encode writes into the slab itself and returns
 * a view of what it wrote. A result keeps at most its slab (8 KiB) alive; larger results get
 * their own.
 */
const SLAB_SIZE = 8192;
const SLAB_SHARE_LIMIT = SLAB_SIZE / 8;
let slab = new Uint8Array(SLAB_SIZE);
let slabUsed = 0;

const INITIAL_SIZE = 4096;
/** The shared writer keeps a buffer for large results up to this size, so one big message does not pin memory. */
const RETAIN_LIMIT = 1 << 20;
let large: Uint8Array | undefined;
const sharedWriter = new Writer(slab, true);

function acquireWriter(): Writer {
  // Encoding does not call user code, but stay correct if it ever nests.
  if (sharedWriter.busy) return new Writer(new Uint8Array(INITIAL_SIZE), false);
  sharedWriter.busy = true;
  sharedWriter.reset(slab, slabUsed);
  return sharedWriter;
}

function releaseWriter(w: Writer): void {
  w.busy = false;
}

const utf8Encoder = new TextEncoder();

function varint32Size(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  return 5;
}

/** Writes an unsigned 32-bit varint; the caller ensured 5 bytes. */
function writeVarint32(w: Writer, value: number): void {
  const buf = w.buf;
  let pos = w.pos;
  while (value > 0x7f) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value;
  w.pos = pos;
}

function writeTag(w: Writer, tag: number): void {
  w.ensure(5);
  writeVarint32(w, tag);
}

/** Writes an int32 as protobuf-es does: negative numbers sign-extended to 10 bytes. */
function writeInt32(w: Writer, value: number): void {
  w.ensure(10);
  if (value >= 0) {
    writeVarint32(w, value);
    return;
  }
  const buf = w.buf;
  let pos = w.pos;
  for (let i = 0; i < 9; i++) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>= 7;
  }
  buf[pos++] = 1;
  w.pos = pos;
}

/** Writes the unsigned 64-bit value hi * 2^32 + lo (both unsigned words) as a varint. */
function writeVarint64(w: Writer, lo: number, hi: number): void {
  w.ensure(10);
  const buf = w.buf;
  let pos = w.pos;
  while (hi > 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  w.pos = pos;
}

/** Writes a safe integer as the two's complement 64-bit varint. */
function writeInt64Number(w: Writer, value: number): void {
  if (value >= 0) {
    const lo = value % TWO_32;
    writeVarint64(w, lo, (value - lo) / TWO_32);
    return;
  }
  const magnitude = -value;
  let lo = magnitude % TWO_32;
  let hi = (magnitude - lo) / TWO_32;
  if (lo === 0) {
    hi = (~hi + 1) >>> 0;
  } else {
    lo = (~lo + 1) >>> 0;
    hi = ~hi >>> 0;
  }
  writeVarint64(w, lo, hi);
}

function writeInt64Bigint(w: Writer, value: bigint): void {
  if (value >= -Number.MAX_SAFE_INTEGER && value <= Number.MAX_SAFE_INTEGER) {
    writeInt64Number(w, Number(value));
    return;
  }
  const u = BigInt.asUintN(64, value);
  writeVarint64(w, Number(u & 0xffffffffn), Number(u >> 32n));
}

function writeString(w: Writer, value: string): void {
  const len = value.length;
  w.ensure(len * 3 + 5);
  const buf = w.buf;
  const start = w.pos;
  if (len < 0x80) {
    let pos = start + 1;
    let i = 0;
    for (; i < len; i++) {
      const code = value.charCodeAt(i);
      if (code > 0x7f) break;
      buf[pos++] = code;
    }
    if (i === len) {
      buf[start] = len;
      w.pos = pos;
      return;
    }
  }
  // UTF-8 takes at least as many bytes as UTF-16 code units: guess the prefix, widen if needed.
  // TextEncoder writes U+FFFD for a lone surrogate, as protobuf-es's writer does.
  const guess = varint32Size(len);
  const { written } = utf8Encoder.encodeInto(value, buf.subarray(start + guess));
  const size = varint32Size(written);
  if (size !== guess) buf.copyWithin(start + size, start + guess, start + guess + written);
  writeVarint32(w, written);
  w.pos += written;
}

function writeBytes(w: Writer, value: Uint8Array): void {
  w.ensure(value.length + 5);
  writeVarint32(w, value.length);
  w.buf.set(value, w.pos);
  w.pos += value.length;
}

function isInt32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= -0x80000000 &&
    value <= 0x7fffffff;
}

function isUint32(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 &&
    value <= 0xffffffff;
}

/** Whether the value is one toBinary writes as an int64 the same way the fast path does. */
function isInt64(value: unknown): value is bigint | number {
  if (typeof value === "bigint") return value >= INT64_MIN && value <= INT64_MAX;
  return typeof value === "number" && Number.isSafeInteger(value);
}

function isUint64(value: unknown): value is bigint | number {
  if (typeof value === "bigint") return value >= 0n && value <= UINT64_MAX;
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Writes a scalar value without its tag, or throws FALLBACK for a value of
 * another type (which toBinary coerces or rejects in its own way).
 */
function writeScalarValue(w: Writer, scalar: ScalarType, value: unknown): void {
  switch (scalar) {
    case ScalarType.STRING:
      if (typeof value !== "string") throw FALLBACK;
      writeString(w, value);
      return;
    case ScalarType.BYTES:
      if (!(value instanceof Uint8Array)) throw FALLBACK;
      writeBytes(w, value);
      return;
    case ScalarType.BOOL:
      if (typeof value !== "boolean") throw FALLBACK;
      w.ensure(1);
      w.buf[w.pos++] = value ? 1 : 0;
      return;
    case ScalarType.INT32:
      if (!isInt32(value)) throw FALLBACK;
      writeInt32(w, value);
      return;
    case ScalarType.UINT32:
      if (!isUint32(value)) throw FALLBACK;
      w.ensure(5);
      writeVarint32(w, value);
      return;
    case ScalarType.INT64:
      if (!isInt64(value)) throw FALLBACK;
      if (typeof value === "number") writeInt64Number(w, value);
      else writeInt64Bigint(w, value);
      return;
    case ScalarType.UINT64:
      if (!isUint64(value)) throw FALLBACK;
      if (typeof value === "number") writeInt64Number(w, value);
      else {
        const lo = Number(value & 0xffffffffn);
        writeVarint64(w, lo, Number(value >> 32n));
      }
      return;
    case ScalarType.DOUBLE:
      if (typeof value !== "number") throw FALLBACK;
      w.ensure(8);
      w.view.setFloat64(w.pos, value, true);
      w.pos += 8;
      return;
    case ScalarType.FLOAT:
      if (typeof value !== "number") throw FALLBACK;
      // toBinary rejects a finite number that overflows a float32.
      if (!Number.isFinite(Math.fround(value)) && Number.isFinite(value)) throw FALLBACK;
      w.ensure(4);
      w.view.setFloat32(w.pos, value, true);
      w.pos += 4;
      return;
  }
  throw FALLBACK;
}

/** Whether a singular scalar holds its zero value, which proto3 does not write. */
function isZero(field: FieldPlan, value: unknown): boolean {
  switch (field.scalar) {
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.BYTES:
      return value instanceof Uint8Array && value.length === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(value, 0);
    case ScalarType.INT32:
      return value === field.enumZero;
    default:
      // 0 or 0n; other types are left to writeScalarValue to reject.
      return value === 0 || value === 0n;
  }
}

/**
 * Starts a length-delimited value: one byte reserved for its length. Returns
 * that byte's offset from the result's start, which stays valid if the result moves.
 */
function fork(w: Writer): number {
  w.ensure(1);
  return w.pos++ - w.base;
}

/** Ends a length-delimited value, widening the length prefix if it needs more than a byte. */
function join(w: Writer, offset: number): void {
  let at = w.base + offset;
  const len = w.pos - at - 1;
  if (len < 0x80) {
    w.buf[at] = len;
    return;
  }
  const size = varint32Size(len);
  w.ensure(size - 1);
  at = w.base + offset;
  w.buf.copyWithin(at + size, at + 1, w.pos);
  const end = w.pos + size - 1;
  w.pos = at;
  writeVarint32(w, len);
  w.pos = end;
}

/**
 * Whether a value `create()` would take for a message field is an init object
 * (true), the message itself (false); anything else is left to protobuf-es.
 */
function childIsInit(child: Plan, value: unknown): boolean {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw FALLBACK;
  return (value as { $typeName?: unknown }).$typeName !== child.typeName;
}

/**
 * Writes the fields of a message. With `init`, the value is an init object of
 * `create()`: absent or null fields are zero, nested plain objects are init
 * objects. Without, it is a message, checked as toBinary checks it.
 */
function writeMessage(
  plan: Plan,
  w: Writer,
  message: Record<string, unknown>,
  init: boolean,
): void {
  if (!plan.fast) throw FALLBACK;
  if (!init) {
    if (message.$typeName !== plan.typeName) throw FALLBACK;
    const unknown = message.$unknown;
    if (unknown !== undefined && !(Array.isArray(unknown) && unknown.length === 0)) throw FALLBACK;
  }
  const fields = plan.fields;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    const value = message[field.name];
    switch (field.kind) {
      case K_SCALAR:
        if (init && value == null) break;
        if (isZero(field, value)) break;
        writeTag(w, field.tag);
        writeScalarValue(w, field.scalar, value);
        break;
      case K_MESSAGE: {
        if (init ? value == null : value === undefined) break;
        if (!init && !Object.hasOwn(message, field.name)) throw FALLBACK;
        const child = field.child!;
        const childInit = init ? childIsInit(child, value) : false;
        writeTag(w, field.tag);
        const at = fork(w);
        writeMessage(child, w, value as Record<string, unknown>, childInit);
        join(w, at);
        break;
      }
      case K_LIST_MESSAGE: {
        if (init && value == null) break;
        if (!Array.isArray(value)) throw FALLBACK;
        const child = field.child!;
        for (let j = 0; j < value.length; j++) {
          const item = value[j];
          const itemInit = init ? childIsInit(child, item) : false;
          writeTag(w, field.tag);
          const at = fork(w);
          writeMessage(child, w, item, itemInit);
          join(w, at);
        }
        break;
      }
      case K_LIST_SCALAR: {
        if (init && value == null) break;
        if (!Array.isArray(value)) throw FALLBACK;
        if (value.length === 0) break;
        if (isPackable(field.scalar)) {
          writeTag(w, field.tag);
          const at = fork(w);
          for (let j = 0; j < value.length; j++) writeScalarValue(w, field.scalar, value[j]);
          join(w, at);
        } else {
          for (let j = 0; j < value.length; j++) {
            writeTag(w, field.tag);
            writeScalarValue(w, field.scalar, value[j]);
          }
        }
        break;
      }
      case K_MAP: {
        if (init && value == null) break;
        if (typeof value !== "object" || value === null) throw FALLBACK;
        // create() copies a map of bytes values converting arrays (which writeScalarValue leaves
        // to it), keeping Object.keys() order and a "__proto__" key: the same entries.
        const record = value as Record<string, unknown>;
        const keys = Object.keys(record);
        const valueTag = (2 << 3) | wireTypeOf(field.scalar);
        for (let j = 0; j < keys.length; j++) {
          const key = keys[j]!;
          writeTag(w, field.tag);
          const at = fork(w);
          writeTag(w, (1 << 3) | WIRE_LEN);
          writeString(w, key);
          writeTag(w, valueTag);
          writeScalarValue(w, field.scalar, record[key]);
          join(w, at);
        }
        break;
      }
    }
  }
}
