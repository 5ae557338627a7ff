import assert from "node:assert/strict";
import { BackendError, BackendUnavailableError } from "../errors.ts";
import { startFakeKubeflow } from "../testing/fake_kubeflow.ts";
import { createKubeflowClient } from "./kubeflow.ts";

Deno.test("createKubeflowClient: create, get, list with a filter and pages, with the token", async () => {
  await using fake = startFakeKubeflow({ token: "t0ken-value", pipelines: ["p1"] });
  const kfp = createKubeflowClient({ baseUrl: fake.url, token: "t0ken-value" });
  const run = await kfp.createRun({
    displayName: "one",
    pipelineId: "p1",
    pipelineVersionId: "v1",
    parameters: { a: "1" },
  });
  assert.equal(run.state, "PENDING");
  assert.deepEqual(fake.requests[0]!.json, {
    display_name: "one",
    pipeline_version_reference: { pipeline_id: "p1", pipeline_version_id: "v1" },
    runtime_config: { parameters: { a: "1" } },
  });
  await kfp.createRun({ displayName: "two", pipelineId: "p1", parameters: {} });
  assert.equal((await kfp.findRunByDisplayName("one"))?.runId, run.runId);
  assert.equal(await kfp.findRunByDisplayName("three"), undefined);
  const page = await kfp.listRuns({ pageSize: 1 });
  assert.deepEqual(page.runs.map((r) => r.displayName), ["two"]);
  const next = await kfp.listRuns({ pageSize: 1, pageToken: page.nextPageToken });
  assert.deepEqual(next.runs.map((r) => r.displayName), ["one"]);
  fake.setState(run.runId, "FAILED", "boom");
  assert.deepEqual(await kfp.getRun(run.runId), { ...run, state: "FAILED", errorMessage: "boom" });
  assert.equal(await kfp.getRun("missing"), undefined);
  await assert.rejects(
    kfp.createRun({ displayName: "x", pipelineId: "nope", parameters: {} }),
    (e: unknown) => e instanceof BackendError && e.status === 404,
  );
  const anonymous = createKubeflowClient({ baseUrl: fake.url });
  await assert.rejects(
    anonymous.getRun(run.runId),
    (e: unknown) => e instanceof BackendError && e.status === 401,
  );
});

Deno.test("createKubeflowClient: a create is never retried; a lost response is an error while the run exists", async () => {
  await using fake = startFakeKubeflow();
  const kfp = createKubeflowClient({ baseUrl: fake.url, retryDelayMs: 1 });
  fake.failNext(503, { method: "POST" });
  await assert.rejects(
    kfp.createRun({ displayName: "a", pipelineId: "p", parameters: {} }),
    BackendUnavailableError,
  );
  assert.equal(fake.runs.size, 0);
  fake.loseNextCreate();
  await assert.rejects(kfp.createRun({ displayName: "b", pipelineId: "p", parameters: {} }));
  assert.equal(fake.runs.size, 1);
  assert.equal((await kfp.findRunByDisplayName("b"))?.displayName, "b");
});
