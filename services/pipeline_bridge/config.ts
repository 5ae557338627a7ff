/**
 * The variables of pipeline-bridge, besides the NATS, runtime and consume
 * families every service reads: the Argo client's (`ARGO_NAMESPACE`,
 * `KUBECONFIG`, `KUBERNETES_SERVICE_HOST`/`_PORT`, `ARGO_TIMEOUT_MS`), the
 * Kubeflow client's (`KUBEFLOW_HOST`, `KUBEFLOW_TOKEN`, `KUBEFLOW_TIMEOUT_MS`)
 * and its own:
 * - `PIPELINES_CONFIG`: the registry file (JSON or YAML; unset: the five
 *   built-in pipelines only);
 * - `PIPELINE_POLL_MS` (5 s) and `PIPELINE_POLL_MAX_MS` (60 s): the first
 *   and the longest interval between two reads of a followed run;
 * - `PIPELINE_SUBMIT_ATTEMPTS` (3) and `PIPELINE_RETRY_DELAY_MS` (1 s, doubling):
 *   how one delivery of a trigger retries a submission that failed for a
 *   reason that may pass.
 *
 * Loading needs `--allow-env` for exactly `configVarNames(pipelineBridgeService.spec)`
 * (the `pipeline-bridge` permission set of the root `deno.json`).
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { pipelineBridgeConfigSpec } from "./config.ts";
 *
 * const config = loadConfig(pipelineBridgeConfigSpec, { PIPELINE_POLL_MS: "2s" });
 * console.log(config.pipelinePollMs, config.argoNamespace); // 2000 "ai-ml"
 * ```
 *
 * @module
 */
import { argoConfigSpec } from "@homelab/handler-base/clients/argo";
import { kubeflowConfigSpec } from "@homelab/handler-base/clients/kubeflow";
import { envVar } from "@homelab/handler-base/config";

/** The own variables of pipeline-bridge and those of its two clients. */
export const pipelineBridgeConfigSpec = {
  ...argoConfigSpec,
  ...kubeflowConfigSpec,
  pipelinesConfig: envVar.string("PIPELINES_CONFIG"),
  pipelinePollMs: envVar.duration("PIPELINE_POLL_MS", { default: 5000 }),
  pipelinePollMaxMs: envVar.duration("PIPELINE_POLL_MAX_MS", { default: 60_000 }),
  pipelineSubmitAttempts: envVar.int("PIPELINE_SUBMIT_ATTEMPTS", { default: 3, min: 1, max: 20 }),
  pipelineRetryDelayMs: envVar.duration("PIPELINE_RETRY_DELAY_MS", { default: 1000 }),
};
