import assert from "node:assert/strict";
import { PipelineStatusSchema, PipelineTriggerSchema } from "@homelab/handler-base/messages";
import { connectNats, publish } from "@homelab/handler-base/natsutil";
import {
  collect,
  startNatsServer,
  startTestService,
  type TestServiceOptions,
} from "@homelab/handler-base/testing";
import { REQUEST_ID_LABEL } from "./engines.ts";
import { pipelineBridgeService } from "./service.ts";
import { startEngines } from "./test_helpers.ts";

function startBridge(env: Record<string, string>, options: Partial<TestServiceOptions> = {}) {
  return startTestService({ definition: pipelineBridgeService, env, ...options });
}

const statuses = (all: { status: string }[]) => all.map((s) => s.status);

Deno.test("pipeline-bridge: an Argo run is submitted with its parameters and followed to Succeeded", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  using updates = t.collect("ai.pipeline.status.req-argo-1", PipelineStatusSchema);
  await t.nc.flush();
  const reply = await t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    {
      requestId: "req-argo-1",
      pipeline: "document-ingestion",
      parameters: { source: "s3://docs/a.pdf" },
    },
    PipelineStatusSchema,
  );
  assert.equal(reply.status, "submitted");
  assert.equal(reply.engine, "argo");
  assert.equal(reply.pipeline, "document-ingestion");
  assert.ok(reply.runId.startsWith("document-ingestion-"));
  assert.match(reply.submittedAt, /^\d{4}-\d\d-\d\dT/);

  const workflow = engines.k8s.workflows.get(reply.runId)!;
  assert.equal(workflow.metadata.labels[REQUEST_ID_LABEL], "req-argo-1");
  assert.equal(workflow.metadata.labels["app.kubernetes.io/managed-by"], "pipeline-bridge");
  const created = engines.k8s.requests.find((r) => r.method === "POST")!;
  assert.deepEqual(created.json, {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: {
      name: reply.runId,
      labels: {
        "app.kubernetes.io/managed-by": "pipeline-bridge",
        [REQUEST_ID_LABEL]: "req-argo-1",
        "pipeline-bridge.homelab.ai/pipeline": "document-ingestion",
      },
    },
    spec: {
      workflowTemplateRef: { name: "document-ingestion" },
      arguments: { parameters: [{ name: "source", value: "s3://docs/a.pdf" }] },
    },
  });

  await updates.until((all) => all.some((s) => s.status === "pending"));
  engines.k8s.setPhase(reply.runId, "Pending");
  engines.k8s.setPhase(reply.runId, "Running");
  await updates.until((all) => all.some((s) => s.status === "running"));
  engines.k8s.setPhase(reply.runId, "Succeeded");
  const all = await updates.until((all) => all.some((s) => s.status === "succeeded"));
  assert.deepEqual(statuses(all), ["submitted", "pending", "running", "succeeded"]);
  assert.ok(all.every((s) => s.runId === reply.runId && s.requestId === "req-argo-1"));
  assert.equal(all.at(-1)!.error, "");
});

Deno.test("pipeline-bridge: a Kubeflow run gets its pipeline, parameters and token, and a failure is reported", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  using updates = t.collect("ai.pipeline.status.req-kfp-1", PipelineStatusSchema);
  await t.nc.flush();
  const reply = await t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    { requestId: "req-kfp-1", pipeline: "rag-query", parameters: { query: "what is nats" } },
    PipelineStatusSchema,
  );
  assert.equal(reply.status, "submitted");
  assert.equal(reply.engine, "kubeflow");
  const create = engines.kfp.requests.find((r) => r.method === "POST")!;
  assert.equal(create.path, "/apis/v2beta1/runs");
  assert.equal(create.headers.get("authorization"), "Bearer kfp-secret");
  assert.deepEqual(create.json, {
    display_name: "pipeline-bridge/req-kfp-1/rag-query",
    pipeline_version_reference: { pipeline_id: "rag-query" },
    runtime_config: { parameters: { query: "what is nats" } },
  });
  assert.ok(engines.kfp.runs.has(reply.runId));

  await updates.until((all) => all.some((s) => s.status === "pending"));
  engines.kfp.setState(reply.runId, "RUNNING");
  await updates.until((all) => all.some((s) => s.status === "running"));
  engines.kfp.setState(reply.runId, "FAILED", "step embed: OOMKilled");
  const all = await updates.until((all) => all.some((s) => s.status === "failed"));
  assert.deepEqual(statuses(all), ["submitted", "pending", "running", "failed"]);
  assert.equal(all.at(-1)!.error, "step embed: OOMKilled");
});

Deno.test("pipeline-bridge: an unknown pipeline and invalid parameters are errors, and start nothing", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  using updates = t.collect("ai.pipeline.status.req-bad-1", PipelineStatusSchema);
  await t.nc.flush();
  const unknown = await t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    { requestId: "req-bad-1", pipeline: "no-such-pipeline" },
    PipelineStatusSchema,
  );
  assert.equal(unknown.status, "error");
  assert.match(unknown.error, /no-such-pipeline.*not registered/);
  assert.deepEqual(unknown.availablePipelines, [
    "batch-inference",
    "document-ingestion",
    "model-evaluation",
    "rag-query",
    "voice-pipeline",
  ]);
  const published = await updates.until((all) => all.length === 1);
  assert.deepEqual(published[0]!.availablePipelines, unknown.availablePipelines);

  for (
    const [parameters, pattern] of [
      [{ "bad name!": "x" }, /parameter name "bad name!" is not valid/],
      [{ text: "a\u0000b" }, /control characters/],
      [{ text: "x".repeat(9000) }, /longer than 8192/],
      [Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`p${i}`, "v"])), /more than 64/],
    ] as const
  ) {
    const reply = await t.request(
      "ai.pipeline.trigger",
      PipelineTriggerSchema,
      { requestId: "req-bad-2", pipeline: "voice-pipeline", parameters },
      PipelineStatusSchema,
    );
    assert.equal(reply.status, "error");
    assert.match(reply.error, pattern);
  }
  const badId = await t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    { requestId: "has spaces*", pipeline: "rag-query" },
    PipelineStatusSchema,
  );
  assert.equal(badId.status, "error");
  assert.match(badId.error, /request_id/);
  assert.equal(engines.kfp.runs.size + engines.k8s.workflows.size, 0);
});

Deno.test("pipeline-bridge: a duplicate trigger reports the existing run on both engines", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  for (const pipeline of ["batch-inference", "voice-pipeline"]) {
    const trigger = { requestId: `dup-${pipeline}`, pipeline, parameters: { n: "1" } };
    const replies = await Promise.all(
      [1, 2, 3].map(() =>
        t.request("ai.pipeline.trigger", PipelineTriggerSchema, trigger, PipelineStatusSchema)
      ),
    );
    const again = await t.request(
      "ai.pipeline.trigger",
      PipelineTriggerSchema,
      trigger,
      PipelineStatusSchema,
    );
    const ids = new Set([...replies, again].map((r) => r.runId));
    assert.equal(ids.size, 1, `${pipeline}: ${[...ids]}`);
    assert.ok([...replies, again].every((r) => r.status === "submitted"));
  }
  assert.equal(engines.k8s.workflows.size, 1);
  assert.equal(engines.kfp.runs.size, 1);
});

Deno.test("pipeline-bridge: the API server down, then up: the trigger is retried and starts one run", async () => {
  await using engines = await startEngines({ PIPELINE_SUBMIT_ATTEMPTS: "20" });
  await using t = await startBridge(engines.env);
  await engines.k8s.down();
  const replied = t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    { requestId: "req-down-1", pipeline: "model-evaluation" },
    PipelineStatusSchema,
    { timeoutMs: 20_000 },
  );
  const deadline = Date.now() + 10_000;
  while (!t.logs.some((l) => l.msg === "Submission failed, trying again")) {
    assert.ok(Date.now() < deadline, "no failed attempt was logged");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  engines.k8s.up();
  const reply = await replied;
  assert.equal(reply.status, "submitted");
  assert.equal(engines.k8s.workflows.size, 1);
  assert.ok(engines.k8s.workflows.has(reply.runId));
});

Deno.test("pipeline-bridge: a create whose response was lost is found again, never created twice", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  engines.k8s.loseNextCreate();
  engines.kfp.loseNextCreate();
  for (const pipeline of ["document-ingestion", "rag-query"]) {
    const reply = await t.request(
      "ai.pipeline.trigger",
      PipelineTriggerSchema,
      { requestId: `lost-${pipeline}`, pipeline },
      PipelineStatusSchema,
      { timeoutMs: 15_000 },
    );
    assert.equal(reply.status, "submitted", reply.error);
  }
  assert.equal(engines.k8s.workflows.size, 1);
  assert.equal(engines.kfp.runs.size, 1);
  assert.equal(engines.k8s.requests.filter((r) => r.method === "POST").length, 1);
  assert.equal(engines.kfp.requests.filter((r) => r.method === "POST").length, 1);
});

Deno.test("pipeline-bridge: a refused submission (403) is an error at once, not retried", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env);
  // The first request is the resume's list of unfinished runs.
  assert.match((await engines.k8s.nextRequest(AbortSignal.timeout(5000))).search, /completed/);
  engines.k8s.failNext(403, {
    method: "GET",
    body: JSON.stringify({ kind: "Status", message: "workflows is forbidden", code: 403 }),
  });
  const reply = await t.request(
    "ai.pipeline.trigger",
    PipelineTriggerSchema,
    { requestId: "req-403", pipeline: "batch-inference" },
    PipelineStatusSchema,
  );
  assert.equal(reply.status, "error");
  assert.match(reply.error, /status 403: workflows is forbidden/);
  assert.equal(engines.k8s.requests.length, 2);
  assert.equal(engines.k8s.workflows.size, 0);
});

Deno.test("pipeline-bridge: after a restart it resumes following unfinished runs, found by label", async () => {
  await using engines = await startEngines();
  await using server = await startNatsServer({ jetstream: true });
  const client = await connectNats({ servers: server.url, name: "test-client" });
  try {
    using updates = collect(client, "ai.pipeline.status.>", PipelineStatusSchema);
    await client.flush();
    const first = await startBridge(engines.env, { natsUrl: server.url });
    const argo = await first.request(
      "ai.pipeline.trigger",
      PipelineTriggerSchema,
      { requestId: "resume-a", pipeline: "document-ingestion" },
      PipelineStatusSchema,
    );
    const kfp = await first.request(
      "ai.pipeline.trigger",
      PipelineTriggerSchema,
      { requestId: "resume-k", pipeline: "voice-pipeline" },
      PipelineStatusSchema,
    );
    await updates.until((all) => all.filter((s) => s.status === "pending").length === 2);
    await first[Symbol.asyncDispose]();
    engines.k8s.setPhase(argo.runId, "Running");
    engines.kfp.setState(kfp.runId, "RUNNING");

    await using second = await startBridge(engines.env, { natsUrl: server.url });
    await updates.until((all) => all.filter((s) => s.status === "running").length === 2);
    engines.k8s.setPhase(argo.runId, "Succeeded");
    engines.kfp.setState(kfp.runId, "SUCCEEDED");
    const all = await updates.until((all) =>
      all.filter((s) => s.status === "succeeded").length === 2
    );
    for (const requestId of ["resume-a", "resume-k"]) {
      assert.deepEqual(
        statuses(all.filter((s) => s.requestId === requestId)),
        ["submitted", "pending", "running", "succeeded"],
      );
    }
    assert.ok(second.logs.some((l) => l.msg === "Resuming runs"));
  } finally {
    await client.close();
  }
});

Deno.test("pipeline-bridge: in JetStream mode a published trigger is consumed from AI_PIPELINE", async () => {
  await using engines = await startEngines();
  await using t = await startBridge(engines.env, { consumeMode: "jetstream" });
  using updates = t.collect("ai.pipeline.status.js-1", PipelineStatusSchema);
  await t.nc.flush();
  publish(t.nc, "ai.pipeline.trigger", PipelineTriggerSchema, {
    requestId: "js-1",
    pipeline: "rag-query",
    parameters: { query: "q" },
  });
  const all = await updates.until((all) => all.some((s) => s.status === "pending"));
  assert.deepEqual(statuses(all), ["submitted", "pending"]);
  assert.equal(engines.kfp.runs.size, 1);
});
