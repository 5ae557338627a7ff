import assert from "node:assert/strict";
import { ROOT, serviceEnv } from "./harness.ts";
import { SERVICES } from "../../services/table.ts";
import { runtimeEnv } from "../../scripts/manifests.ts";

const HEAP_LIMIT = `import v8 from "node:v8";
console.log(v8.getHeapStatistics().heap_size_limit / 1048576);`;

/** The heap limit V8 reports in `deno run` with an environment (and nothing else). */
async function heapLimitMiB(env: Record<string, string>): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "heap-limit-" });
  try {
    await Deno.writeTextFile(`${dir}/limit.ts`, HEAP_LIMIT);
    const { stdout, success } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `${dir}/limit.ts`],
      env: { ...env, PATH: Deno.env.get("PATH") ?? "" },
      clearEnv: true,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(success);
    return Number(new TextDecoder().decode(stdout).trim());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("harness: each service's Deployment heap limit reaches V8 under deno run, and can be turned off", async () => {
  const entry = SERVICES.find((s) => s.name === "voice-assistant")!;
  const env = serviceEnv(entry, { NATS_URL: "nats://127.0.0.1:1" });
  // The same values as the generated Deployment.
  const manifest = await Deno.readTextFile(new URL(`${ROOT}k8s/${entry.name}.yaml`, "file://"));
  const names = Object.keys(runtimeEnv(entry.deploy));
  assert.deepEqual(names, ["DENO_V8_FLAGS", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_"]);
  for (const name of names) {
    const value = new RegExp(`name: "${name}"\\s+value: "([^"]+)"`).exec(manifest)?.[1];
    assert.ok(value, `${name} in k8s/${entry.name}.yaml`);
    assert.equal(env[name], value);
  }
  const oldSpace = Number(/--max-old-space-size=(\d+)/.exec(env.DENO_V8_FLAGS ?? "")?.[1]);
  assert.ok(oldSpace > 0 && oldSpace < entry.deploy.memoryMiB);
  const limited = await heapLimitMiB(env);
  // The limit is the old space plus the young generation (a few MiB with 2 MiB semi-spaces).
  assert.ok(limited >= oldSpace && limited < oldSpace + 16, `heap limit ${limited} MiB`);

  const off = serviceEnv(entry, { NATS_URL: "nats://127.0.0.1:1" }, false);
  assert.equal(off.DENO_V8_FLAGS, undefined);
  assert.ok((await heapLimitMiB(off)) > oldSpace + 16);
});
