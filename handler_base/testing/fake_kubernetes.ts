/**
 * A fake Kubernetes API server for Argo Workflows: the subset pipeline-bridge
 * uses (SYSTEM.md section 7), on a free loopback port, over real HTTP.
 *
 * - `POST /apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows` creates a
 *   Workflow (`metadata.name` or `generateName`), 409 `AlreadyExists` when
 *   the name is taken;
 * - `GET .../workflows/{name}` reads one (404 `NotFound`);
 * - `GET .../workflows?labelSelector=...` lists by label selector (`k=v`,
 *   `k==v`, `k!=v`, `k`, `!k`, comma-separated), and with `watch=true`
 *   streams `ADDED`/`MODIFIED`/`DELETED` events as newline-delimited JSON.
 *
 * Requests need `Authorization: Bearer <token>` (else 401) and may only
 * touch the fake's namespace (else 403, as a namespaced Role answers).
 * Errors are Kubernetes `Status` objects. Besides the scripting every fake
 * has ({@linkcode FakeServer.failNext} with a method and path,
 * {@linkcode FakeServer.down}/{@linkcode FakeServer.up}, overrides), a test
 * can lose the next create's response after the Workflow was stored
 * ({@linkcode FakeKubernetes.loseNextCreate}), move a Workflow through its
 * phases ({@linkcode FakeKubernetes.setPhase}), or let every new Workflow
 * advance by itself on a schedule (for a local stack).
 *
 * {@linkcode FakeKubernetes.kubeconfig} is a kubeconfig for
 * `@kubernetes/client-node`, which talks to a plain `http://` server only
 * when the cluster sets `insecure-skip-tls-verify: true`.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @example A Workflow that runs and succeeds under test control
 * ```ts
 * import { startFakeKubernetes } from "@homelab/handler-base/testing";
 *
 * await using k8s = startFakeKubernetes({ namespace: "ai-ml" });
 * const response = await fetch(`${k8s.url}/apis/argoproj.io/v1alpha1/namespaces/ai-ml/workflows`, {
 *   method: "POST",
 *   headers: { authorization: `Bearer ${k8s.token}`, "content-type": "application/json" },
 *   body: JSON.stringify({ metadata: { name: "demo" }, spec: {} }),
 * });
 * console.log(response.status); // 201
 * await response.body?.cancel();
 * k8s.setPhase("demo", "Running");
 * console.log(k8s.workflows.get("demo")?.status?.phase); // "Running"
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

/** A Workflow as the fake stores it (the fields pipeline-bridge reads and writes). */
export interface FakeWorkflow {
  /** `argoproj.io/v1alpha1`. */
  apiVersion: string;
  /** `Workflow`. */
  kind: string;
  /** Name, namespace, labels, uid, resource version and creation time. */
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    creationTimestamp: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    [key: string]: unknown;
  };
  /** The spec as created. */
  spec: unknown;
  /** The status; absent until the first phase is set. */
  status?: { phase?: string; message?: string; [key: string]: unknown };
}

/** One step of a Workflow's automatic advancement. */
export interface PhaseStep {
  /** The phase to set (`Pending`, `Running`, `Succeeded`, `Failed`, `Error`). */
  phase: string;
  /** Milliseconds after the Workflow's creation. */
  afterMs: number;
  /**
   * The status message to set with it.
   *
   * @default none
   */
  message?: string;
}

/** Options of {@linkcode startFakeKubernetes}. */
export interface FakeKubernetesConfig {
  /**
   * The only namespace requests may touch.
   *
   * @default "ai-ml"
   */
  namespace?: string;
  /**
   * The bearer token requests must carry.
   *
   * @default "fake-kubernetes-token"
   */
  token?: string;
  /**
   * The phases every new Workflow goes through by itself (for a local
   * stack); tests leave it unset and call {@linkcode FakeKubernetes.setPhase}.
   *
   * @default none (phases change only by setPhase)
   */
  schedule?: (workflow: FakeWorkflow) => readonly PhaseStep[];
}

/** A running fake Kubernetes API server. */
export interface FakeKubernetes extends FakeServer {
  /** The namespace it serves. */
  readonly namespace: string;
  /** The bearer token it accepts. */
  readonly token: string;
  /** The stored Workflows by name. */
  readonly workflows: ReadonlyMap<string, FakeWorkflow>;
  /**
   * A kubeconfig (JSON, which is YAML too) whose current context points at
   * this server with its token and namespace.
   *
   * @returns The kubeconfig text.
   */
  kubeconfig(): string;
  /**
   * Sets a Workflow's phase (and message) and tells the watchers.
   *
   * @param name The Workflow's name.
   * @param phase The phase.
   * @param message The status message.
   * @throws {Error} When there is no such Workflow.
   */
  setPhase(name: string, phase: string, message?: string): void;
  /** Deletes a Workflow and tells the watchers. */
  deleteWorkflow(name: string): void;
  /**
   * Stores the next created Workflow, then breaks the connection instead of
   * answering (a response lost after the API server acted).
   */
  loseNextCreate(): void;
  /** Resolves with the next Workflow created (or one created since the last call). */
  nextWorkflow(signal?: AbortSignal): Promise<FakeWorkflow>;
}

interface Watcher {
  selector: LabelTerm[];
  controller: ReadableStreamDefaultController<Uint8Array>;
}

type LabelTerm =
  | { op: "eq" | "ne"; key: string; value: string }
  | { op: "exists" | "absent"; key: string };

const GROUP_PATH = "/apis/argoproj.io/v1alpha1/namespaces/";
const encoder = new TextEncoder();

/** Parses a Kubernetes label selector (equality and existence terms). */
function parseSelector(text: string): LabelTerm[] | undefined {
  const terms: LabelTerm[] = [];
  for (const raw of text.split(",")) {
    const term = raw.trim();
    if (!term) continue;
    let match = /^([\w./-]+)\s*!=\s*([\w.-]*)$/.exec(term);
    if (match) {
      terms.push({ op: "ne", key: match[1]!, value: match[2]! });
      continue;
    }
    match = /^([\w./-]+)\s*==?\s*([\w.-]*)$/.exec(term);
    if (match) {
      terms.push({ op: "eq", key: match[1]!, value: match[2]! });
      continue;
    }
    match = /^(!?)([\w./-]+)$/.exec(term);
    if (!match) return undefined;
    terms.push({ op: match[1] ? "absent" : "exists", key: match[2]! });
  }
  return terms;
}

function matches(labels: Record<string, string>, terms: readonly LabelTerm[]): boolean {
  return terms.every((term) => {
    const value = labels[term.key];
    switch (term.op) {
      case "eq":
        return value === term.value;
      case "ne":
        return value !== term.value;
      case "exists":
        return value !== undefined;
      case "absent":
        return value === undefined;
    }
  });
}

function status(code: number, reason: string, message: string): Response {
  return Response.json(
    { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code },
    { status: code },
  );
}

/**
 * Starts a fake Kubernetes API server for Argo Workflows.
 *
 * @param config Namespace, token and automatic phases.
 * @returns The running server; dispose it to stop it.
 *
 * @example Every new Workflow runs for a second, then succeeds
 * ```ts
 * import { startFakeKubernetes } from "@homelab/handler-base/testing";
 *
 * await using k8s = startFakeKubernetes({
 *   schedule: () => [
 *     { phase: "Pending", afterMs: 0 },
 *     { phase: "Running", afterMs: 200 },
 *     { phase: "Succeeded", afterMs: 1000 },
 *   ],
 * });
 * console.log(k8s.kubeconfig().includes("insecure-skip-tls-verify")); // true
 * ```
 */
export function startFakeKubernetes(config: FakeKubernetesConfig = {}): FakeKubernetes {
  const namespace = config.namespace ?? "ai-ml";
  const token = config.token ?? "fake-kubernetes-token";
  const workflows = new Map<string, FakeWorkflow>();
  const watchers = new Set<Watcher>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const created = new Mailbox<FakeWorkflow>();
  let version = 1;
  let uid = 0;
  let loseCreate = 0;

  function notify(type: "ADDED" | "MODIFIED" | "DELETED", workflow: FakeWorkflow): void {
    const line = encoder.encode(`${JSON.stringify({ type, object: workflow })}\n`);
    for (const watcher of watchers) {
      if (!matches(workflow.metadata.labels, watcher.selector)) continue;
      try {
        watcher.controller.enqueue(line);
      } catch {
        watchers.delete(watcher);
      }
    }
  }

  function endWatches(): void {
    for (const watcher of watchers) {
      try {
        watcher.controller.close();
      } catch {
        // Already closed by the client.
      }
    }
    watchers.clear();
  }

  function setPhase(name: string, phase: string, message?: string): void {
    const workflow = workflows.get(name);
    if (!workflow) throw new Error(`No Workflow "${name}" in the fake Kubernetes API`);
    workflow.status = { ...workflow.status, phase, ...(message ? { message } : {}) };
    if (["Succeeded", "Failed", "Error"].includes(phase)) {
      workflow.metadata.labels["workflows.argoproj.io/completed"] = "true";
    }
    workflow.metadata.resourceVersion = String(++version);
    notify("MODIFIED", workflow);
  }

  function create(request: RecordedRequest): Response {
    const body = request.json;
    if (!isRecord(body) || !isRecord(body.metadata)) {
      return status(
        400,
        "BadRequest",
        "Workflow in version v1alpha1 cannot be handled: no metadata",
      );
    }
    const meta = body.metadata;
    const name = typeof meta.name === "string" && meta.name
      ? meta.name
      : typeof meta.generateName === "string"
      ? `${meta.generateName}${(++uid).toString(36).padStart(5, "x")}`
      : "";
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) {
      return status(422, "Invalid", `Workflow.argoproj.io "${name}" is invalid: metadata.name`);
    }
    if (workflows.has(name)) {
      return status(409, "AlreadyExists", `workflows.argoproj.io "${name}" already exists`);
    }
    const labels = isRecord(meta.labels) ? meta.labels as Record<string, string> : {};
    const annotations = isRecord(meta.annotations)
      ? meta.annotations as Record<string, string>
      : {};
    const workflow: FakeWorkflow = {
      apiVersion: "argoproj.io/v1alpha1",
      kind: "Workflow",
      metadata: {
        ...meta,
        name,
        namespace,
        uid: crypto.randomUUID(),
        resourceVersion: String(++version),
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        labels: { ...labels },
        annotations: { ...annotations },
      },
      spec: body.spec ?? {},
    };
    workflows.set(name, workflow);
    notify("ADDED", workflow);
    created.put(workflow);
    for (const step of config.schedule?.(workflow) ?? []) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (workflows.get(name) === workflow) setPhase(name, step.phase, step.message);
      }, step.afterMs);
      timers.add(timer);
    }
    if (loseCreate > 0) {
      loseCreate--;
      return new Response(lostResponseBody("Fake Kubernetes API"), {
        status: 201,
        headers: { "content-type": "application/json" },
      });
    }
    return Response.json(workflow, { status: 201 });
  }

  function list(request: RecordedRequest): Response {
    const params = new URLSearchParams(request.search);
    const selector = parseSelector(params.get("labelSelector") ?? "");
    if (!selector) return status(400, "BadRequest", "unable to parse requirement: label selector");
    const items = [...workflows.values()].filter((w) => matches(w.metadata.labels, selector));
    const watch = params.get("watch");
    if (watch === "true" || watch === "1") {
      const since = Number(params.get("resourceVersion") ?? "0");
      let watcher: Watcher | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          watcher = { selector, controller };
          for (const item of items) {
            if (Number(item.metadata.resourceVersion) > since) {
              controller.enqueue(
                encoder.encode(`${JSON.stringify({ type: "ADDED", object: item })}\n`),
              );
            }
          }
          watchers.add(watcher);
        },
        cancel() {
          if (watcher) watchers.delete(watcher);
        },
      });
      return new Response(body, { headers: { "content-type": "application/json" } });
    }
    return Response.json({
      apiVersion: "argoproj.io/v1alpha1",
      kind: "WorkflowList",
      metadata: { resourceVersion: String(version) },
      items,
    });
  }

  const server = startFakeHttpServer((request) => {
    if (request.headers.get("authorization") !== `Bearer ${token}`) {
      return status(401, "Unauthorized", "Unauthorized");
    }
    if (!request.path.startsWith(GROUP_PATH)) {
      return status(404, "NotFound", `the server could not find the requested resource`);
    }
    const [ns, plural, name, ...rest] = request.path.slice(GROUP_PATH.length).split("/");
    if (plural !== "workflows" || rest.length > 0) {
      return status(404, "NotFound", "the server could not find the requested resource");
    }
    if (ns !== namespace) {
      return status(
        403,
        "Forbidden",
        `workflows.argoproj.io is forbidden: cannot access resource "workflows" in namespace "${ns}"`,
      );
    }
    if (!name && request.method === "POST") return create(request);
    if (!name && request.method === "GET") return list(request);
    if (name && request.method === "GET") {
      const workflow = workflows.get(decodeURIComponent(name));
      return workflow
        ? Response.json(workflow)
        : status(404, "NotFound", `workflows.argoproj.io "${name}" not found`);
    }
    return status(405, "MethodNotAllowed", `${request.method} is not supported`);
  });

  return {
    ...server,
    namespace,
    token,
    workflows,
    kubeconfig() {
      return JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{
          name: "fake",
          cluster: { server: server.url, "insecure-skip-tls-verify": true },
        }],
        users: [{ name: "fake", user: { token } }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "fake", namespace } }],
        "current-context": "fake",
      });
    },
    setPhase,
    deleteWorkflow(name) {
      const workflow = workflows.get(name);
      if (!workflow) return;
      workflows.delete(name);
      workflow.metadata.resourceVersion = String(++version);
      notify("DELETED", workflow);
    },
    loseNextCreate() {
      loseCreate++;
    },
    nextWorkflow: (signal) => created.next(signal),
    async down() {
      endWatches();
      await server.down();
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      endWatches();
      await server.close();
    },
    async [Symbol.asyncDispose]() {
      await this.close();
    },
  };
}
