/**
 * The two engines of pipeline-bridge behind one interface: submit a run for
 * a request id (idempotently), read it again, and find the runs that are not
 * finished (to resume following them after a restart).
 *
 * The request id is each run's key:
 * - Argo: the Workflow is labelled `pipeline-bridge.homelab.ai/request-id`
 *   (and `app.kubernetes.io/managed-by: pipeline-bridge`) and named
 *   `<pipeline>-<first 16 hex digits of sha256(request id)>`. A submit first
 *   lists by the label, then creates; a 409 (another attempt won the race, or
 *   an earlier response was lost) reads the existing Workflow instead.
 * - Kubeflow: the run's display name is `pipeline-bridge/<request id>/<pipeline>`;
 *   a submit first looks it up, then creates. A create whose response was
 *   lost is found by the next attempt's lookup.
 *
 * Argo phases and KFP states map onto `pending`, `running`, `succeeded`,
 * `failed` and `error` ({@linkcode argoPhase}, {@linkcode kubeflowPhase}).
 *
 * @example
 * ```ts
 * import { argoPhase, kubeflowPhase } from "./engines.ts";
 *
 * console.log(argoPhase(""), argoPhase("Running"), kubeflowPhase("CANCELED")); // pending running failed
 * ```
 *
 * @module
 */
import type { ArgoClient, ArgoWorkflow } from "@homelab/handler-base/clients/argo";
import type { KubeflowClient, KubeflowRun } from "@homelab/handler-base/clients/kubeflow";
import type { ArgoPipeline, EngineName, KubeflowPipeline, Pipeline } from "./registry.ts";

/** The phases a PipelineStatus reports after `submitted`. */
export type Phase = "pending" | "running" | "succeeded" | "failed" | "error";

/** The phases after which a run never changes. */
export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set(["succeeded", "failed", "error"]);

/** What the bridge knows of one run. */
export interface RunInfo {
  /** The engine. */
  readonly engine: EngineName;
  /** The Workflow's name or the KFP run id. */
  readonly runId: string;
  /** The trigger's request id. */
  readonly requestId: string;
  /** The pipeline's name. */
  readonly pipeline: string;
  /** The phase. */
  readonly phase: Phase;
  /** The engine's message (why it failed), or "". */
  readonly message: string;
  /** When the run was created (RFC 3339). */
  readonly createdAt: string;
}

/** A submission: what to run for which request. */
export interface Submission {
  /** The trigger's request id. */
  readonly requestId: string;
  /** The pipeline. */
  readonly pipeline: Pipeline;
  /** The parameters, defaults merged and validated. */
  readonly parameters: Readonly<Record<string, string>>;
}

/** One engine. */
export interface Engine {
  /** Its name. */
  readonly name: EngineName;
  /**
   * Starts the run of a submission, or finds the one that exists for its
   * request id.
   *
   * @returns The run and whether it existed before this call.
   */
  submit(
    submission: Submission,
    signal: AbortSignal,
  ): Promise<{ run: RunInfo; existed: boolean }>;
  /** Reads a run again; undefined when it is gone. */
  get(run: RunInfo, signal: AbortSignal): Promise<RunInfo | undefined>;
  /** The runs this bridge started that are not finished. */
  unfinished(signal: AbortSignal): Promise<RunInfo[]>;
}

/** The label that says a Workflow was started by pipeline-bridge. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
/** The label that holds a Workflow's request id. */
export const REQUEST_ID_LABEL = "pipeline-bridge.homelab.ai/request-id";
/** The label that holds a Workflow's pipeline name. */
export const PIPELINE_LABEL = "pipeline-bridge.homelab.ai/pipeline";
const MANAGER = "pipeline-bridge";
const KFP_PREFIX = "pipeline-bridge/";

/**
 * The phase of an Argo Workflow phase ("" before Argo saw the Workflow).
 *
 * @param phase The Argo phase.
 * @returns The bridge's phase.
 */
export function argoPhase(phase: string): Phase {
  switch (phase) {
    case "Running":
      return "running";
    case "Succeeded":
      return "succeeded";
    case "Failed":
      return "failed";
    case "Error":
      return "error";
    default:
      return "pending";
  }
}

/**
 * The phase of a KFP run state.
 *
 * @param state The KFP state.
 * @returns The bridge's phase.
 */
export function kubeflowPhase(state: string): Phase {
  switch (state) {
    case "RUNNING":
    case "PAUSED":
    case "CANCELING":
      return "running";
    case "SUCCEEDED":
    case "SKIPPED":
      return "succeeded";
    case "FAILED":
    case "CANCELED":
      return "failed";
    default:
      return "pending";
  }
}

async function shortHash(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest).slice(0, 8)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function fromWorkflow(workflow: ArgoWorkflow): RunInfo {
  return {
    engine: "argo",
    runId: workflow.name,
    requestId: workflow.labels[REQUEST_ID_LABEL] ?? "",
    pipeline: workflow.labels[PIPELINE_LABEL] ?? "",
    phase: argoPhase(workflow.phase),
    message: workflow.message,
    createdAt: workflow.createdAt || new Date().toISOString(),
  };
}

/**
 * The Argo engine.
 *
 * @param argo The client of the Workflows' namespace.
 * @returns The engine.
 */
export function argoEngine(argo: ArgoClient): Engine {
  return {
    name: "argo",
    async submit(submission, signal) {
      const { requestId } = submission;
      const pipeline = submission.pipeline as ArgoPipeline;
      const selector = `${MANAGED_BY_LABEL}=${MANAGER},${REQUEST_ID_LABEL}=${requestId}`;
      const [existing] = await argo.list(selector, { signal });
      if (existing) return { run: fromWorkflow(existing), existed: true };
      const name = `${pipeline.name}-${await shortHash(requestId)}`;
      try {
        const created = await argo.create({
          metadata: {
            name,
            labels: {
              [MANAGED_BY_LABEL]: MANAGER,
              [REQUEST_ID_LABEL]: requestId,
              [PIPELINE_LABEL]: pipeline.name,
            },
          },
          spec: {
            workflowTemplateRef: { name: pipeline.template },
            arguments: {
              parameters: Object.entries(submission.parameters).map(([n, value]) => ({
                name: n,
                value,
              })),
            },
          },
        }, { signal });
        return { run: fromWorkflow(created), existed: false };
      } catch (error) {
        if ((error as { status?: number }).status !== 409) throw error;
        const found = await argo.get(name, { signal });
        if (!found) throw error;
        return { run: fromWorkflow(found), existed: true };
      }
    },
    async get(run, signal) {
      const workflow = await argo.get(run.runId, { signal });
      return workflow && fromWorkflow(workflow);
    },
    async unfinished(signal) {
      const selector = `${MANAGED_BY_LABEL}=${MANAGER},workflows.argoproj.io/completed!=true`;
      return (await argo.list(selector, { signal })).map(fromWorkflow)
        .filter((run) => run.requestId && !TERMINAL_PHASES.has(run.phase));
    },
  };
}

function fromKubeflowRun(run: KubeflowRun): RunInfo | undefined {
  if (!run.displayName.startsWith(KFP_PREFIX)) return undefined;
  const [requestId = "", pipeline = ""] = run.displayName.slice(KFP_PREFIX.length).split("/");
  return {
    engine: "kubeflow",
    runId: run.runId,
    requestId,
    pipeline,
    phase: kubeflowPhase(run.state),
    message: run.errorMessage,
    createdAt: run.createdAt || new Date().toISOString(),
  };
}

/** How many pages of runs a resume reads at most. */
const MAX_RESUME_PAGES = 20;

/**
 * The Kubeflow engine.
 *
 * @param kfp The KFP client.
 * @returns The engine.
 */
export function kubeflowEngine(kfp: KubeflowClient): Engine {
  return {
    name: "kubeflow",
    async submit(submission, signal) {
      const { requestId } = submission;
      const pipeline = submission.pipeline as KubeflowPipeline;
      const marker = `${KFP_PREFIX}${requestId}/`;
      const page = await kfp.listRuns({
        predicates: [{ key: "display_name", operation: "IS_SUBSTRING", stringValue: marker }],
        pageSize: 10,
        signal,
      });
      const existing = page.runs.find((run) => run.displayName.startsWith(marker));
      const known = existing && fromKubeflowRun(existing);
      if (known) return { run: known, existed: true };
      const created = await kfp.createRun({
        displayName: `${marker}${pipeline.name}`,
        pipelineId: pipeline.pipelineId,
        ...(pipeline.versionId ? { pipelineVersionId: pipeline.versionId } : {}),
        ...(pipeline.experimentId ? { experimentId: pipeline.experimentId } : {}),
        parameters: submission.parameters,
      }, { signal });
      const run = fromKubeflowRun(created);
      if (!run) throw new Error("Cannot read the created run: its display name changed");
      return { run, existed: false };
    },
    async get(run, signal) {
      const found = await kfp.getRun(run.runId, { signal });
      return found && fromKubeflowRun(found);
    },
    async unfinished(signal) {
      const runs: RunInfo[] = [];
      let pageToken = "";
      for (let page = 0; page < MAX_RESUME_PAGES; page++) {
        const result = await kfp.listRuns({
          predicates: [{ key: "display_name", operation: "IS_SUBSTRING", stringValue: KFP_PREFIX }],
          ...(pageToken ? { pageToken } : {}),
          signal,
        });
        for (const run of result.runs) {
          const info = fromKubeflowRun(run);
          if (info && !TERMINAL_PHASES.has(info.phase)) runs.push(info);
        }
        pageToken = result.nextPageToken;
        if (!pageToken) break;
      }
      return runs;
    },
  };
}
