import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const permissions: Record<string, { env: string[] }> = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", root)),
).permissions;

for (const service of ["chat-handler", "tts-module"]) {
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

Deno.test("k8s/stt-module.yaml sets only variables the service may read and scales on CPU", async () => {
  const manifest = await Deno.readTextFile(new URL("k8s/stt-module.yaml", root));
  const names = [...manifest.matchAll(/name: ([A-Z][A-Z0-9_]+),/g)].map((m) => m[1]!);
  assert.ok(names.includes("NATS_URL") && names.includes("WHISPER_URL"), names.join());
  const undeclared = names.filter((n) =>
    !n.startsWith("OTEL_") && !permissions["stt-module"]!.env.includes(n)
  );
  assert.deepEqual(undeclared, []);
  // No durable consumer to read lag from (every replica sees every chunk): CPU, with a request.
  assert.match(manifest, /type: cpu/);
  assert.match(manifest, /requests: \{ cpu: /);
});
