import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const permissions: Record<string, { env: string[] }> = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", root)),
).permissions;

for (const service of ["chat-handler", "tts-module", "pipeline-bridge"]) {
  Deno.test(`k8s/${service}.yaml sets only variables the service may read`, async () => {
    const manifest = await Deno.readTextFile(new URL(`k8s/${service}.yaml`, root));
    const names = [...manifest.matchAll(/name: ([A-Z][A-Z0-9_]+),/g)].map((m) => m[1]!);
    assert.ok(names.includes("NATS_URL") && names.includes("CONSUME_MODE"), names.join());
    // OTEL_* are read by Deno itself, outside the permission system.
    const undeclared = names.filter((n) =>
      !n.startsWith("OTEL_") && !permissions[service]!.env.includes(n)
    );
    assert.deepEqual(undeclared, []);
    assert.match(manifest, new RegExp(`consumer: ${service}\\b`));
  });
}

Deno.test("k8s/pipeline-bridge.yaml: a Role limited to workflows (create, get, list, watch) in ai-ml", async () => {
  const manifest = await Deno.readTextFile(new URL("k8s/pipeline-bridge.yaml", root));
  const role = manifest.split("\n---\n").find((doc) => /^kind: Role$/m.test(doc))!;
  assert.match(role, /namespace: ai-ml/);
  const rules = role.slice(role.indexOf("rules:"));
  assert.deepEqual([...rules.matchAll(/resources: \[([^\]]*)\]/g)].map((m) => m[1]), ["workflows"]);
  assert.deepEqual([...rules.matchAll(/verbs: \[([^\]]*)\]/g)].map((m) => m[1]), [
    "create, get, list, watch",
  ]);
  assert.match(manifest, /serviceAccountName: pipeline-bridge/);
  assert.match(manifest, /kind: RoleBinding/);
});
