import assert from "node:assert/strict";
import { configVarNames } from "@homelab/handler-base/config";
import { permissionFlag, SERVICES } from "./table.ts";

const ROOT = new URL("../", import.meta.url);
const { permissions } = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));

for (const service of SERVICES) {
  Deno.test(`${service.name}: its permission set allows exactly the variables it reads`, async () => {
    const definition = await service.load();
    assert.equal(definition.name, service.name);
    const set = permissions[service.name];
    assert.ok(set, `deno.json has no "${service.name}" permission set`);
    assert.deepEqual(set.env, configVarNames(definition.spec), "run `deno task permissions`");
    for (const host of ["127.0.0.1", "localhost", "0.0.0.0", "nats.ai-ml.svc.cluster.local:4222"]) {
      assert.ok(set.net.includes(host), `${service.name} cannot reach ${host}`);
    }
  });

  Deno.test(`${service.name}: the entry file only documents and calls serviceMain`, async () => {
    const source = await Deno.readTextFile(new URL(service.entry, ROOT));
    const code = source.replace(/\/\*\*[\s\S]*?\*\//, "").split("\n").filter((l) => l.trim());
    assert.ok(code.length <= 4, `${service.entry} has ${code.length} lines of code`);
    assert.match(source, /@module/);
    assert.match(source, /if \(import\.meta\.main\) await serviceMain\(\w+\);/);
  });
}

for (const service of SERVICES) {
  Deno.test(`${service.name}: run without its permission set, it says in one line what to run`, async () => {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-net", new URL(service.entry, ROOT).pathname],
      clearEnv: true,
      env: { PATH: Deno.env.get("PATH") ?? "" },
      stdout: "null",
      stderr: "piped",
    }).output();
    const lines = new TextDecoder().decode(stderr).trim().split("\n");
    assert.equal(code, 77, lines.join("\n"));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0]!, new RegExp(`^Cannot start ${service.name}: no permission to read`));
    assert.ok(lines[0]!.endsWith(`deno run -P=${service.name} ${service.entry}`), lines[0] ?? "");
  });
}

Deno.test("services/table.ts prints one line per service for shell scripts", async () => {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", new URL("table.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(success);
  assert.deepEqual(
    new TextDecoder().decode(stdout).trim().split("\n"),
    SERVICES.map((s) => `${s.name} ${s.entry}`),
  );
});

Deno.test("README's services table has a row for every service of the table: entry file and run command", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const rows = readme.split("\n").filter((l) => /^\| `[a-z-]+` +\|/.test(l)).map((l) =>
    l.split("|").slice(1, -1).map((cell) => cell.trim())
  );
  for (const service of SERVICES) {
    const row = rows.find((cells) => cells[0] === `\`${service.name}\``);
    assert.ok(row, `README's services table has no row for ${service.name}`);
    assert.equal(row[1], `\`${service.entry}\``);
    assert.equal(row[3], `\`deno run ${permissionFlag(service)} ${service.entry}\``);
  }
});

/** Runs `code` with `deno eval` and the project's config; answers what it printed. */
async function loadAndPrint(code: string): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--config=${new URL("deno.json", ROOT).pathname}`, code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).trim();
}

for (const service of SERVICES) {
  // An Intl.Segmenter loads ICU's segmentation data: about 15 ms before a service is ready.
  Deno.test(`${service.name}: loading it makes no Intl.Segmenter`, async () => {
    const entry = JSON.stringify(new URL(service.entry, ROOT).href);
    const code = "let made = 0; const Segmenter = Intl.Segmenter;" +
      "Intl.Segmenter = class extends Segmenter { constructor(...a) { made++; super(...a); } };" +
      `await import(${entry}); console.log(made);`;
    assert.equal(await loadAndPrint(code), "0");
  });

  // An error made while a bundle's top level runs costs about 20 ms of start-up: V8 works out
  // the source positions of that whole top level (docs/PERFORMANCE.md, "Sixth pass").
  Deno.test(`${service.name}: loading it makes no Error`, async () => {
    const entry = JSON.stringify(new URL(service.entry, ROOT).href);
    const code = "const made = [];" +
      'for (const name of ["Error", "TypeError", "RangeError"]) {' +
      "  const Base = globalThis[name];" +
      "  globalThis[name] = class extends Base {" +
      "    constructor(...a) { super(...a); made.push(`${name}: ${a[0]}`); }" +
      "  };" +
      "}" +
      `await import(${entry}); console.log(JSON.stringify(made));`;
    assert.deepEqual(JSON.parse(await loadAndPrint(code)), []);
  });
}
