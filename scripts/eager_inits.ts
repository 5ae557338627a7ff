/**
 * Makes the bundler's module wrappers compile with the bundle, so that V8's
 * code cache holds them.
 *
 * A minified bundle runs most modules inside wrappers the bundler writes:
 * `__esm` (an ES module initialised on first use, `var i=M(()=>{...})`) and
 * `__commonJS` (a CommonJS module, `var c=L((e,t)=>{...})`). V8 compiles an
 * arrow function only when it is first called, and these are first called
 * after the bundle's code cache was written (when the main module is
 * compiled), so every start parses and compiles them again: for
 * pipeline-bridge, whose Kubernetes client loads through them, about a third
 * of its CPU to ready (docs/PERFORMANCE.md, "Fifth pass"). V8 compiles a parenthesised
 * `function` expression with its script instead, so
 * {@linkcode eagerModuleInits} rewrites each wrapper's argument
 * `(a,b)=>{body}` as `(function(a,b){body})`. Inner functions stay lazy.
 *
 * The rewrite keeps behaviour: the wrappers call their argument as a plain
 * function in strict code, where `this` is `undefined` either way; an
 * argument whose own scope reads `this`, `arguments`, `new.target` or
 * `super` (which an arrow takes from outside) is left as it is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eagerModuleInits } from "./eager_inits.ts";
 *
 * const bundle = "var M=(r,e)=>()=>(r&&(e=r(r=0)),e);var a,i=M(()=>{a=1});i();";
 * const result = eagerModuleInits(bundle);
 * assert.equal(result.wrapped, 1);
 * assert.equal(result.source, "var M=(r,e)=>()=>(r&&(e=r(r=0)),e);var a,i=M((function(){a=1}));i();");
 * ```
 *
 * @module
 */
import { parse } from "acorn";

/** What {@linkcode eagerModuleInits} did. */
export interface EagerInitsResult {
  /** The bundle, rewritten. */
  readonly source: string;
  /** How many wrappers' arguments became parenthesised functions. */
  readonly wrapped: number;
  /** The wrapper helpers found, by their (minified) names. */
  readonly helpers: readonly string[];
}

interface AstNode {
  readonly type: string;
  readonly start: number;
  readonly end: number;
  readonly [key: string]: unknown;
}

/** esbuild's `__esm` and `__commonJS`, minified: `(r,e)=>()=>...` with the parameters renamed. */
const HELPER_SHAPES = [
  /^\(([\w$]+),([\w$]+)\)=>\(\)=>\(\1&&\(\2=\1\(\1=0\)\),\2\)$/,
  /^\(([\w$]+),([\w$]+)\)=>\(\)=>\(\2\|\|\1\(\(\2=\{exports:\{\}\}\)\.exports,\2\),\2\.exports\)$/,
];

/** Scopes of their own for `this` and `arguments`: what an arrow inside does not see through. */
const OWN_SCOPES = new Set(["FunctionExpression", "FunctionDeclaration", "StaticBlock"]);
const OUTER_BINDINGS = new Set(["ThisExpression", "Super", "MetaProperty"]);

/**
 * Rewrites the argument of every call of the bundle's `__esm` and
 * `__commonJS` helpers from an arrow function into a parenthesised `function`
 * expression (see the module doc). A bundle without the helpers comes back
 * unchanged.
 *
 * @param source A minified bundle (an ES module).
 * @returns The rewritten bundle, and what was rewritten.
 * @throws {SyntaxError} When the source does not parse as an ES module.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eagerModuleInits } from "./eager_inits.ts";
 *
 * // An argument that reads `this` keeps the arrow's meaning of it.
 * const bundle = "var M=(r,e)=>()=>(r&&(e=r(r=0)),e);var i=M(()=>{x=this});";
 * assert.equal(eagerModuleInits(bundle).wrapped, 0);
 * ```
 */
export function eagerModuleInits(source: string): EagerInitsResult {
  const program = parse(source, { ecmaVersion: "latest", sourceType: "module" }) as unknown;
  const helpers = new Set<string>();
  for (const statement of (program as { body: AstNode[] }).body) {
    if (statement.type !== "VariableDeclaration") continue;
    for (const declarator of statement.declarations as AstNode[]) {
      const id = declarator.id as AstNode & { name?: string };
      const init = declarator.init as AstNode | null;
      if (id.type !== "Identifier" || !init) continue;
      const text = source.slice(init.start, init.end);
      if (HELPER_SHAPES.some((shape) => shape.test(text))) helpers.add(id.name!);
    }
  }
  const edits: { start: number; end: number; text: string }[] = [];
  walk(program as AstNode, (node) => {
    if (node.type !== "CallExpression") return;
    const callee = node.callee as AstNode & { name?: string };
    const args = node.arguments as AstNode[];
    if (callee.type !== "Identifier" || !helpers.has(callee.name!) || args.length !== 1) return;
    const arrow = args[0]!;
    const body = arrow.body as AstNode;
    if (arrow.type !== "ArrowFunctionExpression" || arrow.async || body.type !== "BlockStatement") {
      return;
    }
    if (readsOuterBinding(body)) return;
    const params = (arrow.params as AstNode[]).map((p) => source.slice(p.start, p.end)).join(",");
    edits.push({ start: arrow.start, end: body.start, text: `(function(${params})` });
    edits.push({ start: arrow.end, end: arrow.end, text: ")" });
  });
  edits.sort((a, b) => b.start - a.start);
  let rewritten = source;
  for (const edit of edits) {
    rewritten = rewritten.slice(0, edit.start) + edit.text + rewritten.slice(edit.end);
  }
  return { source: rewritten, wrapped: edits.length / 2, helpers: [...helpers] };
}

/** Whether `node` reads `this`, `arguments`, `super` or `new.target` of the scope around it. */
function readsOuterBinding(node: AstNode): boolean {
  let found = false;
  walk(
    node,
    (inner) => {
      if (OUTER_BINDINGS.has(inner.type)) found = true;
      if (inner.type === "Identifier" && inner.name === "arguments") found = true;
    },
    (parent, key) =>
      !OWN_SCOPES.has(parent.type) && !(parent.type === "PropertyDefinition" && key === "value"),
  );
  return found;
}

/** Visits `node` and every node under it, entering a child only where `enters(parent, key)`. */
function walk(
  node: AstNode,
  visit: (node: AstNode) => void,
  enters: (parent: AstNode, key: string) => boolean = () => true,
): void {
  visit(node);
  for (const [key, value] of Object.entries(node)) {
    if (!enters(node, key)) continue;
    if (Array.isArray(value)) {
      for (const item of value) if (isNode(item)) walk(item, visit, enters);
    } else if (isNode(value)) {
      walk(value, visit, enters);
    }
  }
}

function isNode(value: unknown): value is AstNode {
  return typeof value === "object" && value !== null &&
    typeof (value as { type?: unknown }).type === "string";
}
