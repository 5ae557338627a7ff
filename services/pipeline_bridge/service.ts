/**
 * The definition of pipeline-bridge: the registry, the engines the registry
 * uses, the follower of runs and the trigger endpoint (see `trigger.ts` for
 * the behaviour, `registry.ts` for the file, `config.ts` for the variables).
 *
 * At start it loads the registry (a broken file stops the service with exit
 * 78, naming the file and the problem), configures the Kubernetes client
 * when an Argo pipeline is registered (no credentials: exit 78 too), and,
 * once it serves, resumes following the unfinished runs it finds by label
 * (Argo) or display name (Kubeflow).
 *
 * @example
 * ```ts
 * import { pipelineBridgeService } from "./service.ts";
 *
 * console.log(pipelineBridgeService.name, pipelineBridgeService.spec.pipelinesConfig.name);
 * // pipeline-bridge PIPELINES_CONFIG
 * ```
 *
 * @module
 */
import { argoClientFromConfig } from "@homelab/handler-base/clients/argo";
import { kubeflowClientFromConfig } from "@homelab/handler-base/clients/kubeflow";
import { ConfigError } from "@homelab/handler-base/config";
import { defineService } from "@homelab/handler-base/main";
import { PipelineStatusSchema } from "@homelab/handler-base/messages";
import { type NatsConnection, publish } from "@homelab/handler-base/natsutil";
import { pipelineBridgeConfigSpec } from "./config.ts";
import { argoEngine, type Engine, kubeflowEngine } from "./engines.ts";
import { RunFollower } from "./follow.ts";
import { loadRegistry, RegistryError } from "./registry.ts";
import { createTriggerEndpoint, runStatus, statusSubject } from "./trigger.ts";

/** pipeline-bridge: NATS triggers to Argo Workflows and Kubeflow Pipelines runs. */
export const pipelineBridgeService = defineService({
  name: "pipeline-bridge",
  description: "Starts Argo Workflows and Kubeflow Pipelines runs on request and reports them",
  config: pipelineBridgeConfigSpec,
  // A trigger must never be lost: AI_PIPELINE's durable consumer unless told otherwise.
  consumeMode: "jetstream",
  async setup(config, { logger, signal }) {
    let registry;
    try {
      registry = await loadRegistry(config.pipelinesConfig);
    } catch (error) {
      if (error instanceof RegistryError) {
        throw new ConfigError([{
          name: "PIPELINES_CONFIG",
          problem: `is unusable: ${error.message}`,
        }]);
      }
      throw error;
    }
    const engines: { argo?: Engine; kubeflow?: Engine } = {};
    if (registry.engines().has("argo")) {
      try {
        engines.argo = argoEngine(await argoClientFromConfig(config, { logger }));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new ConfigError([{ name: "KUBECONFIG", problem: `is unusable: ${reason}` }]);
      }
    }
    if (registry.engines().has("kubeflow")) {
      engines.kubeflow = kubeflowEngine(kubeflowClientFromConfig(config, { logger }));
    }
    logger.info("Pipelines registered", {
      pipelines: registry.names(),
      file: config.pipelinesConfig ?? null,
    });

    let nc: NatsConnection | undefined;
    const stop = new AbortController();
    const following = AbortSignal.any([signal, stop.signal]);
    const follower = new RunFollower({
      pollMs: config.pipelinePollMs,
      maxPollMs: Math.max(config.pipelinePollMaxMs, config.pipelinePollMs),
      logger,
      signal: following,
      publish(run) {
        if (!nc) throw new Error("Cannot publish a status: not connected yet");
        publish(nc, statusSubject(run.requestId), PipelineStatusSchema, runStatus(run));
      },
    });
    const endpoint = createTriggerEndpoint({
      registry,
      engines,
      follower,
      submitAttempts: config.pipelineSubmitAttempts,
      retryDelayMs: config.pipelineRetryDelayMs,
      consumeMode: config.consumeMode,
      maxDeliver: config.jetstreamMaxDeliver,
      onConnection(connection) {
        nc ??= connection;
      },
    });
    return {
      endpoints: [endpoint],
      checks: {},
      onStart(service) {
        nc ??= service.nc;
        // Resuming runs in the background: the service serves meanwhile.
        follower.resume(Object.values(engines)).catch((error) =>
          logger.error("Resuming runs failed", { error })
        );
        return Promise.resolve();
      },
      async dispose() {
        stop.abort();
        await follower.settled();
      },
    };
  },
});
