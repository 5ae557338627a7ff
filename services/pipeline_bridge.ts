/**
 * pipeline-bridge: starts Argo Workflows and Kubeflow Pipelines runs on
 * `ai.pipeline.trigger` and reports each run's phases on
 * `ai.pipeline.status.{request_id}` (see `pipeline_bridge/service.ts`).
 *
 * Run: `deno run -P=pipeline-bridge services/pipeline_bridge.ts`. The
 * permission set allows reading the service-account directory and
 * `/etc/pipeline-bridge` (the registry's mount); with a `KUBECONFIG` or a
 * `PIPELINES_CONFIG` elsewhere, add `--allow-read=<that file>`.
 *
 * @example Run against a local kubeconfig
 * ```sh
 * NATS_URL=nats://127.0.0.1:4222 KUBECONFIG=$HOME/.kube/config CONSUME_MODE=jetstream \
 *   deno run -P=pipeline-bridge --allow-read=$HOME/.kube/config services/pipeline_bridge.ts
 * ```
 *
 * @module
 */
import { serviceMain } from "@homelab/handler-base/main";
import { pipelineBridgeService } from "./pipeline_bridge/service.ts";

if (import.meta.main) await serviceMain(pipelineBridgeService);
