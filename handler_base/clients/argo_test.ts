import assert from "node:assert/strict";
import { BackendError, BackendUnavailableError, TimeoutError } from "../errors.ts";
import { startFakeKubernetes } from "../testing/fake_kubernetes.ts";
import { createArgoClient } from "./argo.ts";

Deno.test("createArgoClient: create, get, list by label and watch Workflows through client-node", async () => {
  await using k8s = startFakeKubernetes({ namespace: "ns1" });
  const argo = await createArgoClient({ namespace: "ns1", kubeconfigText: k8s.kubeconfig() });
  const created = await argo.create({
    metadata: { name: "w1", labels: { team: "a" } },
    spec: { workflowTemplateRef: { name: "t" } },
  });
  assert.equal(created.name, "w1");
  assert.equal(created.phase, "");
  await argo.create({ metadata: { name: "w2", labels: { team: "b" } }, spec: {} });
  assert.deepEqual((await argo.list("team=a")).map((w) => w.name), ["w1"]);
  assert.deepEqual((await argo.list("team!=a")).map((w) => w.name), ["w2"]);
  assert.equal(await argo.get("none"), undefined);

  const stop = new AbortController();
  const events: string[] = [];
  const watching = argo.watch("team=a", (event) => {
    events.push(`${event.type} ${event.workflow.phase}`);
    if (event.type === "ADDED") k8s.setPhase("w1", "Running");
    else stop.abort();
  }, { signal: stop.signal });
  await watching;
  assert.deepEqual(events, ["ADDED ", "MODIFIED Running"]);
  assert.equal((await argo.get("w1"))?.phase, "Running");
});

Deno.test("createArgoClient: 409, 401, 403, 500, down and a lost response become typed errors", async () => {
  await using k8s = startFakeKubernetes();
  const argo = await createArgoClient({
    namespace: "ai-ml",
    kubeconfigText: k8s.kubeconfig(),
    timeoutMs: 500,
  });
  await argo.create({ metadata: { name: "w" }, spec: {} });
  await assert.rejects(
    argo.create({ metadata: { name: "w" }, spec: {} }),
    (e: unknown) =>
      e instanceof BackendError && e.status === 409 && /already exists/.test(e.message),
  );
  const other = await createArgoClient({
    namespace: "elsewhere",
    kubeconfigText: k8s.kubeconfig(),
  });
  await assert.rejects(
    other.list("a=b"),
    (e: unknown) => e instanceof BackendError && e.status === 403 && !e.retryable,
  );
  const wrongToken = await createArgoClient({
    namespace: "ai-ml",
    kubeconfigText: k8s.kubeconfig().replace(k8s.token, "wrong-token"),
  });
  await assert.rejects(
    wrongToken.get("w"),
    (e: unknown) => e instanceof BackendError && e.status === 401,
  );
  k8s.failNext(500);
  await assert.rejects(argo.get("w"), (e: unknown) => e instanceof BackendError && e.retryable);
  await k8s.down();
  await assert.rejects(argo.get("w"), BackendUnavailableError);
  k8s.up();
  assert.equal((await argo.get("w"))?.name, "w");
  k8s.loseNextCreate();
  await assert.rejects(argo.create({ metadata: { name: "lost" }, spec: {} }), TimeoutError);
  assert.ok(k8s.workflows.has("lost"));
});
