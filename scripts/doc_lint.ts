/**
 * `deno doc --lint` over every entry point of the package, failing on every
 * finding but one kind: `private-type-ref` to a type of an npm dependency that
 * our public API exposes on purpose. Deno 2.9 reports those although the types
 * are public in their own package (denoland/deno#27364, fixed after 2.9.6);
 * re-exporting them makes the linter check the dependency's own declarations
 * instead. The list below names each tolerated type, so a new exposure is a
 * conscious change.
 *
 * Run: `deno run --allow-read --allow-run=deno scripts/doc_lint.ts`
 *
 * @module
 */

/** Types of npm dependencies that the public API exposes on purpose. */
const EXPOSED_DEPENDENCY_TYPES = new Set([
  // @bufbuild/protobuf: generated schemas and messages
  "DescMessage",
  "Empty",
  "EmptyJson",
  "GenEnum",
  "GenFile",
  "GenMessage",
  "Message",
  "MessageInitShape",
  "MessageShape",
  // @opentelemetry/api: spans and metrics
  "Attributes",
  "AttributeValue",
  "Context",
  "Counter",
  "Histogram",
  "Meter",
  "MeterProvider",
  "Span",
  "SpanContext",
  "Tracer",
  "TracerProvider",
  "UpDownCounter",
]);

const root = new URL("../handler_base/", import.meta.url);
const { exports } = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
const entryPoints = Object.values(exports as Record<string, string>).map((path) =>
  new URL(path, root).pathname
);
const { code, stdout, stderr } = await new Deno.Command("deno", {
  args: ["doc", "--lint", ...entryPoints],
  env: { NO_COLOR: "1" },
}).output();
const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
const findings = output.split(/\n(?=error\[)/).filter((block) => block.startsWith("error["));
const unexpected = findings.filter((block) => {
  const match = block.match(/^error\[private-type-ref\]: .* references private type '(\w+)'/);
  return !(match && EXPOSED_DEPENDENCY_TYPES.has(match[1]!));
});
for (const block of unexpected) console.error(block.trimEnd() + "\n");
if (code !== 0 && findings.length === 0) {
  console.error(output);
  console.error("deno doc --lint failed without findings to report");
  Deno.exit(1);
}
console.log(
  `deno doc --lint: ${entryPoints.length} entry points, ${unexpected.length} findings` +
    ` (${findings.length - unexpected.length} tolerated references to dependency types)`,
);
if (unexpected.length > 0) Deno.exit(1);
