import assert from "node:assert/strict";
import { argoPhase, kubeflowPhase } from "./engines.ts";
import {
  defaultRegistry,
  loadRegistry,
  parseRegistry,
  RegistryError,
  resolveParameters,
} from "./registry.ts";

Deno.test("defaultRegistry has the five pipelines of the contract on their engines", () => {
  const registry = defaultRegistry();
  assert.deepEqual(
    registry.names().map((n) => `${n}:${registry.get(n)!.engine}`),
    [
      "batch-inference:argo",
      "document-ingestion:argo",
      "model-evaluation:argo",
      "rag-query:kubeflow",
      "voice-pipeline:kubeflow",
    ],
  );
});

Deno.test("parseRegistry reads YAML over the defaults, or JSON alone without them", () => {
  const yaml = parseRegistry(
    [
      "pipelines:",
      "  rag-query:",
      "    engine: kubeflow",
      "    pipeline_id: 7c1b0a9e-1111",
      "    version_id: v2",
      "    parameters: { top_k: 5, rerank: true }",
      "    allowed_parameters: [query, top_k]",
      "  ocr:",
      "    engine: argo",
      "    template: ocr-v2",
    ].join("\n"),
    "p.yaml",
  );
  assert.equal(yaml.names().length, 6);
  assert.deepEqual(yaml.get("rag-query"), {
    name: "rag-query",
    engine: "kubeflow",
    pipelineId: "7c1b0a9e-1111",
    versionId: "v2",
    experimentId: undefined,
    parameters: { top_k: "5", rerank: "true" },
    allowedParameters: ["query", "top_k"],
  });
  const json = parseRegistry(
    '{"include_defaults": false, "pipelines": {"ocr": {"engine": "argo"}}}',
    "p.json",
  );
  assert.deepEqual(json.names(), ["ocr"]);
  const ocr = json.get("ocr");
  assert.ok(ocr?.engine === "argo");
  assert.equal(ocr.template, "ocr");
  assert.deepEqual([...json.engines()], ["argo"]);
});

Deno.test("parseRegistry names the file and the problem", () => {
  for (
    const [text, problem] of [
      ["[1, 2]", "the top level must be a mapping"],
      ["pipelines: {a: {engine: argo, template: Bad_Template}}", "template must be"],
      ["pipelines: {a: {engine: kubeflow}}", "pipeline_id is required"],
      ["pipelines: {a: {engine: argo, extra: 1}}", "unknown field extra"],
      ["pipelines: {a: {engine: argo, parameters: {'x y': 1}}}", 'parameter name "x y"'],
      ["pipelines: {a: {engine: argo, parameters: {x: [1]}}}", "must be a scalar"],
      ["include_defaults: false\npipelines: {}", "defines no pipeline"],
      ["colour: red", "unknown top-level field colour"],
    ]
  ) {
    assert.throws(
      () => parseRegistry(text!, "/etc/p.yaml"),
      (error: unknown) =>
        error instanceof RegistryError && error.message.includes("/etc/p.yaml") &&
        error.message.includes(problem!),
      text,
    );
  }
});

Deno.test("loadRegistry: no file is the defaults; a missing file is an error naming it", async () => {
  assert.equal((await loadRegistry(undefined)).names().length, 5);
  await assert.rejects(loadRegistry("/nonexistent/p.yaml"), /\/nonexistent\/p\.yaml: no such file/);
});

Deno.test("resolveParameters merges defaults, checks names per engine and the allowed list", () => {
  const registry = parseRegistry(
    "pipelines: {k: {engine: kubeflow, pipeline_id: p, parameters: {a: '1'}, allowed_parameters: [a, b]}}",
    "f",
  );
  const k = registry.get("k")!;
  assert.deepEqual(resolveParameters(k, { b: "2" }), { ok: true, parameters: { a: "1", b: "2" } });
  assert.match((resolveParameters(k, { c: "3" }) as { problem: string }).problem, /not accepted/);
  assert.match(
    (resolveParameters(k, { "with-dash": "3" }) as { problem: string }).problem,
    /is not valid/,
  );
  const argo = defaultRegistry().get("document-ingestion")!;
  assert.deepEqual(resolveParameters(argo, { "with-dash": "x\ny" }), {
    ok: true,
    parameters: { "with-dash": "x\ny" },
  });
});

Deno.test("argoPhase and kubeflowPhase map onto the five statuses", () => {
  assert.deepEqual(
    ["", "Pending", "Running", "Succeeded", "Failed", "Error"].map(argoPhase),
    ["pending", "pending", "running", "succeeded", "failed", "error"],
  );
  assert.deepEqual(
    ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"].map(kubeflowPhase),
    ["pending", "running", "succeeded", "failed", "failed", "succeeded"],
  );
});
