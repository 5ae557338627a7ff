import assert from "node:assert/strict";
import { serviceFlags } from "./flags.ts";

const SET = { net: ["127.0.0.1", "kubernetes.default.svc:443"], read: ["/etc/pipeline-bridge"] };

Deno.test("serviceFlags: a host the set does not allow becomes --allow-net, after the set's own hosts", () => {
  const flags = serviceFlags({
    name: "chat-handler",
    set: SET,
    env: {
      VLLM_URL: "http://gpu-box:8000/v1",
      MILVUS_HOST: "milvus.lan",
      MILVUS_PORT: "19530",
      NATS_URL: "nats://127.0.0.1:4222",
    },
    reaches: ["https://kubernetes.default.svc:443", "https://10.0.0.1:6443"],
  });
  assert.deepEqual(flags, [
    "-P=chat-handler",
    "--allow-net=127.0.0.1,kubernetes.default.svc:443,gpu-box:8000,milvus.lan:19530,10.0.0.1:6443",
  ]);
});

Deno.test("serviceFlags: paths under the set's read entries need nothing; others are added once", () => {
  const flags = serviceFlags({
    name: "pipeline-bridge",
    set: SET,
    env: { PIPELINES_CONFIG: "/etc/pipeline-bridge/p.yaml", KUBECONFIG: "/tmp/k", OTHER: "/tmp/k" },
  });
  assert.deepEqual(flags, ["-P=pipeline-bridge", "--allow-read=/etc/pipeline-bridge,/tmp/k"]);
  // "/etc/pipeline-bridge-2" is not under "/etc/pipeline-bridge".
  assert.deepEqual(
    serviceFlags({ name: "x", set: SET, env: { F: "/etc/pipeline-bridge-2" } }),
    ["-P=x", "--allow-read=/etc/pipeline-bridge,/etc/pipeline-bridge-2"],
  );
  assert.deepEqual(
    serviceFlags({ name: "x", set: { read: true, net: true }, env: { F: "/a", U: "http://h:1" } }),
    ["-P=x"],
  );
});
