/**
 * The Dockerfile's code-cache step. No Docker or `deno compile` runtime runs here, so this checks
 * what can be: that the image looks for the cache where the build wrote it (same binary name, same
 * TMPDIR), and that the step's shell waits for the file, stops the binary and warns when no cache
 * appears, run under `/bin/sh` with a stand-in for the binary; and that the image sets the same
 * glibc settings as the Deployments.
 */
import assert from "node:assert/strict";
import { imageEnv } from "../bench/perf/services.ts";
import { MALLOC_ENV, runtimeEnv } from "./manifests.ts";
import { SERVICES } from "../services/table.ts";

const DOCKERFILE = await Deno.readTextFile(new URL("../Dockerfile", import.meta.url));

/** The RUN instruction that starts with `prefix`, continuation lines joined. */
function runInstruction(prefix: string): string {
  const joined = DOCKERFILE.replace(/\\\n/g, "");
  const line = joined.split("\n").find((l) => l.startsWith(`RUN ${prefix}`));
  assert.ok(line, `the Dockerfile has no RUN ${prefix}`);
  return line.slice(4);
}

Deno.test("the image reads the code cache where the build wrote it", () => {
  const compile = runInstruction("deno compile");
  const built = compile.match(/--output (\S+)/)?.[1];
  assert.equal(built, "/out/service");
  const final = DOCKERFILE.slice(DOCKERFILE.lastIndexOf("\nFROM "));
  const shipped = final.match(/^COPY --from=build \/out\/service (\S+)$/m)?.[1];
  const name = (path: string) => path.slice(path.lastIndexOf("/") + 1);
  // The cache file is named after the executable, and its entries after TMPDIR.
  assert.equal(name(shipped ?? ""), name(built));
  const tmpdir = final.match(/^ENV TMPDIR=(\S+)$/m)?.[1];
  assert.ok(tmpdir, "the final stage sets TMPDIR");
  assert.match(final, new RegExp(`^COPY --from=build ${tmpdir} ${tmpdir}$`, "m"));
  const generate = runInstruction(`mkdir ${tmpdir}`);
  assert.ok(generate.includes(`TMPDIR=${tmpdir} `), generate);
  assert.ok(generate.includes(`${tmpdir}/deno-compile-${name(built)}.cache`), generate);
  assert.match(final, /^ENTRYPOINT \["\/service"\]$/m);
});

Deno.test("the build stage copies every script the bundle step imports, and installs its packages", async () => {
  const copied = DOCKERFILE.match(/^COPY (scripts\/\S+ )+scripts\/$/m)?.[0].split(" ").slice(1, -1);
  assert.ok(copied, "the Dockerfile copies scripts/");
  const bundle = await Deno.readTextFile(new URL("./bundle.ts", import.meta.url));
  const local = [...bundle.matchAll(/^import .* from "\.\/([\w.]+)";$/gm)].map((m) =>
    `scripts/${m[1]}`
  );
  assert.ok(local.length > 0);
  for (const path of ["scripts/bundle.ts", ...local]) assert.ok(copied.includes(path), path);
  assert.match(runInstruction("deno install"), /--entrypoint "\$\{ENTRY\}" scripts\/bundle\.ts$/);
});

Deno.test("the image gives its binary glibc's malloc settings, the same as every Deployment", () => {
  // What the benchmarks start a bundle with to start it as the image does.
  assert.deepEqual(imageEnv(), { ...MALLOC_ENV });
  assert.deepEqual(Object.keys(MALLOC_ENV), ["MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_"]);
  for (const service of SERVICES) {
    const deployment = runtimeEnv(service.deploy);
    for (const [name, value] of Object.entries(MALLOC_ENV)) assert.equal(deployment[name], value);
  }
});

/** Runs the code-cache step with `stub` (a shell script body) in place of the binary. */
async function runStep(stub: string): Promise<{ code: number; stderr: string; cache: string }> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfile-test-" });
  try {
    await Deno.writeTextFile(`${dir}/service`, `#!/bin/sh\n${stub}\n`, { mode: 0o755 });
    const step = runInstruction("mkdir /code-cache")
      .replaceAll("/code-cache", `${dir}/code-cache`)
      .replaceAll("/out/service", `${dir}/service`);
    const { code, stderr } = await new Deno.Command("/bin/sh", {
      args: ["-c", step],
      stdout: "null",
      stderr: "piped",
    }).output();
    const cache = await Deno.readTextFile(`${dir}/code-cache/deno-compile-service.cache`)
      .catch(() => "");
    return { code, stderr: new TextDecoder().decode(stderr), cache };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the code-cache step waits for the cache, then stops the binary", async () => {
  // Like the binary: writes the cache under $TMPDIR (atomically) and then runs on, never ready.
  const result = await runStep(
    'sleep 0.2; printf cached > "$TMPDIR/x.tmp"; mv "$TMPDIR/x.tmp" "$TMPDIR/deno-compile-service.cache"; exec sleep 60',
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.cache, "cached");
});

Deno.test("the code-cache step warns, without failing the build, when no cache appears", async () => {
  const result = await runStep("exit 1");
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /WARNING: the binary wrote no code cache/);
  assert.equal(result.cache, "");
});
