/**
 * The `ai.pipeline.trigger` endpoint of pipeline-bridge (SYSTEM.md section 5):
 * look the pipeline up, validate the request id and the parameters, submit
 * the run idempotently, publish PipelineStatus `submitted` on
 * `ai.pipeline.status.{request_id}` and answer it on the reply subject, then
 * follow the run (see `follow.ts`).
 *
 * Failures are statuses, not exceptions: an unknown pipeline is `error` with
 * `available_pipelines`, invalid parameters or a refused submission are
 * `error` with the reason. A submission that fails for a reason that may pass
 * (the API server is down, 5xx, a timeout) is tried `submitAttempts` times
 * with backoff; in JetStream mode, when attempts remain, the trigger is then
 * nak'd so that JetStream delivers it again later (the lookup by request id
 * makes that safe), and only the last delivery reports the error.
 *
 * The request id must be a Kubernetes label value (1 to 63 letters, digits,
 * `-`, `_` or `.`, starting and ending with a letter or digit), as it labels
 * the Workflow.
 *
 * @example
 * ```ts ignore
 * const endpoint = createTriggerEndpoint({ registry, engines, follower, submitAttempts: 3,
 *   retryDelayMs: 1000, consumeMode: "jetstream", maxDeliver: 5 });
 * ```
 *
 * @module
 */
import { delay } from "@homelab/handler-base/async";
import { HandlerError, isRetryable } from "@homelab/handler-base/errors";
import { type ConsumeMode, defineEndpoint, type Endpoint } from "@homelab/handler-base/handler";
import {
  type MessageInitShape,
  PipelineStatusSchema,
  PipelineTriggerSchema,
} from "@homelab/handler-base/messages";
import type { NatsConnection } from "@homelab/handler-base/natsutil";
import type { Engine, RunInfo } from "./engines.ts";
import type { RunFollower } from "./follow.ts";
import { type EngineName, type Registry, resolveParameters } from "./registry.ts";

/** The subject triggers arrive on. */
export const TRIGGER_SUBJECT = "ai.pipeline.trigger";

/**
 * The subject of a request's statuses.
 *
 * @param requestId The request id.
 * @returns `ai.pipeline.status.{request_id}`.
 */
export function statusSubject(requestId: string): string {
  return `ai.pipeline.status.${requestId}`;
}

/** A PipelineStatus to publish. */
export type PipelineStatusInit = MessageInitShape<typeof PipelineStatusSchema>;

const REQUEST_ID = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

/**
 * The PipelineStatus of a run at its phase (or `submitted`).
 *
 * @param run The run.
 * @param status The status word; the run's phase when omitted.
 * @returns The status.
 */
export function runStatus(run: RunInfo, status: string = run.phase): PipelineStatusInit {
  return {
    requestId: run.requestId,
    status,
    runId: run.runId,
    engine: run.engine,
    pipeline: run.pipeline,
    submittedAt: run.createdAt,
    error: run.phase === "failed" || run.phase === "error"
      ? (run.message || `The run ${run.phase === "failed" ? "failed" : "ended in an error"}`)
      : "",
  };
}

/** What the trigger endpoint needs. */
export interface TriggerDependencies {
  /** The registry. */
  registry: Registry;
  /** The configured engines. */
  engines: Partial<Record<EngineName, Engine>>;
  /** Follows submitted runs. */
  follower: RunFollower;
  /** How often one delivery tries a retryable submission. */
  submitAttempts: number;
  /** The first delay between two attempts, in milliseconds (doubles). */
  retryDelayMs: number;
  /** How the endpoint takes its messages. */
  consumeMode: ConsumeMode;
  /** The deliveries of one trigger in JetStream mode. */
  maxDeliver: number;
  /** Told the connection a handler runs on (the follower publishes through it). */
  onConnection?: (nc: NatsConnection) => void;
}

function failure(message: string): string {
  return message.length > 500 ? `${message.slice(0, 499)}…` : message;
}

/**
 * Creates the `ai.pipeline.trigger` endpoint (stream `AI_PIPELINE`, durable
 * consumer `pipeline-bridge` in JetStream mode).
 *
 * @param deps Registry, engines, follower and retry policy.
 * @returns The endpoint.
 */
export function createTriggerEndpoint(deps: TriggerDependencies): Endpoint {
  const { registry, engines, follower } = deps;
  /** Submissions in progress per request id, so duplicates in one process wait for the first. */
  const inFlight = new Map<string, Promise<unknown>>();

  return defineEndpoint({
    subject: TRIGGER_SUBJECT,
    name: "trigger",
    request: PipelineTriggerSchema,
    response: PipelineStatusSchema,
    stream: "AI_PIPELINE",
    async handle(trigger, ctx) {
      deps.onConnection?.(ctx.nc);
      const { requestId } = trigger;
      const pipelineName = trigger.pipeline.trim();
      ctx.addLogFields({ request_id: requestId, pipeline: pipelineName });
      const base = { requestId, pipeline: pipelineName };

      if (!REQUEST_ID.test(requestId)) {
        const status = {
          ...base,
          status: "error",
          error: "Cannot start a pipeline: request_id must be 1 to 63 letters, digits, '-', '_' " +
            "or '.', starting and ending with a letter or digit",
        };
        ctx.log.warn("Trigger refused", { reason: "invalid request_id" });
        return status;
      }
      const reply = (status: PipelineStatusInit): PipelineStatusInit => {
        ctx.publish(statusSubject(requestId), PipelineStatusSchema, status);
        return status;
      };

      const pipeline = registry.get(pipelineName);
      if (!pipeline) {
        ctx.log.warn("Trigger refused", { reason: "unknown pipeline" });
        return reply({
          ...base,
          status: "error",
          error: `Cannot start pipeline ${JSON.stringify(pipelineName)}: it is not registered`,
          availablePipelines: registry.names(),
        });
      }
      const engine = engines[pipeline.engine];
      if (!engine) {
        return reply({
          ...base,
          status: "error",
          engine: pipeline.engine,
          error:
            `Cannot start pipeline ${pipeline.name}: engine ${pipeline.engine} is not configured`,
        });
      }
      const resolved = resolveParameters(pipeline, trigger.parameters);
      if (!resolved.ok) {
        ctx.log.warn("Trigger refused", { reason: resolved.problem });
        return reply({
          ...base,
          status: "error",
          engine: pipeline.engine,
          error: failure(`Cannot start pipeline ${pipeline.name}: ${resolved.problem}`),
        });
      }

      const previous = inFlight.get(requestId);
      const submitting = (async () => {
        await previous?.catch(() => {});
        let lastError: unknown;
        for (let attempt = 1; attempt <= deps.submitAttempts; attempt++) {
          try {
            return await engine.submit(
              { requestId, pipeline, parameters: resolved.parameters },
              ctx.signal,
            );
          } catch (error) {
            lastError = error;
            if (ctx.signal.aborted || !isRetryable(error)) break;
            ctx.log.warn("Submission failed, trying again", { attempt, error });
            if (attempt < deps.submitAttempts) {
              await delay(deps.retryDelayMs * 2 ** (attempt - 1), { signal: ctx.signal });
            }
          }
        }
        throw lastError;
      })();
      inFlight.set(requestId, submitting);
      let result: Awaited<ReturnType<Engine["submit"]>>;
      try {
        result = await submitting;
      } catch (error) {
        const redeliver = deps.consumeMode === "jetstream" && isRetryable(error) &&
          ctx.attempt < deps.maxDeliver;
        if (redeliver) throw error;
        const detail = error instanceof HandlerError ? error.message : "internal error";
        ctx.log.error("Cannot submit the run", { error });
        return reply({
          ...base,
          status: "error",
          engine: pipeline.engine,
          error: failure(`Cannot start pipeline ${pipeline.name}: ${detail}`),
        });
      } finally {
        if (inFlight.get(requestId) === submitting) inFlight.delete(requestId);
      }
      const { run, existed } = result;
      ctx.log.info(existed ? "Run exists already" : "Run submitted", {
        run_id: run.runId,
        engine: run.engine,
      });
      const status = reply(runStatus(run, "submitted"));
      follower.follow(engine, run);
      return status;
    },
  });
}
