/**
 * A client of the Kubeflow Pipelines v2beta1 REST API (SYSTEM.md section 7):
 * create a run of a pipeline version (`POST /apis/v2beta1/runs` with
 * `pipeline_version_reference` and `runtime_config.parameters`), read one
 * (`GET /apis/v2beta1/runs/{run_id}`), and list runs with a filter
 * (`GET /apis/v2beta1/runs?filter=...`), on the HTTP layer of `http.ts`
 * (timeouts, typed errors, retries of reads).
 *
 * Creating a run is not idempotent for KFP: it is never retried here. A
 * caller that must not start a run twice gives each run a unique display
 * name and looks it up ({@linkcode KubeflowClient.findRunByDisplayName})
 * before creating it again.
 *
 * Requires `--allow-net` to the KFP host.
 *
 * @example Start a run and read its state
 * ```ts ignore
 * import { createKubeflowClient } from "@homelab/handler-base/clients/kubeflow";
 *
 * const kfp = createKubeflowClient({ baseUrl: "http://ml-pipeline.kubeflow.svc.cluster.local:8888" });
 * const run = await kfp.createRun({ displayName: "rag-query r1", pipelineId: "3f2a...", parameters: { q: "hi" } });
 * console.log((await kfp.getRun(run.runId))?.state); // "PENDING"
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import { BackendError, InvalidResponseError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type ClientOptions, createHttpClient, type HttpClient } from "./http.ts";
import { isRecord } from "./_json.ts";

const BACKEND = "kubeflow";
const RUNS = "/apis/v2beta1/runs";

/** The default of `KUBEFLOW_HOST` (SYSTEM.md section 6). */
export const DEFAULT_KUBEFLOW_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888";

/** A run as the client returns it. */
export interface KubeflowRun {
  /** `run_id`. */
  readonly runId: string;
  /** `display_name`. */
  readonly displayName: string;
  /** `state`: `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELED`, ... ("" when absent). */
  readonly state: string;
  /** `created_at` (RFC 3339), or "". */
  readonly createdAt: string;
  /** `error.message`, or "". */
  readonly errorMessage: string;
}

/** The run to create. */
export interface KubeflowRunRequest {
  /** The display name (unique per request, to find the run again). */
  displayName: string;
  /** The pipeline's id. */
  pipelineId: string;
  /**
   * The pipeline version's id.
   *
   * @default the pipeline's latest version
   */
  pipelineVersionId?: string;
  /**
   * The experiment to run in.
   *
   * @default the default experiment
   */
  experimentId?: string;
  /** The runtime parameters. */
  parameters: Readonly<Record<string, string>>;
}

/** Options of one call. */
export interface KubeflowCallOptions {
  /**
   * Cancels the call.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** Options of {@linkcode KubeflowClient.listRuns}. */
export interface ListRunsOptions extends KubeflowCallOptions {
  /**
   * Predicates that must all hold, as KFP's filter has them.
   *
   * @default none (every run)
   */
  predicates?: readonly { key: string; operation: string; stringValue: string }[];
  /**
   * Runs per page.
   *
   * @default 100
   */
  pageSize?: number;
  /**
   * The page to read (from a previous answer's `nextPageToken`).
   *
   * @default the first
   */
  pageToken?: string;
}

/** A page of runs. */
export interface KubeflowRunPage {
  /** The runs. */
  readonly runs: readonly KubeflowRun[];
  /** The token of the next page, or "" on the last. */
  readonly nextPageToken: string;
}

/** A client of the KFP v2beta1 runs API. */
export interface KubeflowClient {
  /** The base URL without credentials. */
  readonly baseUrl: string;
  /**
   * Creates a run (never retried: see the module doc).
   *
   * @param run The pipeline, version, display name and parameters.
   * @param options The signal.
   * @returns The created run.
   * @throws {BackendUnavailableError | BackendError | TimeoutError} As `http.ts`.
   */
  createRun(run: KubeflowRunRequest, options?: KubeflowCallOptions): Promise<KubeflowRun>;
  /**
   * Reads a run.
   *
   * @param runId The run's id.
   * @param options The signal.
   * @returns The run, or undefined when KFP does not know it.
   */
  getRun(runId: string, options?: KubeflowCallOptions): Promise<KubeflowRun | undefined>;
  /**
   * Lists runs, newest first.
   *
   * @param options Filter, page and signal.
   * @returns One page.
   */
  listRuns(options?: ListRunsOptions): Promise<KubeflowRunPage>;
  /**
   * The newest run with exactly this display name.
   *
   * @param displayName The display name.
   * @param options The signal.
   * @returns The run, or undefined.
   */
  findRunByDisplayName(
    displayName: string,
    options?: KubeflowCallOptions,
  ): Promise<KubeflowRun | undefined>;
}

/** Options of {@linkcode createKubeflowClient}. */
export interface KubeflowClientOptions extends ClientOptions {
  /**
   * A bearer token sent with every call (multi-user Kubeflow). Never logged.
   *
   * @default none
   */
  token?: string;
}

function toRun(value: unknown): KubeflowRun {
  if (!isRecord(value) || typeof value.run_id !== "string" || !value.run_id) {
    throw new InvalidResponseError(BACKEND, "a run without run_id");
  }
  const text = (v: unknown) => typeof v === "string" ? v : "";
  return {
    runId: value.run_id,
    displayName: text(value.display_name),
    state: text(value.state),
    createdAt: text(value.created_at),
    errorMessage: isRecord(value.error) ? text(value.error.message) : "",
  };
}

/**
 * Creates a KFP client.
 *
 * @param options Base URL, token, timeout and retry policy of reads.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Against the fake
 * ```ts
 * import { createKubeflowClient } from "@homelab/handler-base/clients/kubeflow";
 * import { startFakeKubeflow } from "@homelab/handler-base/testing";
 *
 * await using fake = startFakeKubeflow();
 * const kfp = createKubeflowClient({ baseUrl: fake.url });
 * const run = await kfp.createRun({ displayName: "r1", pipelineId: "p", parameters: {} });
 * console.log((await kfp.findRunByDisplayName("r1"))?.runId === run.runId); // true
 * ```
 */
export function createKubeflowClient(options: KubeflowClientOptions): KubeflowClient {
  const { token, ...rest } = options;
  const http: HttpClient = createHttpClient(BACKEND, {
    ...rest,
    ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
  });

  async function listRuns(list: ListRunsOptions = {}): Promise<KubeflowRunPage> {
    const params = new URLSearchParams({ page_size: String(list.pageSize ?? 100) });
    if (list.pageToken) params.set("page_token", list.pageToken);
    if (list.predicates?.length) {
      params.set(
        "filter",
        JSON.stringify({
          predicates: list.predicates.map((p) => ({
            key: p.key,
            operation: p.operation,
            string_value: p.stringValue,
          })),
        }),
      );
    }
    const body = await http.json(`${RUNS}?${params}`, {
      ...(list.signal ? { signal: list.signal } : {}),
    });
    if (!isRecord(body)) {
      throw new InvalidResponseError(BACKEND, "a run list that is not an object");
    }
    const runs = Array.isArray(body.runs) ? body.runs.map(toRun) : [];
    return {
      runs,
      nextPageToken: typeof body.next_page_token === "string" ? body.next_page_token : "",
    };
  }

  return {
    baseUrl: http.baseUrl,
    async createRun(run, call = {}) {
      const body = await http.json(RUNS, {
        json: {
          display_name: run.displayName,
          ...(run.experimentId ? { experiment_id: run.experimentId } : {}),
          pipeline_version_reference: {
            pipeline_id: run.pipelineId,
            ...(run.pipelineVersionId ? { pipeline_version_id: run.pipelineVersionId } : {}),
          },
          runtime_config: { parameters: { ...run.parameters } },
        },
        idempotent: false,
        ...(call.signal ? { signal: call.signal } : {}),
      });
      return toRun(body);
    },
    async getRun(runId, call = {}) {
      try {
        return toRun(
          await http.json(`${RUNS}/${encodeURIComponent(runId)}`, {
            ...(call.signal ? { signal: call.signal } : {}),
          }),
        );
      } catch (error) {
        if (error instanceof BackendError && error.status === 404) return undefined;
        throw error;
      }
    },
    listRuns,
    async findRunByDisplayName(displayName, call = {}) {
      const page = await listRuns({
        predicates: [{ key: "display_name", operation: "EQUALS", stringValue: displayName }],
        pageSize: 10,
        ...(call.signal ? { signal: call.signal } : {}),
      });
      return page.runs.find((run) => run.displayName === displayName);
    },
  };
}

/** The type of {@linkcode kubeflowConfigSpec}. */
export type KubeflowConfigSpec = {
  /** `KUBEFLOW_HOST`: the KFP API's base URL. */
  readonly kubeflowHost: VarSpec<string>;
  /** `KUBEFLOW_TOKEN`: a bearer token (secret), for multi-user Kubeflow. */
  readonly kubeflowToken: VarSpec<string | undefined>;
  /** `KUBEFLOW_TIMEOUT_MS`: how long one call may take. */
  readonly kubeflowTimeoutMs: VarSpec<number>;
};

/**
 * The variables of the KFP client: `KUBEFLOW_HOST`
 * ({@linkcode DEFAULT_KUBEFLOW_HOST}), `KUBEFLOW_TOKEN` (secret, optional) and
 * `KUBEFLOW_TIMEOUT_MS` (30 s).
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { kubeflowConfigSpec } from "@homelab/handler-base/clients/kubeflow";
 *
 * console.log(loadConfig(kubeflowConfigSpec, {}).kubeflowTimeoutMs); // 30000
 * ```
 */
export const kubeflowConfigSpec: KubeflowConfigSpec = Object.freeze({
  kubeflowHost: envVar.url("KUBEFLOW_HOST", {
    default: DEFAULT_KUBEFLOW_HOST,
    schemes: ["http", "https"],
  }),
  kubeflowToken: envVar.string("KUBEFLOW_TOKEN", { secret: true }),
  kubeflowTimeoutMs: envVar.duration("KUBEFLOW_TIMEOUT_MS", { default: 30_000 }),
});

/**
 * The KFP client a loaded {@linkcode kubeflowConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @param options The logger for retries of reads.
 * @returns The client.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { kubeflowClientFromConfig, kubeflowConfigSpec } from "@homelab/handler-base/clients/kubeflow";
 *
 * const kfp = kubeflowClientFromConfig(loadConfig(kubeflowConfigSpec, {}));
 * console.log(kfp.baseUrl); // "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
 * ```
 */
export function kubeflowClientFromConfig(
  config: Config<KubeflowConfigSpec>,
  options: { logger?: Logger } = {},
): KubeflowClient {
  return createKubeflowClient({
    baseUrl: config.kubeflowHost,
    timeoutMs: config.kubeflowTimeoutMs,
    ...(config.kubeflowToken ? { token: config.kubeflowToken } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}
