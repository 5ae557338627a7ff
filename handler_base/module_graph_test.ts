// Each entry point loads only what it needs (JSR's "minimal exports"): checked on the module
// graph that `deno info --json` reports, so a stray import fails here, not in a user's bundle.
import assert from "node:assert/strict";

const root = new URL("./", import.meta.url);
const { exports } = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));

/** The local files (relative to handler_base/) and npm packages an entry point loads. */
async function graphOf(entry: string): Promise<{ local: string[]; npm: string[] }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, root).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout));
  const local: string[] = [];
  const npm = new Set<string>();
  for (const module of info.modules as { specifier: string; npmPackage?: string }[]) {
    if (module.specifier.startsWith(root.href)) {
      local.push(module.specifier.slice(root.href.length));
    }
    const pkg = module.npmPackage ?? module.specifier.match(/^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)/)?.[1];
    if (pkg) npm.add(pkg.replace(/@[^@/]*$/, "").replace(/^(@[^/]+\/[^/@]+).*/, "$1"));
  }
  return { local: local.sort(), npm: [...npm].sort() };
}

Deno.test("config loads nothing but the leaf helpers it uses (log levels, text length)", async () => {
  const { local, npm } = await graphOf(exports["./config"]);
  assert.deepEqual(local, ["config.ts", "iso_time.ts", "log.ts", "text.ts"]);
  assert.deepEqual(npm, []);
});

Deno.test("log, async and text load nothing else (log: its timestamp helper)", async () => {
  const own: Record<string, string[]> = { "./log": ["iso_time.ts"] };
  for (const entry of ["./log", "./async", "./text"]) {
    const { local, npm } = await graphOf(exports[entry]);
    const expected = [exports[entry].slice(2), ...(own[entry] ?? [])].sort();
    assert.deepEqual([local, npm], [expected, []], entry);
  }
});

Deno.test("no client module loads NATS or the handler runtime", async () => {
  const clients = Object.keys(exports).filter((name) => name.startsWith("./clients/"));
  assert.ok(clients.length >= 8);
  for (const entry of clients) {
    const { local, npm } = await graphOf(exports[entry]);
    assert.ok(!npm.some((p) => p.startsWith("@nats-io/")), `${entry} loads ${npm}`);
    const runtime = local.filter((f) => !f.startsWith("clients/") && !f.startsWith("gen/"));
    for (const file of runtime) {
      assert.ok(
        [
          "async.ts",
          "config.ts",
          "embedded_descriptor.ts",
          "errors.ts",
          "iso_time.ts",
          "log.ts",
          "text.ts",
        ].includes(file),
        `${entry} loads ${file}`,
      );
    }
  }
});

Deno.test("messages and errors load protobuf only, and not every well-known type", async () => {
  for (const entry of ["./messages", "./errors"]) {
    const { npm } = await graphOf(exports[entry]);
    assert.deepEqual(npm, ["@bufbuild/protobuf"], entry);
  }
  // Code from @bufbuild/protobuf's main entry only: its "codegenv2" and "wkt" entries decode
  // descriptor.proto when imported, which embedded_descriptor.ts exists to avoid (~20 ms).
  const { npmEntries } = await staticGraphOf(new URL(exports["./messages"], root).pathname);
  assert.deepEqual(npmEntries, ["@bufbuild/protobuf"]);
});

/**
 * The npm packages and Node built-ins (`node:net`) a module loads when it is imported: its static
 * imports, followed through local files, without the `import()` calls that load code only when it
 * is used. (What CommonJS npm code `require`s is not in the graph; the packages are.)
 */
async function staticGraphOf(
  path: string,
): Promise<{ npm: string[]; npmEntries: string[]; node: string[] }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout));
  type Dependency = { isDynamic?: boolean; code?: { specifier?: string } };
  type Module = {
    specifier: string;
    kind?: string;
    npmPackage?: string;
    dependencies?: Dependency[];
  };
  const modules = new Map<string, Module>(
    (info.modules as Module[]).map((module) => [module.specifier, module]),
  );
  const redirects: Record<string, string> = info.redirects ?? {};
  const seen = new Set<string>();
  const npm = new Set<string>();
  const npmEntries = new Set<string>();
  const node = new Set<string>();
  const visit = (specifier: string) => {
    const resolved = redirects[specifier] ?? specifier;
    if (seen.has(resolved)) return;
    seen.add(resolved);
    const module = modules.get(resolved);
    if (!module) return;
    if (module.kind === "node") {
      node.add(module.specifier);
      return;
    }
    if (module.npmPackage) {
      npm.add(module.npmPackage.replace(/@[^@/]*$/, "").replace(/^(@[^/]+\/[^/@]+).*/, "$1"));
      npmEntries.add(module.specifier.replace(/^npm:\/?(@?[^@]+)@[^/]*/, "$1"));
      return;
    }
    for (const dependency of module.dependencies ?? []) {
      if (!dependency.isDynamic && dependency.code?.specifier) visit(dependency.code.specifier);
    }
  };
  visit(info.roots[0]);
  return { npm: [...npm].sort(), npmEntries: [...npmEntries].sort(), node: [...node].sort() };
}

/** The npm packages a module loads when it is imported (see {@linkcode staticGraphOf}). */
async function staticNpmOf(path: string): Promise<string[]> {
  return (await staticGraphOf(path)).npm;
}

Deno.test("a core-mode service loads no JetStream or key-value code until it uses them", async () => {
  // run.ts imports streams.ts and consumer.ts only to ensure streams or consume in JetStream mode.
  const core = [
    "@bufbuild/protobuf",
    "@nats-io/nats-core",
    "@opentelemetry/api",
  ];
  assert.deepEqual(await staticNpmOf(new URL(exports["./main"], root).pathname), core);
  const services = new URL("../services/", root);
  for (const entry of ["chat.ts", "tts.ts"]) {
    assert.deepEqual(await staticNpmOf(new URL(entry, services).pathname), core, entry);
  }
  // pipeline-bridge loads the Kubernetes client only when it talks to the API.
  const bridge = await staticNpmOf(new URL("pipeline_bridge.ts", services).pathname);
  assert.ok(!bridge.includes("@kubernetes/client-node"), `${bridge}`);
  assert.ok(!bridge.includes("@nats-io/jetstream"), `${bridge}`);
  // The full graph still has them: this test would not notice a static import otherwise.
  const { npm } = await graphOf(exports["./main"]);
  assert.ok(npm.includes("@nats-io/jetstream"), `${npm}`);
});

Deno.test("core services connect over the Deno transport: no transport-node, no Node sockets", async () => {
  // nats_transport.ts replaced @nats-io/transport-node, which loaded node:net, node:tls and
  // node:dns through Deno's Node layer (docs/PERFORMANCE.md, issue 17). nats-core itself is
  // CommonJS but requires no Node built-in.
  const services = new URL("../services/", root);
  const entries = [
    new URL(exports["./main"], root).pathname,
    new URL(exports["./natsutil"], root).pathname,
    new URL("chat.ts", services).pathname,
    new URL("tts.ts", services).pathname,
  ];
  for (const entry of entries) {
    const { npm, node } = await staticGraphOf(entry);
    assert.ok(!npm.some((p) => p.startsWith("@nats-io/transport-")), `${entry} loads ${npm}`);
    const sockets = node.filter((m) => /^node:(net|tls|dns|http|https)(\/|$)/.test(m));
    assert.deepEqual(sockets, [], entry);
  }
  const { local } = await graphOf(exports["./natsutil"]);
  assert.ok(local.includes("nats_transport.ts"), `${local}`);
});
