import assert from "node:assert/strict";
import { ensureStreams } from "@homelab/handler-base/jetstream";
import { PipelineStatusSchema, PipelineTriggerSchema } from "@homelab/handler-base/messages";
import { connectNats, publish } from "@homelab/handler-base/natsutil";
import {
  collect,
  runEntryToExit,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";
import { startEngines } from "./test_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const ENTRY = new URL("../pipeline_bridge.ts", import.meta.url).pathname;

Deno.test("services/pipeline_bridge.ts with -P=pipeline-bridge: kill -9 between the create and the ack, the redelivered trigger finds the one run", async () => {
  await using engines = await startEngines({ ARGO_TIMEOUT_MS: "60000" });
  await using server = await startNatsServer({ jetstream: true });
  const client = await connectNats({ servers: server.url, name: "test-client" });
  try {
    await ensureStreams(client);
    const env = {
      ...engines.env,
      NATS_URL: server.url,
      CONSUME_MODE: "jetstream",
      JETSTREAM_ACK_WAIT_MS: "1000",
    };
    // Exactly the permission set, plus reading the test's kubeconfig file.
    const flags = ["-P=pipeline-bridge", `--allow-read=${engines.kubeconfigPath}`];
    using updates = collect(client, "ai.pipeline.status.kill-1", PipelineStatusSchema);
    await client.flush();

    const first = await startServiceProcess({ entry: ENTRY, flags, cwd: ROOT, env });
    // The create is stored, but its response never comes: the service waits in the call.
    engines.k8s.loseNextCreate();
    publish(client, "ai.pipeline.trigger", PipelineTriggerSchema, {
      requestId: "kill-1",
      pipeline: "document-ingestion",
      parameters: { source: "s3://a" },
    });
    const workflow = await engines.k8s.nextWorkflow(AbortSignal.timeout(20_000));
    assert.equal((await first.stop("SIGKILL")).signal, "SIGKILL");

    await using second = await startServiceProcess({ entry: ENTRY, flags, cwd: ROOT, env });
    // The restarted service resumes the Workflow it finds by label (pending), and the
    // redelivered trigger reports that same run (submitted): in either order.
    const all = await updates.until(
      (all) => ["submitted", "pending"].every((s) => all.some((u) => u.status === s)),
      { timeoutMs: 20_000 },
    );
    assert.ok(all.every((s) => s.runId === workflow.metadata.name), JSON.stringify(all));
    assert.equal(engines.k8s.workflows.size, 1);
    engines.k8s.setPhase(workflow.metadata.name, "Succeeded");
    await updates.until((all) => all.some((s) => s.status === "succeeded"), { timeoutMs: 20_000 });
    assert.equal((await second.stop()).code, 0);
  } finally {
    await client.close();
  }
});

Deno.test("services/pipeline_bridge.ts: a broken registry file stops it at start, naming the file and the problem", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [content, problem] of [
        ["pipelines: [unclosed", /not valid YAML or JSON/],
        ['{"pipelines": {"Bad_Name": {"engine": "argo"}}}', /pipeline name "Bad_Name"/],
        ["pipelines:\n  x:\n    engine: spark\n", /engine must be argo or kubeflow/],
      ] as const
    ) {
      const file = `${dir}/pipelines.yaml`;
      await Deno.writeTextFile(file, content);
      const { code, stderr } = await runEntryToExit({
        entry: ENTRY,
        flags: ["-P=pipeline-bridge", `--allow-read=${dir}`],
        cwd: ROOT,
        env: { PIPELINES_CONFIG: file, NATS_URL: "nats://127.0.0.1:1" },
      });
      assert.equal(code, 78, stderr);
      assert.ok(stderr.includes(file), stderr);
      assert.match(stderr, problem);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
