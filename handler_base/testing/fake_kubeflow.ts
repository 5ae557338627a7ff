/**
 * A fake Kubeflow Pipelines API (v2beta1 runs, SYSTEM.md section 7) on a
 * free loopback port, over real HTTP:
 *
 * - `POST /apis/v2beta1/runs` creates a run in state `PENDING`;
 * - `GET /apis/v2beta1/runs/{run_id}` reads one (404 when unknown);
 * - `GET /apis/v2beta1/runs` lists runs, newest first, with `page_size`,
 *   `page_token` and a `filter` (the URL-encoded JSON of KFP's filter:
 *   predicates on `display_name`, `run_id` or `state` with `EQUALS`,
 *   `NOT_EQUALS` or `IS_SUBSTRING`);
 * - `GET /apis/v2beta1/pipelines` lists the known pipelines.
 *
 * Errors have KFP's shape `{error, code, message}`. With a `token`, requests
 * need `Authorization: Bearer <token>` (else 401). Besides the scripting
 * every fake has, a test can lose the next create's response after the run
 * was stored, set a run's state, or let every new run advance by itself.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example Create a run and finish it
 * ```ts
 * import { startFakeKubeflow } from "@homelab/handler-base/testing";
 *
 * await using kfp = startFakeKubeflow();
 * const response = await fetch(`${kfp.url}/apis/v2beta1/runs`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({
 *     display_name: "demo",
 *     pipeline_version_reference: { pipeline_id: "p1" },
 *     runtime_config: { parameters: { text: "hi" } },
 *   }),
 * });
 * const run = await response.json();
 * kfp.setState(run.run_id, "SUCCEEDED");
 * console.log(kfp.runs.get(run.run_id)?.state); // "SUCCEEDED"
 * ```
 *
 * @module
 */
import { isRecord } from "../clients/_json.ts";
import {
  type FakeServer,
  lostResponseBody,
  Mailbox,
  type RecordedRequest,
  startFakeHttpServer,
} from "./fake_http.ts";

/** A run as the fake stores it (KFP v2beta1 field names). */
export interface FakeKubeflowRun {
  /** The run's id (a UUID). */
  run_id: string;
  /** The display name given at creation. */
  display_name: string;
  /** The experiment, when one was given. */
  experiment_id?: string;
  /** `{pipeline_id, pipeline_version_id}` as given. */
  pipeline_version_reference: unknown;
  /** `{parameters}` as given. */
  runtime_config: unknown;
  /** `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELED`, ... */
  state: string;
  /** When the run was created (RFC 3339). */
  created_at: string;
  /** When it finished, once it did. */
  finished_at?: string;
  /** The failure, once it failed. */
  error?: { code: number; message: string };
}

/** One step of a run's automatic advancement. */
export interface RunStateStep {
  /** The state to set. */
  state: string;
  /** Milliseconds after the run's creation. */
  afterMs: number;
  /**
   * The error message set with a `FAILED` state.
   *
   * @default none
   */
  message?: string;
}

/** Options of {@linkcode startFakeKubeflow}. */
export interface FakeKubeflowConfig {
  /**
   * The bearer token requests must carry.
   *
   * @default none (no authentication)
   */
  token?: string;
  /**
   * The pipeline ids that exist; creating a run of another answers 404.
   *
   * @default any id is accepted
   */
  pipelines?: readonly string[];
  /**
   * The states every new run goes through by itself (for a local stack).
   *
   * @default none (states change only by setState)
   */
  schedule?: (run: FakeKubeflowRun) => readonly RunStateStep[];
}

/** A running fake KFP API. */
export interface FakeKubeflow extends FakeServer {
  /** The stored runs by id. */
  readonly runs: ReadonlyMap<string, FakeKubeflowRun>;
  /**
   * Sets a run's state (and, for a failure, its error message).
   *
   * @param runId The run's id.
   * @param state The state.
   * @param message The error message.
   * @throws {Error} When there is no such run.
   */
  setState(runId: string, state: string, message?: string): void;
  /** Stores the next created run, then breaks the connection instead of answering. */
  loseNextCreate(): void;
  /** Resolves with the next run created (or one created since the last call). */
  nextRun(signal?: AbortSignal): Promise<FakeKubeflowRun>;
}

const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"]);

function kfpError(status: number, code: number, message: string): Response {
  return Response.json({ error: message, code, message, details: [] }, { status });
}

interface Predicate {
  key: string;
  operation: string;
  value: string;
}

function parseFilter(text: string | null): Predicate[] | undefined {
  if (!text) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (!isRecord(parsed)) return undefined;
    const predicates = parsed.predicates ?? [];
    if (!Array.isArray(predicates)) return undefined;
    return predicates.map((p) => {
      if (!isRecord(p) || typeof p.key !== "string" || typeof p.operation !== "string") {
        throw new TypeError("bad predicate");
      }
      const value = p.string_value ?? p.stringValue ?? "";
      return { key: p.key, operation: p.operation, value: String(value) };
    });
  } catch {
    return undefined;
  }
}

function accepts(run: FakeKubeflowRun, predicates: readonly Predicate[]): boolean {
  return predicates.every(({ key, operation, value }) => {
    const field = String((run as unknown as Record<string, unknown>)[key] ?? "");
    if (operation === "EQUALS") return field === value;
    if (operation === "NOT_EQUALS") return field !== value;
    if (operation === "IS_SUBSTRING") return field.includes(value);
    return false;
  });
}

/**
 * Starts a fake KFP v2beta1 API.
 *
 * @param config Token, known pipelines and automatic states.
 * @returns The running server; dispose it to stop it.
 *
 * @example Runs that finish by themselves
 * ```ts
 * import { startFakeKubeflow } from "@homelab/handler-base/testing";
 *
 * await using kfp = startFakeKubeflow({
 *   schedule: () => [{ state: "RUNNING", afterMs: 100 }, { state: "SUCCEEDED", afterMs: 500 }],
 * });
 * console.log(kfp.url.startsWith("http://127.0.0.1:")); // true
 * ```
 */
export function startFakeKubeflow(config: FakeKubeflowConfig = {}): FakeKubeflow {
  const runs = new Map<string, FakeKubeflowRun>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const created = new Mailbox<FakeKubeflowRun>();
  let loseCreate = 0;
  let sequence = 0;
  const order = new Map<string, number>();

  function setState(runId: string, state: string, message?: string): void {
    const run = runs.get(runId);
    if (!run) throw new Error(`No run "${runId}" in the fake Kubeflow API`);
    run.state = state;
    if (TERMINAL.has(state)) run.finished_at = new Date().toISOString();
    if (state === "FAILED") run.error = { code: 2, message: message ?? "The run failed" };
  }

  function create(request: RecordedRequest): Response {
    const body = request.json;
    if (!isRecord(body)) return kfpError(400, 3, "Invalid input error: the body is not a run");
    const reference = body.pipeline_version_reference;
    const pipelineId = isRecord(reference) ? reference.pipeline_id : undefined;
    if (typeof pipelineId !== "string" || !pipelineId) {
      return kfpError(400, 3, "Invalid input error: pipeline_version_reference is required");
    }
    if (config.pipelines && !config.pipelines.includes(pipelineId)) {
      return kfpError(404, 5, `Pipeline ${pipelineId} not found`);
    }
    const run: FakeKubeflowRun = {
      run_id: crypto.randomUUID(),
      display_name: typeof body.display_name === "string" ? body.display_name : "",
      ...(typeof body.experiment_id === "string" ? { experiment_id: body.experiment_id } : {}),
      pipeline_version_reference: reference,
      runtime_config: body.runtime_config ?? {},
      state: "PENDING",
      created_at: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    };
    runs.set(run.run_id, run);
    order.set(run.run_id, ++sequence);
    created.put(run);
    for (const step of config.schedule?.(run) ?? []) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (runs.get(run.run_id) === run) setState(run.run_id, step.state, step.message);
      }, step.afterMs);
      timers.add(timer);
    }
    if (loseCreate > 0) {
      loseCreate--;
      return new Response(lostResponseBody("Fake Kubeflow API"), {
        headers: { "content-type": "application/json" },
      });
    }
    return Response.json(run);
  }

  function list(request: RecordedRequest): Response {
    const params = new URLSearchParams(request.search);
    const predicates = parseFilter(params.get("filter"));
    if (!predicates) return kfpError(400, 3, "Invalid input error: cannot parse the filter");
    const size = Math.min(Math.max(Number(params.get("page_size") ?? "20") || 20, 1), 200);
    const start = Number(params.get("page_token") ?? "0") || 0;
    const matching = [...runs.values()]
      .filter((run) => accepts(run, predicates))
      .sort((a, b) => order.get(b.run_id)! - order.get(a.run_id)!);
    const page = matching.slice(start, start + size);
    const next = start + size < matching.length ? String(start + size) : "";
    return Response.json({
      ...(page.length > 0 ? { runs: page } : {}),
      total_size: matching.length,
      ...(next ? { next_page_token: next } : {}),
    });
  }

  const server = startFakeHttpServer((request) => {
    if (config.token && request.headers.get("authorization") !== `Bearer ${config.token}`) {
      return kfpError(401, 16, "Unauthenticated: the request has no valid bearer token");
    }
    if (request.path === "/apis/v2beta1/pipelines" && request.method === "GET") {
      const ids = config.pipelines ?? [];
      return Response.json({
        pipelines: ids.map((id) => ({ pipeline_id: id, display_name: id })),
        total_size: ids.length,
      });
    }
    if (request.path === "/apis/v2beta1/runs") {
      if (request.method === "POST") return create(request);
      if (request.method === "GET") return list(request);
    }
    const match = /^\/apis\/v2beta1\/runs\/([^/]+)$/.exec(request.path);
    if (match && request.method === "GET") {
      const run = runs.get(decodeURIComponent(match[1]!));
      return run ? Response.json(run) : kfpError(404, 5, `Run ${match[1]} not found`);
    }
    return kfpError(404, 5, `Not Found: ${request.method} ${request.path}`);
  });

  return {
    ...server,
    runs,
    setState,
    loseNextCreate() {
      loseCreate++;
    },
    nextRun: (signal) => created.next(signal),
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await server.close();
    },
    async [Symbol.asyncDispose]() {
      await this.close();
    },
  };
}
