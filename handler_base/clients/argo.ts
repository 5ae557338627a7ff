/**
 * A client of Argo Workflows through the Kubernetes API, built on
 * `@kubernetes/client-node`: create a `Workflow` (`argoproj.io/v1alpha1`) in
 * one namespace, read one, list them by label selector, and watch them.
 *
 * Credentials come from a kubeconfig file (`KUBECONFIG`, its current
 * context) or, in a pod, from the service account (`KUBERNETES_SERVICE_HOST`
 * and `_PORT`, the token and CA under
 * `/var/run/secrets/kubernetes.io/serviceaccount`; the token file is read
 * again as the kubelet rotates it). `@kubernetes/client-node` refuses an
 * `http://` API server unless the kubeconfig's cluster sets
 * `insecure-skip-tls-verify: true` (fine for tests).
 *
 * Failures become the typed errors of `errors.ts`: an unreachable API server,
 * 429 and 5xx are retryable ({@linkcode BackendUnavailableError}, or
 * {@linkcode BackendError} with `retryable`), 401, 403, 409 and 422 are
 * {@linkcode BackendError}s with their status and the API's message, a call
 * that outlives `timeoutMs` a {@linkcode TimeoutError}. `get` answers
 * `undefined` for 404.
 *
 * Libraries under `@kubernetes/client-node` enumerate `process.env` when they
 * load, which Deno allows only with access to every variable. So that the
 * process can keep `--allow-env` to exactly its own names, the client is
 * loaded after `process.env` is narrowed to a view of the variables this
 * process may read (reads of others answer `undefined`; `Deno.env` is not
 * touched).
 *
 * Requires `--allow-net` to the API server, `--allow-read` of the kubeconfig
 * or of the service-account directory, and `--allow-env` of the variables of
 * {@linkcode argoConfigSpec}.
 *
 * @example Submit a Workflow from a template and read its phase
 * ```ts ignore
 * import { createArgoClient } from "@homelab/handler-base/clients/argo";
 *
 * const argo = await createArgoClient({ namespace: "ai-ml", kubeconfig: "/home/me/.kube/config" });
 * const workflow = await argo.create({
 *   metadata: { name: "ingest-1", labels: { "app.kubernetes.io/managed-by": "me" } },
 *   spec: { workflowTemplateRef: { name: "document-ingestion" } },
 * });
 * console.log((await argo.get(workflow.name))?.phase);
 * ```
 *
 * @module
 */
import type * as K8s from "@kubernetes/client-node";
import process from "node:process";
import { abortable } from "../async.ts";
import { type Config, envVar, type VarSpec } from "../config.ts";
import {
  BackendError,
  BackendUnavailableError,
  HandlerError,
  InvalidResponseError,
  TimeoutError,
} from "../errors.ts";
import type { Logger } from "../log.ts";
import { isRecord } from "./_json.ts";

/**
 * The API server's name inside a cluster. The in-cluster configuration uses
 * it rather than the IP in `KUBERNETES_SERVICE_HOST`, so that `--allow-net`
 * can name the host (the API server's certificate covers it).
 */
export const IN_CLUSTER_API_HOST = "kubernetes.default.svc";

/** Where a pod's service-account credentials are mounted. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

const GROUP = "argoproj.io";
const VERSION = "v1alpha1";
const PLURAL = "workflows";
const BACKEND = "kubernetes";

/** A Workflow as the client returns it: the fields a caller needs. */
export interface ArgoWorkflow {
  /** `metadata.name`. */
  readonly name: string;
  /** `metadata.uid`. */
  readonly uid: string;
  /** `metadata.labels`. */
  readonly labels: Readonly<Record<string, string>>;
  /** `metadata.creationTimestamp` (RFC 3339), or "" when the API sent none. */
  readonly createdAt: string;
  /** `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Error`), or "" before Argo saw it. */
  readonly phase: string;
  /** `status.message`, or "". */
  readonly message: string;
  /** `metadata.resourceVersion`. */
  readonly resourceVersion: string;
}

/** The Workflow to create: metadata and spec (apiVersion and kind are added). */
export interface ArgoWorkflowManifest {
  /** `name` (or `generateName`), `labels`, `annotations`. */
  metadata: {
    name?: string;
    generateName?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  /** The Workflow spec, such as `{ workflowTemplateRef: { name }, arguments: { parameters } }`. */
  spec: Record<string, unknown>;
}

/** A change a watch reports. */
export interface ArgoWatchEvent {
  /** `ADDED`, `MODIFIED`, `DELETED` (or `BOOKMARK`, `ERROR`). */
  readonly type: string;
  /** The Workflow after the change. */
  readonly workflow: ArgoWorkflow;
}

/** Options of one call. */
export interface ArgoCallOptions {
  /**
   * Cancels the call; it rejects with the signal's reason.
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** Options of {@linkcode createArgoClient}. */
export interface ArgoClientOptions {
  /** The namespace of the Workflows. */
  namespace: string;
  /**
   * The path of a kubeconfig file; its current context is used.
   *
   * @default the in-cluster service account
   */
  kubeconfig?: string;
  /**
   * The text of a kubeconfig (YAML or JSON), instead of a file.
   *
   * @default none
   */
  kubeconfigText?: string;
  /**
   * The API server of the in-cluster configuration, when no kubeconfig is
   * given: the values of `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
   *
   * @default none (then a kubeconfig is required)
   */
  inCluster?: { host: string; port: string };
  /**
   * The service-account directory of the in-cluster configuration.
   *
   * @default SERVICE_ACCOUNT_DIR
   */
  serviceAccountDir?: string;
  /**
   * How long one call may take, in milliseconds.
   *
   * @default 30000
   */
  timeoutMs?: number;
}

/** Argo Workflows in one namespace. */
export interface ArgoClient {
  /** The namespace. */
  readonly namespace: string;
  /** The API server's URL. */
  readonly server: string;
  /**
   * Creates a Workflow.
   *
   * @param manifest Its metadata and spec.
   * @param options The signal.
   * @returns The created Workflow.
   * @throws {BackendError} With status 409 when the name is taken, 401/403/422 for refusals.
   * @throws {BackendUnavailableError} When the API server cannot be reached (the Workflow may exist).
   */
  create(manifest: ArgoWorkflowManifest, options?: ArgoCallOptions): Promise<ArgoWorkflow>;
  /**
   * Reads a Workflow.
   *
   * @param name Its name.
   * @param options The signal.
   * @returns The Workflow, or undefined when there is none of that name.
   */
  get(name: string, options?: ArgoCallOptions): Promise<ArgoWorkflow | undefined>;
  /**
   * Lists the Workflows that match a label selector.
   *
   * @param labelSelector Such as `app.kubernetes.io/managed-by=pipeline-bridge`.
   * @param options The signal.
   * @returns The Workflows.
   */
  list(labelSelector: string, options?: ArgoCallOptions): Promise<ArgoWorkflow[]>;
  /**
   * Watches the Workflows that match a label selector until the server ends
   * the watch, it fails, or the signal fires.
   *
   * @param labelSelector The selector.
   * @param onEvent Called for each change.
   * @param options The signal.
   * @returns Resolves when the watch ended by itself or by the signal.
   * @throws {BackendUnavailableError | BackendError} When the watch cannot start or breaks.
   */
  watch(
    labelSelector: string,
    onEvent: (event: ArgoWatchEvent) => void,
    options?: ArgoCallOptions,
  ): Promise<void>;
}

let narrowed = false;

/**
 * Makes `process.env` a view of the variables this process may read, so that
 * libraries that enumerate it work under a narrow `--allow-env`.
 */
function narrowProcessEnv(): void {
  if (narrowed) return;
  narrowed = true;
  const mayRead = (key: string | symbol): key is string =>
    typeof key === "string" && Deno.permissions.querySync({ name: "env", variable: key }).state ===
      "granted";
  const read = (key: string | symbol) => mayRead(key) ? Deno.env.get(key) : undefined;
  if (Deno.permissions.querySync({ name: "env" }).state === "granted") return;
  process.env = new Proxy({} as Record<string, string | undefined>, {
    get: (_target, key) => read(key),
    has: (_target, key) => read(key) !== undefined,
    set: (_target, key, value) => {
      if (mayRead(key)) Deno.env.set(key, String(value));
      return true;
    },
    deleteProperty: () => true,
    ownKeys: () => [],
    getOwnPropertyDescriptor: (_target, key) => {
      const value = read(key);
      return value === undefined
        ? undefined
        : { value, enumerable: true, configurable: true, writable: true };
    },
  });
}

/** Loads `@kubernetes/client-node`'s used parts once `process.env` is narrowed. */
async function loadClientNode(): Promise<typeof import("./_client_node.ts")> {
  narrowProcessEnv();
  return await import("./_client_node.ts");
}

function toWorkflow(value: unknown): ArgoWorkflow {
  if (!isRecord(value) || !isRecord(value.metadata) || typeof value.metadata.name !== "string") {
    throw new InvalidResponseError(BACKEND, "a Workflow without metadata.name");
  }
  const meta = value.metadata;
  const status = isRecord(value.status) ? value.status : {};
  const labels: Record<string, string> = {};
  if (isRecord(meta.labels)) {
    for (const [key, label] of Object.entries(meta.labels)) {
      if (typeof label === "string") labels[key] = label;
    }
  }
  const text = (v: unknown) => typeof v === "string" ? v : v instanceof Date ? v.toISOString() : "";
  return {
    name: meta.name as string,
    uid: text(meta.uid),
    labels,
    createdAt: text(meta.creationTimestamp),
    phase: text(status.phase),
    message: text(status.message),
    resourceVersion: text(meta.resourceVersion),
  };
}

/** The API's own message in a Status body, scrubbed and bounded. */
function statusMessage(body: unknown): string {
  let parsed = body;
  if (typeof body === "string") {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = body;
    }
  }
  const message = isRecord(parsed) && typeof parsed.message === "string"
    ? parsed.message
    : typeof parsed === "string"
    ? parsed
    : "";
  // deno-lint-ignore no-control-regex
  const clean = message.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
  return clean.length > 200 ? `${clean.slice(0, 199)}…` : clean;
}

/**
 * Creates a client of the Workflows in one namespace. Loads
 * `@kubernetes/client-node` on the first call (see the module doc).
 *
 * @param options The namespace, the credentials and the timeout.
 * @returns The client.
 * @throws {Error} When there are no credentials, or the kubeconfig cannot be read or has no current cluster.
 *
 * @example Against a fake API server
 * ```ts
 * import { createArgoClient } from "@homelab/handler-base/clients/argo";
 * import { startFakeKubernetes } from "@homelab/handler-base/testing";
 *
 * await using k8s = startFakeKubernetes({ namespace: "ai-ml" });
 * const argo = await createArgoClient({ namespace: "ai-ml", kubeconfigText: k8s.kubeconfig() });
 * await argo.create({ metadata: { name: "demo", labels: { team: "a" } }, spec: {} });
 * console.log((await argo.list("team=a")).map((w) => w.name)); // ["demo"]
 * ```
 */
export async function createArgoClient(options: ArgoClientOptions): Promise<ArgoClient> {
  const k8s = await loadClientNode();
  const { namespace, timeoutMs = 30_000 } = options;
  const kc = new k8s.KubeConfig();
  if (options.kubeconfigText !== undefined) {
    kc.loadFromString(options.kubeconfigText);
  } else if (options.kubeconfig) {
    kc.loadFromFile(options.kubeconfig);
  } else if (options.inCluster) {
    const dir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
    const host = options.inCluster.host.includes(":")
      ? `[${options.inCluster.host}]`
      : options.inCluster.host;
    kc.loadFromOptions({
      clusters: [{
        name: "in-cluster",
        server: `https://${host}:${options.inCluster.port}`,
        caFile: `${dir}/ca.crt`,
        skipTLSVerify: false,
      }],
      users: [{
        name: "in-cluster",
        authProvider: { name: "tokenFile", config: { tokenFile: `${dir}/token` } },
      }],
      contexts: [{ name: "in-cluster", cluster: "in-cluster", user: "in-cluster", namespace }],
      currentContext: "in-cluster",
    });
  } else {
    throw new Error(
      "Cannot configure the Kubernetes client: set KUBECONFIG, or run in a pod with a service account",
    );
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("Cannot configure the Kubernetes client: no current cluster");
  const api = kc.makeApiClient(k8s.CustomObjectsApi);

  function toError(error: unknown, scope: AbortSignal, caller: AbortSignal | undefined): unknown {
    if (caller?.aborted) return caller.reason;
    if (error instanceof HandlerError) return error;
    if (scope.aborted) {
      return new TimeoutError(`Backend "${BACKEND}" did not answer within ${timeoutMs} ms`, {
        cause: error,
      });
    }
    if (error instanceof k8s.ApiException) {
      const status = Number(error.code);
      const excerpt = statusMessage(error.body);
      if (status === 429 || status === 502 || status === 503 || status === 504) {
        return new BackendUnavailableError(BACKEND, {
          detail: `status ${status}${excerpt ? `: ${excerpt}` : ""}`,
          cause: error,
        });
      }
      return new BackendError(BACKEND, {
        status,
        excerpt,
        retryable: status >= 500,
        cause: error,
      });
    }
    return new BackendUnavailableError(BACKEND, {
      detail: "the connection failed or broke",
      cause: error,
    });
  }

  async function call<T>(
    caller: AbortSignal | undefined,
    run: (options: K8s.ConfigurationOptions) => Promise<T>,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = caller ? AbortSignal.any([caller, timeout]) : timeout;
    const withSignal: K8s.ConfigurationOptions = {
      middleware: [{
        pre: (context) => {
          context.setSignal(signal);
          return new k8s.Observable(Promise.resolve(context));
        },
        post: (response) => new k8s.Observable(Promise.resolve(response)),
      }],
      middlewareMergeStrategy: "append",
    };
    try {
      return await abortable(run(withSignal), signal);
    } catch (error) {
      throw toError(error, timeout, caller);
    }
  }

  const base = { group: GROUP, version: VERSION, namespace, plural: PLURAL };
  return {
    namespace,
    server: cluster.server,
    async create(manifest, callOptions = {}) {
      const body = { apiVersion: `${GROUP}/${VERSION}`, kind: "Workflow", ...manifest };
      const created = await call(
        callOptions.signal,
        (o) => api.createNamespacedCustomObject({ ...base, body }, o),
      );
      return toWorkflow(created);
    },
    async get(name, callOptions = {}) {
      try {
        return toWorkflow(
          await call(
            callOptions.signal,
            (o) => api.getNamespacedCustomObject({ ...base, name }, o),
          ),
        );
      } catch (error) {
        if (error instanceof BackendError && error.status === 404) return undefined;
        throw error;
      }
    },
    async list(labelSelector, callOptions = {}) {
      const result = await call(
        callOptions.signal,
        (o) => api.listNamespacedCustomObject({ ...base, labelSelector }, o),
      );
      if (!isRecord(result) || !Array.isArray(result.items)) {
        throw new InvalidResponseError(BACKEND, "a Workflow list without items");
      }
      return result.items.map(toWorkflow);
    },
    async watch(labelSelector, onEvent, callOptions = {}) {
      const { signal } = callOptions;
      if (signal?.aborted) return;
      const watcher = new k8s.Watch(kc);
      const ended = Promise.withResolvers<void>();
      const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
      const controller = await watcher.watch(
        path,
        { labelSelector },
        (type: string, object: unknown) => {
          try {
            onEvent({ type, workflow: toWorkflow(object) });
          } catch {
            // An event without a Workflow (a bookmark or an error status) is skipped.
          }
        },
        (error: unknown) => {
          if (!error || signal?.aborted) ended.resolve();
          else {
            const status = isRecord(error) ? Number(error.statusCode) : NaN;
            ended.reject(
              Number.isFinite(status)
                ? new BackendError(BACKEND, { status, retryable: status >= 500 })
                : new BackendUnavailableError(BACKEND, {
                  detail: "the watch failed or broke",
                  cause: error,
                }),
            );
          }
        },
      );
      const stop = () => {
        controller.abort();
        ended.resolve();
      };
      signal?.addEventListener("abort", stop, { once: true });
      try {
        await ended.promise;
      } finally {
        signal?.removeEventListener("abort", stop);
      }
    },
  };
}

/** The type of {@linkcode argoConfigSpec}. */
export type ArgoConfigSpec = {
  /** `ARGO_NAMESPACE`: the namespace of the Workflows. */
  readonly argoNamespace: VarSpec<string>;
  /** `KUBECONFIG`: a kubeconfig file; unset in a pod. */
  readonly kubeconfig: VarSpec<string | undefined>;
  /** `KUBERNETES_SERVICE_HOST`: set by Kubernetes in a pod; says the client runs in a cluster. */
  readonly kubernetesServiceHost: VarSpec<string | undefined>;
  /** `KUBERNETES_SERVICE_PORT`: its port. */
  readonly kubernetesServicePort: VarSpec<string | undefined>;
  /** `ARGO_TIMEOUT_MS`: how long one API call may take. */
  readonly argoTimeoutMs: VarSpec<number>;
};

/**
 * The variables of the Argo client: `ARGO_NAMESPACE` (`ai-ml`), `KUBECONFIG`
 * (a file; unset in a pod), `KUBERNETES_SERVICE_HOST` and
 * `KUBERNETES_SERVICE_PORT` (set by Kubernetes in every pod) and
 * `ARGO_TIMEOUT_MS` (30 s).
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { argoConfigSpec } from "@homelab/handler-base/clients/argo";
 *
 * console.log(loadConfig(argoConfigSpec, {}).argoNamespace); // "ai-ml"
 * ```
 */
export const argoConfigSpec: ArgoConfigSpec = Object.freeze({
  argoNamespace: envVar.string("ARGO_NAMESPACE", { default: "ai-ml" }),
  kubeconfig: envVar.string("KUBECONFIG"),
  kubernetesServiceHost: envVar.string("KUBERNETES_SERVICE_HOST"),
  kubernetesServicePort: envVar.string("KUBERNETES_SERVICE_PORT"),
  argoTimeoutMs: envVar.duration("ARGO_TIMEOUT_MS", { default: 30_000 }),
});

/** Options of {@linkcode argoClientFromConfig}. */
export interface ArgoFromConfigOptions {
  /**
   * Where the choice of credentials is logged.
   *
   * @default no logging
   */
  logger?: Logger;
}

/**
 * The Argo client a loaded {@linkcode argoConfigSpec} describes: `KUBECONFIG`
 * when set, else, in a pod (`KUBERNETES_SERVICE_HOST` is set), the service
 * account against {@linkcode IN_CLUSTER_API_HOST} on `KUBERNETES_SERVICE_PORT`.
 *
 * @param config The loaded variables.
 * @param options The logger.
 * @returns The client.
 * @throws {Error} When neither `KUBECONFIG` nor `KUBERNETES_SERVICE_HOST` is set, or the kubeconfig is unusable.
 *
 * @example
 * ```ts ignore
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { argoClientFromConfig, argoConfigSpec } from "@homelab/handler-base/clients/argo";
 *
 * const argo = await argoClientFromConfig(loadConfig(argoConfigSpec, Deno.env));
 * ```
 */
export async function argoClientFromConfig(
  config: Config<ArgoConfigSpec>,
  options: ArgoFromConfigOptions = {},
): Promise<ArgoClient> {
  const base = { namespace: config.argoNamespace, timeoutMs: config.argoTimeoutMs };
  const client = config.kubeconfig
    ? await createArgoClient({ ...base, kubeconfig: config.kubeconfig })
    : await createArgoClient({
      ...base,
      ...(config.kubernetesServiceHost
        ? {
          inCluster: {
            host: IN_CLUSTER_API_HOST,
            port: config.kubernetesServicePort ?? "443",
          },
        }
        : {}),
    });
  options.logger?.info("Kubernetes API configured", {
    server: client.server,
    namespace: client.namespace,
    credentials: config.kubeconfig ? "kubeconfig" : "service account",
  });
  return client;
}
