/**
 * Helpers of the pipeline-bridge tests: the fakes of both engines, a
 * kubeconfig file for the fake Kubernetes API, and the environment that
 * points the service at them with short intervals.
 *
 * @module
 */
import {
  type FakeKubeflow,
  type FakeKubernetes,
  startFakeKubeflow,
  startFakeKubernetes,
} from "@homelab/handler-base/testing";

/** Both fakes, a kubeconfig file for one, and the service's environment. */
export interface Engines extends AsyncDisposable {
  k8s: FakeKubernetes;
  kfp: FakeKubeflow;
  kubeconfigPath: string;
  env: Record<string, string>;
}

/** Starts both fakes and writes the kubeconfig to a temporary file. */
export async function startEngines(extraEnv: Record<string, string> = {}): Promise<Engines> {
  const k8s = startFakeKubernetes({ namespace: "ai-ml" });
  const kfp = startFakeKubeflow({ token: "kfp-secret" });
  const kubeconfigPath = await Deno.makeTempFile({ suffix: ".kubeconfig" });
  await Deno.writeTextFile(kubeconfigPath, k8s.kubeconfig());
  return {
    k8s,
    kfp,
    kubeconfigPath,
    env: {
      KUBECONFIG: kubeconfigPath,
      ARGO_NAMESPACE: "ai-ml",
      ARGO_TIMEOUT_MS: "1500",
      KUBEFLOW_HOST: kfp.url,
      KUBEFLOW_TOKEN: "kfp-secret",
      KUBEFLOW_TIMEOUT_MS: "1500",
      PIPELINE_POLL_MS: "30",
      PIPELINE_POLL_MAX_MS: "150",
      PIPELINE_RETRY_DELAY_MS: "50",
      ...extraEnv,
    },
    async [Symbol.asyncDispose]() {
      await k8s.close();
      await kfp.close();
      await Deno.remove(kubeconfigPath).catch(() => {});
    },
  };
}
