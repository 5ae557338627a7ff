import assert from "node:assert/strict";
import { eagerModuleInits } from "./eager_inits.ts";

// esbuild's helpers as its minifier writes them (parameter names vary from bundle to bundle).
const ESM = "var M=(r,e)=>()=>(r&&(e=r(r=0)),e);";
const CJS = "var L=(i,n)=>()=>(n||i((n={exports:{}}).exports,n),n.exports);";

/** Runs `source` as an ES module and answers what it exported as `result`. */
async function run(source: string): Promise<unknown> {
  const url = `data:text/javascript;base64,${btoa(source)}`;
  return (await import(url)).result;
}

Deno.test("eagerModuleInits: both helpers' arguments become parenthesised functions that behave the same", async () => {
  const bundle = ESM + CJS +
    "var log=[],a,i=M(()=>{log.push('esm');a=function(){return this}.call(7)});" +
    "var c=L((x,m)=>{log.push('cjs');x.n=log.length;m.exports.f=function(){return typeof this}});" +
    "log.push('top');i();i();var k=c();c();export var result=[...log,a,k.n,k.f()];";
  const eager = eagerModuleInits(bundle);
  assert.deepEqual([...eager.helpers].sort(), ["L", "M"]);
  assert.equal(eager.wrapped, 2);
  assert.ok(eager.source.includes("M((function(){log.push('esm')"), eager.source);
  assert.ok(eager.source.includes("L((function(x,m){log.push('cjs')"), eager.source);
  // Inner functions stay as they were.
  assert.ok(eager.source.includes("m.exports.f=function(){return typeof this}})"), eager.source);
  const expected = ["top", "esm", "cjs", 7, 3, "object"];
  assert.deepEqual(await run(bundle), expected);
  assert.deepEqual(await run(eager.source), expected);
});

Deno.test("eagerModuleInits: an argument that reads the scope's this, arguments, super or new.target stays an arrow", () => {
  for (
    const body of [
      "x=this",
      "x=arguments.length",
      "x=()=>this",
      "class A{static[this.k]=1}",
      "class B extends (arguments[0]){}",
    ]
  ) {
    const bundle = `${ESM}var i=M(()=>{${body}});`;
    const eager = eagerModuleInits(bundle);
    assert.equal(eager.wrapped, 0, body);
    assert.equal(eager.source, bundle, body);
  }
  // Where a scope of its own reads them, they are not the wrapper's: the rewrite goes ahead.
  for (
    const body of [
      "f=function(){return this}",
      "g=function(){return arguments}",
      "class A{m(){return this}static{this.s=1}x=this}",
      "function h(){return new.target}",
    ]
  ) {
    assert.equal(eagerModuleInits(`${ESM}var i=M(()=>{${body}});`).wrapped, 1, body);
  }
});

Deno.test("eagerModuleInits: other calls, async and expression arrows, and bundles without the helpers stay as they are", () => {
  const others = `${ESM}var i=M(async()=>{await 0}),j=M(()=>0),k=N(()=>{}),l=M(()=>{},1);`;
  assert.deepEqual(eagerModuleInits(others), { source: others, wrapped: 0, helpers: ["M"] });
  // A look-alike helper that is not esbuild's is not taken for one.
  const lookalike = "var M=(r,e)=>()=>(r&&(e=r(r=1)),e);var i=M(()=>{x=1});";
  assert.deepEqual(eagerModuleInits(lookalike), { source: lookalike, wrapped: 0, helpers: [] });
  assert.throws(() => eagerModuleInits("var = ;"), SyntaxError);
});
