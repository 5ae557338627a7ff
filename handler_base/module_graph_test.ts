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
  assert.deepEqual(local, ["config.ts", "log.ts", "text.ts"]);
  assert.deepEqual(npm, []);
});

Deno.test("log, async and text load nothing else", async () => {
  for (const entry of ["./log", "./async", "./text"]) {
    const { local, npm } = await graphOf(exports[entry]);
    assert.deepEqual([local, npm], [[exports[entry].slice(2)], []], entry);
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
        ["async.ts", "config.ts", "errors.ts", "log.ts", "text.ts"].includes(file),
        `${entry} loads ${file}`,
      );
    }
  }
});

Deno.test("messages and errors load protobuf only", async () => {
  for (const entry of ["./messages", "./errors"]) {
    const { npm } = await graphOf(exports[entry]);
    assert.deepEqual(npm, ["@bufbuild/protobuf"], entry);
  }
});
