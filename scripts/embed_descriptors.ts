/**
 * The second step of `deno task gen`: rewrites each file protoc-gen-es
 * generated under a directory so that its descriptor is embedded as plain
 * data (`handler_base/embedded_descriptor.ts` explains why) instead of the
 * base64 that `fileDesc()` decodes at import.
 *
 * For every `*_pb.ts`: the `fileDesc("<base64>")` call is decoded here, with
 * protobuf-es itself, and replaced by `embeddedFile("<json>")`; the runtime
 * imports of `@bufbuild/protobuf/codegenv2` become imports of
 * `embedded_descriptor.ts`. A file whose descriptor imports another file is
 * refused (ours has none; supporting one means passing the embedded imports).
 *
 * Run: `deno run --allow-read=handler_base/gen --allow-write=handler_base/gen
 * scripts/embed_descriptors.ts handler_base/gen` (`scripts/check_generated.sh`
 * runs it on a fresh generation too).
 *
 * @example Embed one generated source
 * ```ts
 * import assert from "node:assert/strict";
 * import { embedDescriptor } from "./embed_descriptors.ts";
 *
 * assert.throws(() => embedDescriptor("export {};", "../embedded_descriptor.ts"), /Cannot embed/);
 * ```
 *
 * @module
 */
import { fileDesc } from "@bufbuild/protobuf/codegenv2";
import type { EmbeddedFileJson } from "../handler_base/embedded_descriptor.ts";

const RUNTIME_IMPORT = /^import \{ ([^}]*) \} from "@bufbuild\/protobuf\/codegenv2";$/m;
const FILE_DESC = /fileDesc\("([A-Za-z0-9+/=]+)"(, \[[^\]]*\])?\)/;

/**
 * The JSON of a descriptor as protobuf-es holds it: each object with its own
 * fields, and per type the defaults on its prototype.
 *
 * @param file The `proto` of a file descriptor.
 * @returns What `embeddedFile()` rebuilds it from.
 */
export function describe(file: object): EmbeddedFileJson {
  const prototypes: Record<string, Record<string, unknown>> = {};
  const walk = (value: unknown, at: string): unknown => {
    if (Array.isArray(value)) return value.map((v, i) => walk(v, `${at}[${i}]`));
    if (typeof value === "bigint" || value instanceof Uint8Array) {
      throw new Error(`Cannot embed the descriptor: ${at} is not JSON (${typeof value})`);
    }
    if (value === null || typeof value !== "object") return value;
    const fields = value as Record<string, unknown>;
    const typeName = fields.$typeName;
    if (typeof typeName !== "string") {
      throw new Error(`Cannot embed the descriptor: ${at} is not a message`);
    }
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype) {
      const defaults = { ...prototype };
      const known = prototypes[typeName];
      if (known && JSON.stringify(known) !== JSON.stringify(defaults)) {
        throw new Error(`Cannot embed the descriptor: ${typeName} has two sets of defaults`);
      }
      prototypes[typeName] = defaults;
    }
    const own: Record<string, unknown> = {};
    for (const key of Object.keys(fields)) own[key] = walk(fields[key], `${at}.${key}`);
    return own;
  };
  return { prototypes, file: walk(file, "file") as Record<string, unknown> };
}

/**
 * Rewrites one generated source.
 *
 * @param source The file protoc-gen-es wrote.
 * @param runtimePath The import path of `embedded_descriptor.ts` from that file.
 * @returns The rewritten source.
 */
export function embedDescriptor(source: string, runtimePath: string): string {
  const call = FILE_DESC.exec(source);
  const runtime = RUNTIME_IMPORT.exec(source);
  if (!call || !runtime) {
    throw new Error(
      "Cannot embed the descriptor: this is not a protoc-gen-es file with fileDesc()",
    );
  }
  if (call[2]) {
    throw new Error("Cannot embed the descriptor: the file imports other files");
  }
  const names = runtime[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "fileDesc");
  const unsupported = names.filter((n) => n !== "messageDesc" && n !== "enumDesc");
  if (unsupported.length > 0) {
    throw new Error(`Cannot embed the descriptor: ${unsupported.join(", ")} is not supported`);
  }
  const json = JSON.stringify(describe(fileDesc(call[1]!).proto));
  return source
    .replace(
      RUNTIME_IMPORT,
      `import { ${["embeddedFile", ...names].join(", ")} } from "${runtimePath}";`,
    )
    .replace(call[0], `embeddedFile(${JSON.stringify(json)})`);
}

async function* generatedFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* generatedFiles(path);
    else if (entry.name.endsWith("_pb.ts")) yield path;
  }
}

if (import.meta.main) {
  const [dir] = Deno.args;
  if (!dir) {
    console.error("Usage: scripts/embed_descriptors.ts <directory holding handler_base/gen>");
    Deno.exit(2);
  }
  const genRoot = dir.replace(/\/+$/, "");
  let count = 0;
  for await (const path of generatedFiles(genRoot)) {
    // From handler_base/gen/<...>/x_pb.ts back to handler_base/.
    const depth = path.slice(genRoot.length + 1).split("/").length;
    const runtimePath = `${"../".repeat(depth)}embedded_descriptor.ts`;
    await Deno.writeTextFile(path, embedDescriptor(await Deno.readTextFile(path), runtimePath));
    count++;
  }
  if (count === 0) {
    console.error(`Cannot embed descriptors: no *_pb.ts under ${genRoot}`);
    Deno.exit(1);
  }
}
