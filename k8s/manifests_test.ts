import assert from "node:assert/strict";
import { configVarNames } from "@homelab/handler-base/config";
import { loadAll } from "js-yaml";
import { renderManifests, runtimeEnv } from "../scripts/manifests.ts";
import { SERVICES } from "../services/table.ts";

const root = new URL("../", import.meta.url);

// deno-lint-ignore no-explicit-any
type Manifest = Record<string, any>;

async function rendered(): Promise<Manifest[]> {
  const { code, stdout, stderr } = await new Deno.Command("kubectl", {
    args: ["kustomize", new URL("k8s/", root).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return loadAll(new TextDecoder().decode(stdout)) as Manifest[];
}

function find(all: Manifest[], kind: string, name: string): Manifest {
  const found = all.find((m) => m.kind === kind && m.metadata?.name === name);
  assert.ok(found, `no ${kind} ${name} in the rendered manifests`);
  return found;
}

Deno.test("k8s/ is what scripts/manifests.ts makes of the service table", async () => {
  for (const [path, content] of await renderManifests()) {
    const current = await Deno.readTextFile(new URL(path, root)).catch(() => "(missing)");
    assert.equal(current, content, `${path} is stale: run \`deno task manifests\``);
  }
});

Deno.test("kubectl kustomize k8s/ renders every service hardened, probed and scaled", async () => {
  const all = await rendered();
  assert.ok(all.every((m) => m.kind === "Namespace" || m.metadata.namespace === "ai-ml"));
  const backends = find(all, "ConfigMap", "ai-backends");
  assert.equal(backends.data.VLLM_URL, "http://llm-draft.ai-ml.svc.cluster.local:8000");
  find(all, "Job", "ensure-streams");
  for (const service of SERVICES) {
    const definition = await service.load();
    const declared = new Set(configVarNames(definition.spec));
    const pod = find(all, "Deployment", service.name).spec.template.spec;
    const [container] = pod.containers;
    const env: Manifest[] = container.env;
    // Deno reads OTEL_* and DENO_V8_FLAGS itself, glibc its MALLOC_*: no permission needed.
    const runtime = runtimeEnv(service.deploy);
    const undeclared = env.map((e) => e.name).filter((n: string) =>
      !declared.has(n) && !n.startsWith("OTEL_") && !(n in runtime)
    );
    assert.deepEqual(undeclared, [], `${service.name} sets variables it may not read`);
    const value = (name: string) => env.find((e) => e.name === name)?.value;
    // A service with durable consumers reads them in the cluster; one without stays core.
    assert.equal(value("CONSUME_MODE"), service.deploy.consumers.length ? "jetstream" : "core");
    for (const secret of ["NATS_USER", "NATS_PASSWORD"]) {
      const ref = env.find((e) => e.name === secret);
      assert.ok(ref?.valueFrom?.secretKeyRef && ref.value === undefined, `${secret} inline`);
    }
    assert.equal(container.livenessProbe.httpGet.path, "/health");
    assert.equal(container.readinessProbe.httpGet.path, "/ready");
    const limitMiB = Number(container.resources.limits.memory.replace("Mi", ""));
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
    const heapMiB = Number(value("DENO_V8_FLAGS")?.match(/--max-old-space-size=(\d+)/)?.[1]);
    assert.ok(heapMiB > 0 && heapMiB < limitMiB, `${service.name}: heap ${heapMiB} of ${limitMiB}`);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
    const tmp = container.volumeMounts.find((m: Manifest) => m.mountPath === "/tmp");
    assert.ok(pod.volumes.find((v: Manifest) => v.name === tmp?.name)?.emptyDir);
    assert.ok(pod.terminationGracePeriodSeconds > Number(value("SHUTDOWN_GRACE_MS")) / 1000);
    find(all, "PodDisruptionBudget", service.name);
    const triggers = find(all, "ScaledObject", service.name).spec.triggers;
    if (service.deploy.consumers.length) {
      assert.deepEqual(
        triggers.map((t: Manifest) => [t.type, t.metadata.stream, t.metadata.consumer]),
        service.deploy.consumers.map((c) => ["nats-jetstream", c.stream, c.durable]),
      );
    } else {
      // No lag to read: CPU against the container's request.
      assert.deepEqual(triggers.map((t: Manifest) => [t.type, t.metricType]), [
        ["cpu", "Utilization"],
      ]);
      assert.ok(container.resources.requests.cpu);
    }
    const egress = find(all, "NetworkPolicy", service.name).spec.egress;
    const ports = egress.flatMap((rule: Manifest) => rule.ports.map((p: Manifest) => p.port));
    assert.ok(ports.includes(4222) && ports.includes(53), `${service.name}: ${ports}`);
  }
});

Deno.test("pipeline-bridge may only create, get, list and watch Workflows in its namespace", async () => {
  const all = await rendered();
  const role = find(all, "Role", "pipeline-bridge");
  assert.deepEqual(role.rules, [{
    apiGroups: ["argoproj.io"],
    resources: ["workflows"],
    verbs: ["create", "get", "list", "watch"],
  }]);
  const binding = find(all, "RoleBinding", "pipeline-bridge");
  assert.deepEqual(binding.subjects, [
    { kind: "ServiceAccount", name: "pipeline-bridge", namespace: "ai-ml" },
  ]);
  const pod = find(all, "Deployment", "pipeline-bridge").spec.template.spec;
  assert.equal(pod.serviceAccountName, "pipeline-bridge");
  assert.equal(all.filter((m) => m.kind === "ClusterRole").length, 0);
  for (const service of SERVICES.filter((s) => s.name !== "pipeline-bridge")) {
    const other = find(all, "Deployment", service.name).spec.template.spec;
    assert.equal(other.automountServiceAccountToken, false, service.name);
  }
});
