/**
 * Bundles every service of `services/table.ts` (and the streams Job,
 * `scripts/ensure_streams.ts`) into one minified ES module each,
 * `<out>/<name>.js`: the artifact the image compiles and runs. A bundle loads
 * no npm resolution and no TypeScript at start, which makes it lighter and
 * faster to start than `deno run services/<x>.ts` (docs/PERFORMANCE.md,
 * issue 17).
 *
 * Each bundle is `deno bundle --platform deno --minify` of the entry, then:
 *
 * - the bundler's `createRequire` prelude (an `import` of `node:module`, which
 *   loads Node's module layer at start) is replaced by `var X=void 0;` when
 *   every other use of its variable `X` sits behind a `typeof X<"u"` (or
 *   `typeof X !== "undefined"`) guard, so that the guarded code takes the
 *   path it takes where `require` does not exist; when one use is not guarded
 *   (pipeline-bridge's Kubernetes client requires Node modules) the prelude
 *   stays and the script says why ({@linkcode stripRequirePrelude});
 * - no path of the package cache and no package registry's host name may
 *   remain: comments holding one are dropped, and one left in code fails the
 *   bundle ({@linkcode stripRegistryLeaks});
 * - the bundler's module wrappers become parenthesised functions, which V8
 *   compiles with the bundle, so that its code cache holds them
 *   (`eager_inits.ts`; pipeline-bridge starts in about two thirds of the
 *   time).
 *
 * The output depends only on the sources and the lock file: the same inputs
 * give the same bytes.
 *
 * Run: `deno task bundle [--out=dist] [service ...]` (all when none is named).
 * Run a bundle with its service's permission set and the project's config
 * (`-P` reads the set from it): `deno run -P=tts-module --config deno.json
 * dist/tts-module.js`; `scripts/compile.sh` and the `Dockerfile` compile it.
 *
 * @example Strip the prelude of a minified bundle whose only use is guarded
 * ```ts
 * import assert from "node:assert/strict";
 * import { stripRequirePrelude } from "./bundle.ts";
 *
 * const source = 'import{createRequire as __deno_internal_createRequire} from "node:module";' +
 *   "var r=__deno_internal_createRequire(import.meta.url);" +
 *   'typeof r<"u"&&(c=r("node:crypto"));';
 * const result = stripRequirePrelude(source);
 * assert.equal(result.stripped, true);
 * assert.equal(result.source, 'var r=void 0;typeof r<"u"&&(c=r("node:crypto"));');
 * ```
 *
 * @module
 */
import { eagerModuleInits } from "./eager_inits.ts";
import { SERVICES } from "../services/table.ts";

/** One thing to bundle: a service of the table, or the streams Job. */
export interface BundleTarget {
  /** Its name: the permission set and the bundle's file name. */
  readonly name: string;
  /** The entry file, relative to the repository root. */
  readonly entry: string;
}

/** Every service of `services/table.ts`, then the streams Job (`ensure-streams`). */
export const BUNDLE_TARGETS: readonly BundleTarget[] = [
  ...SERVICES.map(({ name, entry }) => ({ name, entry })),
  { name: "ensure-streams", entry: "scripts/ensure_streams.ts" },
];

/** What {@linkcode stripRequirePrelude} did. */
export interface PreludeResult {
  /** The source, without the prelude when it was safe to remove. */
  readonly source: string;
  /** Whether the prelude was removed. */
  readonly stripped: boolean;
  /** Why it was kept (or that there was none); empty when removed. */
  readonly reason: string;
}

const PRELUDE_IMPORT =
  /import\s*\{\s*createRequire\s+as\s+__deno_internal_createRequire\s*\}\s*from\s*["']node:module["']\s*;?/;
const PRELUDE_VAR =
  /var\s+([\w$]+)\s*=\s*__deno_internal_createRequire\s*\(\s*import\.meta\.url\s*\)\s*;?/;

/**
 * Removes the bundler's `createRequire` prelude (the static import of
 * `node:module` and `var X = createRequire(import.meta.url)`) when every
 * remaining use of `X` is guarded by `typeof X<"u"` or
 * `typeof X !== "undefined"`, minified or not: an `&&` operand, an `if`
 * block or a `?` branch after the test. `X` stays declared as `void 0`, so
 * the guards see no `require` and take their other path. Anything else (a
 * use outside a guard, a guard it cannot read) keeps the prelude.
 *
 * @param source A bundle.
 * @returns The bundle, and whether and why the prelude went or stayed.
 *
 * @example A use outside a guard keeps the prelude
 * ```ts
 * import assert from "node:assert/strict";
 * import { stripRequirePrelude } from "./bundle.ts";
 *
 * const source = 'import { createRequire as __deno_internal_createRequire } from "node:module";\n' +
 *   "var __require = __deno_internal_createRequire(import.meta.url);\n" +
 *   'var fs = __require("node:fs");\n';
 * const result = stripRequirePrelude(source);
 * assert.equal(result.stripped, false);
 * assert.equal(result.source, source);
 * assert.match(result.reason, /__require\("node:fs"\)/);
 * ```
 */
export function stripRequirePrelude(source: string): PreludeResult {
  const importMatch = PRELUDE_IMPORT.exec(source);
  const varMatch = PRELUDE_VAR.exec(source);
  if (!importMatch || !varMatch) {
    return { source, stripped: false, reason: "no createRequire prelude" };
  }
  const name = varMatch[1]!;
  // Both statements out; the declaration comes back where it was, as `void 0`.
  const [first, second] = importMatch.index < varMatch.index
    ? [importMatch, varMatch]
    : [varMatch, importMatch];
  const replacement = (m: RegExpExecArray) => (m === varMatch ? `var ${name}=void 0;` : "");
  const rest = source.slice(0, first.index) + replacement(first) +
    source.slice(first.index + first[0].length, second.index) + replacement(second) +
    source.slice(second.index + second[0].length);
  const unguarded = unguardedUses(rest, name, rest.indexOf(`var ${name}=void 0;`) + 4);
  if (unguarded.length > 0) {
    return {
      source,
      stripped: false,
      reason: `${unguarded.length} use(s) of ${name} not behind a typeof guard, the first in ` +
        `"${excerpt(rest, unguarded[0]!)}"`,
    };
  }
  return { source: rest, stripped: true, reason: "" };
}

/** A guard test: `typeof X<"u"`, `typeof X !== "undefined"`, `typeof X != 'undefined'`. */
function guardAt(source: string, index: number, name: string): number | undefined {
  const guard = new RegExp(
    `^typeof\\s+${escapeRegExp(name)}\\s*(?:<\\s*["']u["']|!==?\\s*["']undefined["'])`,
  );
  const match = guard.exec(source.slice(index, index + name.length + 40));
  return match ? index + match[0].length : undefined;
}

/** The positions of the uses of `name` that no guard covers (the declaration's, `declared`, aside). */
function unguardedUses(source: string, name: string, declared: number): number[] {
  const use = new RegExp(`(?<![\\w$.])${escapeRegExp(name)}(?![\\w$])`, "g");
  const regions: [number, number][] = [];
  const unguarded: number[] = [];
  for (const match of source.matchAll(use)) {
    const at = match.index;
    if (at === declared) continue;
    // A range of a regular expression's character class, as in `/[A-Za-z]/` for a name `Za`:
    // in code it could only be arithmetic on the function, never a call of it.
    if (/[[-]/.test(source[at - 1] ?? "") && source[at + name.length] === "-") continue;
    // A class member's name, not the variable: `static jc;` (a field of nats.js that the
    // minifier's name for the function may match; `static` is reserved in a module's code).
    if (/\bstatic\s+$/.test(source.slice(Math.max(0, at - 12), at))) continue;
    if (regions.some(([start, end]) => at >= start && at < end)) continue;
    const typeofAt = source.lastIndexOf("typeof", at);
    const guardEnd = typeofAt >= 0 && /^typeof\s+$/.test(source.slice(typeofAt, at))
      ? guardAt(source, typeofAt, name)
      : undefined;
    if (guardEnd === undefined) {
      unguarded.push(at);
      continue;
    }
    const region = guardedRegion(source, guardEnd);
    if (region) regions.push(region);
  }
  return unguarded;
}

/**
 * The span of code a guard ending at `from` covers: the parenthesised operand
 * of `&&(`, the block of `if (guard) {`, or the branch of `? ... :`.
 */
function guardedRegion(source: string, from: number): [number, number] | undefined {
  const after = source.slice(from, from + 8);
  let open: number;
  let close: string;
  if (/^\s*&&\s*\(/.test(after)) {
    open = source.indexOf("(", from);
    close = ")";
  } else if (/^\s*\)\s*\{/.test(after)) {
    open = source.indexOf("{", from);
    close = "}";
  } else if (/^\s*\?/.test(after)) {
    open = source.indexOf("?", from);
    close = ":";
  } else {
    return undefined;
  }
  const end = matchingClose(source, open, close);
  return end === undefined ? undefined : [open, end];
}

/**
 * The index of the `close` that ends the bracket (or `?` branch) opened at
 * `open`, skipping strings, template literals and comments; undefined when
 * the code cannot be read to the end.
 */
function matchingClose(source: string, open: number, close: string): number | undefined {
  const stack: string[] = [];
  const pairs: Record<string, string> = { "(": ")", "[": "]", "{": "}" };
  for (let i = open + 1; i < source.length; i++) {
    const c = source[i]!;
    if (c === '"' || c === "'") {
      i = skipQuoted(source, i, c);
    } else if (c === "`") {
      return undefined; // Template literals in a guarded region: too much to read, keep the prelude.
    } else if (c === "/" && source[i + 1] === "/") {
      i = source.indexOf("\n", i);
      if (i < 0) return undefined;
    } else if (c === "/" && source[i + 1] === "*") {
      i = source.indexOf("*/", i + 2) + 1;
      if (i <= 0) return undefined;
    } else if (c in pairs) {
      stack.push(pairs[c]!);
    } else if (stack.length === 0 && c === close) {
      return i;
    } else if (c === ")" || c === "]" || c === "}") {
      if (stack.pop() !== c) return undefined;
    }
  }
  return undefined;
}

function skipQuoted(source: string, start: number, quote: string): number {
  for (let i = start + 1; i < source.length; i++) {
    if (source[i] === "\\") i++;
    else if (source[i] === quote) return i;
  }
  return source.length;
}

function escapeRegExp(text: string): string {
  return text.replace(/[$]/g, "\\$");
}

function excerpt(source: string, at: number): string {
  return source.slice(Math.max(0, at - 20), at + 30);
}

/**
 * What a bundle must not hold: a path of the package cache (`.../npm/...`) or
 * a registry's host name (`registry.` followed by a domain).
 */
const LEAK = /(?:[\w.~-]*\/)+npm\/[\w@.~\/-]*|\bregistry\.[\w-]+(?:\.[\w-]+)+/g;

/**
 * The package-cache paths and registry host names a bundle holds.
 *
 * @param source A bundle.
 * @returns Each occurrence, in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findRegistryLeaks } from "./bundle.ts";
 *
 * assert.deepEqual(findRegistryLeaks("var a=1;"), []);
 * assert.equal(findRegistryLeaks("// ../deno/npm/example/pkg/1.0.0/index.js").length, 1);
 * ```
 */
export function findRegistryLeaks(source: string): string[] {
  return [...source.matchAll(LEAK)].map((m) => m[0]);
}

/**
 * Drops the comments (whole `//` lines, `/* ... *\/` blocks) that hold a
 * package-cache path or a registry host name, as the bundler's file-name
 * comments do.
 *
 * @param source A bundle.
 * @returns The bundle without those comments.
 * @throws {Error} When one remains outside a comment: code cannot be edited safely.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stripRegistryLeaks } from "./bundle.ts";
 *
 * const source = "// ../../deno/npm/example/pkg/1.0.0/index.js\nvar a = 1;\n";
 * assert.equal(stripRegistryLeaks(source), "var a = 1;\n");
 * assert.throws(() => stripRegistryLeaks('var u="/cache/npm/pkg";'), /Cannot bundle/);
 * ```
 */
export function stripRegistryLeaks(source: string): string {
  const leaks = (text: string) => findRegistryLeaks(text).length > 0;
  const stripped = source
    .replace(/^[ \t]*\/\/[^\n]*\n?/gm, (line) => (leaks(line) ? "" : line))
    .replace(/\/\*[\s\S]*?\*\//g, (block) => (leaks(block) ? "" : block));
  const left = findRegistryLeaks(stripped);
  if (left.length > 0) {
    throw new Error(
      `Cannot bundle: package-cache paths or registry hosts remain in code: ${
        left.slice(0, 3).join(", ")
      }`,
    );
  }
  return stripped;
}

/** One bundle written by {@linkcode bundleTarget}. */
export interface BundleResult {
  /** The target's name. */
  readonly name: string;
  /** The bundle's path. */
  readonly path: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** Whether the `createRequire` prelude (a static `node:module` import) was removed. */
  readonly preludeRemoved: boolean;
  /** Why the prelude stayed; empty when removed. */
  readonly note: string;
  /** How many module wrappers compile with the bundle (`eager_inits.ts`). */
  readonly eagerWrappers: number;
}

/** Options of {@linkcode bundleTarget}. */
export interface BundleOptions {
  /** The directory to write `<name>.js` into (created if missing). */
  readonly outDir: string;
  /** The repository root (its `deno.json` and lock file resolve the imports). @default this repository */
  readonly root?: string;
}

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * Bundles one target into `<outDir>/<name>.js`: `deno bundle --platform deno
 * --minify`, then {@linkcode stripRequirePrelude},
 * {@linkcode stripRegistryLeaks} and `eagerModuleInits` (`eager_inits.ts`).
 *
 * @param target The service (or Job) to bundle.
 * @param options Where to write it.
 * @returns What was written.
 * @throws {Error} When `deno bundle` fails (with its output) or a registry leak remains.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it bundles a whole service (seconds); scripts/bundle_test.ts does.
 * import { BUNDLE_TARGETS, bundleTarget } from "./bundle.ts";
 *
 * const result = await bundleTarget(BUNDLE_TARGETS[0]!, { outDir: "dist" });
 * console.log(result.path, result.preludeRemoved);
 * ```
 */
export async function bundleTarget(
  target: BundleTarget,
  options: BundleOptions,
): Promise<BundleResult> {
  const root = options.root ?? ROOT;
  await Deno.mkdir(options.outDir, { recursive: true });
  const path = `${options.outDir.replace(/\/$/, "")}/${target.name}.js`;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--frozen",
      "--platform=deno",
      "--minify",
      `--config=${root}deno.json`,
      `--output=${path}`,
      `${root}${target.entry}`,
    ],
    cwd: root,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `Cannot bundle ${target.name} (${target.entry}): deno bundle exited with ${code}\n${
        new TextDecoder().decode(stderr)
      }`,
    );
  }
  const prelude = stripRequirePrelude(await Deno.readTextFile(path));
  const eager = eagerModuleInits(stripRegistryLeaks(prelude.source));
  await Deno.writeTextFile(path, eager.source);
  return {
    name: target.name,
    path,
    bytes: new TextEncoder().encode(eager.source).length,
    preludeRemoved: prelude.stripped,
    note: prelude.reason,
    eagerWrappers: eager.wrapped,
  };
}

/**
 * The targets named (all when none), in the order of {@linkcode BUNDLE_TARGETS}.
 *
 * @param names Service names.
 * @returns Their targets.
 * @throws {Error} When a name is not a target.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selectTargets } from "./bundle.ts";
 *
 * assert.deepEqual(selectTargets(["tts-module"]).map((t) => t.entry), ["services/tts.ts"]);
 * assert.throws(() => selectTargets(["nope"]), /Cannot bundle nope/);
 * ```
 */
export function selectTargets(names: readonly string[]): BundleTarget[] {
  for (const name of names) {
    if (!BUNDLE_TARGETS.some((t) => t.name === name)) {
      const known = BUNDLE_TARGETS.map((t) => t.name).join(", ");
      throw new Error(`Cannot bundle ${name}: not a service (one of ${known})`);
    }
  }
  return BUNDLE_TARGETS.filter((t) => names.length === 0 || names.includes(t.name));
}

/**
 * Bundles the targets named (all when none) into `outDir`, one after the other.
 *
 * @param outDir Where to write the bundles.
 * @param names Service names.
 * @returns What was written, in order.
 * @throws {Error} When a name is unknown or a bundle fails.
 *
 * @example
 * ```ts ignore
 * // Not run as a doc test: it bundles every service (seconds); scripts/bundle_test.ts does.
 * import { bundleAll } from "./bundle.ts";
 *
 * for (const r of await bundleAll("dist")) console.log(r.name, r.bytes);
 * ```
 */
export async function bundleAll(
  outDir: string,
  names: readonly string[] = [],
): Promise<BundleResult[]> {
  const results: BundleResult[] = [];
  for (const target of selectTargets(names)) {
    results.push(await bundleTarget(target, { outDir }));
  }
  return results;
}

if (import.meta.main) {
  const outDir = Deno.args.find((a) => a.startsWith("--out="))?.slice(6) || "dist";
  const unknown = Deno.args.filter((a) => a.startsWith("-") && !a.startsWith("--out="));
  if (unknown.length > 0) {
    console.error(
      `Cannot bundle: unknown option ${unknown.join(" ")} (usage: [--out=dir] [service ...])`,
    );
    Deno.exit(2);
  }
  const names = Deno.args.filter((a) => !a.startsWith("-"));
  try {
    for (const r of await bundleAll(outDir, names)) {
      const node = r.preludeRemoved ? "no node:module" : `keeps node:module: ${r.note}`;
      console.log(
        `${r.name.padEnd(16)} ${
          (r.bytes / 1024).toFixed(0).padStart(6)
        } KiB  ${r.path}  (${node}; ` +
          `${r.eagerWrappers} module wrappers compiled with it)`,
      );
    }
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
