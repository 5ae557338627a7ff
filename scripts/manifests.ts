/**
 * Writes `k8s/` from the service table (`services/table.ts`) and each
 * service's definition, so that a new service is one row: per service a
 * Deployment, a PodDisruptionBudget, a KEDA ScaledObject and a
 * NetworkPolicy; the namespace, the backends' ConfigMap, the streams Job,
 * the nats-server authorization block and the kustomization that lists
 * them. `--check` writes nothing and exits 1 when a file is stale (CI runs
 * the same comparison in `k8s/manifests_test.ts`).
 *
 * Run: `deno task manifests` (or `deno task manifests --check`), then
 * `kubectl kustomize k8s/` renders the whole set.
 *
 * @module
 */
import type { VarSpec } from "@homelab/handler-base/config";
import { configVarNames } from "@homelab/handler-base/config";
import { STREAMS } from "@homelab/handler-base/jetstream";
import type { ServiceDefinition } from "@homelab/handler-base/main";
import { type DeployProfile, type ServiceEntry, SERVICES } from "../services/table.ts";
import { natsAuthorization } from "./nats_auth.ts";

/** The namespace of the platform (SYSTEM.md section 1). */
export const NAMESPACE = "ai-ml";

/** The ConfigMap of backend locations every service reads from (SYSTEM.md section 6). */
export const BACKENDS_CONFIG_MAP = "ai-backends";

/** The variables of SYSTEM.md section 6 that locate a backend; they live in the ConfigMap. */
export const BACKEND_VARIABLES = [
  "NATS_URL",
  "VLLM_URL",
  "EMBEDDINGS_URL",
  "RERANKER_URL",
  "MILVUS_HOST",
  "MILVUS_PORT",
  "COLLECTION_NAME",
  "TTS_URL",
  "WHISPER_URL",
  "KUBEFLOW_HOST",
  "ARGO_NAMESPACE",
] as const;

/**
 * The share of the memory limit given to V8's old space; the rest is code, stacks, buffers and
 * what the native allocator keeps (docs/RELIABILITY.md: 96 MiB of old space and 2 MiB semi-spaces
 * held a soaked tts-module at about 140 MiB resident under a 256 MiB limit).
 */
const HEAP_SHARE = 0.375;

/**
 * glibc's malloc settings of every service: two arenas (fewer per-thread heaps kept), and its trim
 * threshold fixed at its own default, 128 KiB. Unfixed, glibc raises it to twice the largest mapped
 * block freed so far, and the freed top of its heap then stays with the process: pipeline-bridge
 * idles about 17 MiB lower with it fixed (docs/PERFORMANCE.md, "Fifth pass"). The image sets them
 * (the Dockerfile's final stage) and so does every Deployment ({@linkcode runtimeEnv}).
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_TRIM_THRESHOLD_: "131072",
};

/**
 * The runtime settings of a service's Deployment: V8's heap limits sized from the memory limit
 * of `services/table.ts` (`DENO_V8_FLAGS`, which `deno run` and a compiled binary both read) and
 * glibc's ({@linkcode MALLOC_ENV}). The system suite starts the services with them too.
 *
 * @param deploy The service's deploy profile.
 * @returns The variables.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runtimeEnv } from "./manifests.ts";
 * import { SERVICES } from "../services/table.ts";
 *
 * const env = runtimeEnv(SERVICES.find((s) => s.name === "tts-module")!.deploy);
 * assert.equal(env.DENO_V8_FLAGS, "--max-old-space-size=96,--max-semi-space-size=2");
 * ```
 */
export function runtimeEnv(deploy: DeployProfile): Record<string, string> {
  const heapMiB = Math.floor(deploy.memoryMiB * HEAP_SHARE);
  return {
    DENO_V8_FLAGS: `--max-old-space-size=${heapMiB},--max-semi-space-size=2`,
    ...MALLOC_ENV,
  };
}

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };

/** A small YAML writer for the plain data of manifests (block style, quoted strings). */
export function toYaml(value: Yaml, indent = ""): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return value.map((item) => {
      const inner = toYaml(item, indent + "  ");
      return `\n${indent}- ${isBlock(item) ? inner.trimStart() : inner}`;
    }).join("");
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 0) return "{}";
    return entries.map(([key, item]) => {
      const inner = toYaml(item, indent + "  ");
      return `\n${indent}${key}:${isBlock(item) ? inner : ` ${inner}`}`;
    }).join("");
  }
  if (typeof value === "string") return JSON.stringify(value);
  return String(value);
}

function isBlock(value: Yaml): boolean {
  return value !== null && typeof value === "object" &&
    (Array.isArray(value) ? value.length > 0 : Object.keys(value).length > 0);
}

function document(header: string, ...objects: Yaml[]): string {
  const body = objects.map((o) => toYaml(o).trimStart()).join("\n---\n");
  return `${header.split("\n").map((l) => `# ${l}`.trimEnd()).join("\n")}\n${body}\n`;
}

function defaultOf(spec: VarSpec<unknown>): string | undefined {
  const result = spec.read(undefined);
  if (!result.ok || result.value === undefined) return undefined;
  return Array.isArray(result.value) ? result.value.join(",") : String(result.value);
}

function specByVariable(definition: ServiceDefinition): Map<string, VarSpec<unknown>> {
  return new Map(Object.values(definition.spec).map((spec) => [spec.name, spec]));
}

/** The port a default backend URL (or host) is reached on. */
function portOf(value: string): number | undefined {
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^[a-z]+:\/\//.test(value)) return undefined;
  const url = new URL(value);
  if (url.port) return Number(url.port);
  return { "http:": 80, "https:": 443, "nats:": 4222, "tls:": 4222 }[url.protocol];
}

const labels = (name: string) => ({
  "app.kubernetes.io/name": name,
  "app.kubernetes.io/part-of": "homelab-handlers",
});

function deployment(service: ServiceEntry, definition: ServiceDefinition): Yaml {
  const { deploy } = service;
  const declared = new Set(configVarNames(definition.spec));
  const env: Yaml[] = BACKEND_VARIABLES.filter((name) => declared.has(name)).map((name) => ({
    name,
    valueFrom: { configMapKeyRef: { name: BACKENDS_CONFIG_MAP, key: name } },
  }));
  for (const key of ["NATS_USER", "NATS_PASSWORD"]) {
    env.push({
      name: key,
      valueFrom: {
        secretKeyRef: {
          name: `nats-user-${service.name}`,
          key: key === "NATS_USER" ? "user" : "password",
          optional: true,
        },
      },
    });
  }
  const fixed: Record<string, string> = {
    CONSUME_MODE: deploy.consumers.length ? "jetstream" : "core",
    SHUTDOWN_GRACE_MS: String(deploy.graceSeconds * 1000),
    ...deploy.env,
  };
  for (const [name, value] of Object.entries(fixed)) env.push({ name, value });
  // Deno and glibc read these themselves, outside the permission system.
  for (const [name, value] of Object.entries(runtimeEnv(deploy))) env.push({ name, value });
  env.push(
    { name: "OTEL_DENO", value: "true" },
    { name: "OTEL_SERVICE_NAME", value: service.name },
    {
      name: "OTEL_EXPORTER_OTLP_ENDPOINT",
      value: "http://otel-collector.observability.svc.cluster.local:4318",
    },
  );
  const mounts: Yaml[] = [{ name: "tmp", mountPath: "/tmp" }];
  const volumes: Yaml[] = [{ name: "tmp", emptyDir: { sizeLimit: "16Mi" } }];
  for (const volume of deploy.volumes ?? []) {
    mounts.push({ name: volume.name, mountPath: volume.mountPath, readOnly: true });
    volumes.push(
      volume.configMap ? { name: volume.name, configMap: { name: volume.configMap } } : {
        name: volume.name,
        persistentVolumeClaim: { claimName: volume.claimName ?? volume.name, readOnly: true },
      },
    );
  }
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: service.name, labels: labels(service.name) },
    spec: {
      selector: { matchLabels: { "app.kubernetes.io/name": service.name } },
      template: {
        metadata: { labels: labels(service.name) },
        spec: {
          ...(deploy.serviceAccount ? { serviceAccountName: service.name } : {}),
          automountServiceAccountToken: Boolean(deploy.serviceAccount),
          terminationGracePeriodSeconds: deploy.graceSeconds + 15,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [{
            name: service.name,
            image: `${service.name}:${definition.version}`,
            ports: [{ name: "health", containerPort: 8080 }],
            env,
            livenessProbe: { httpGet: { path: "/health", port: "health" }, periodSeconds: 10 },
            readinessProbe: { httpGet: { path: "/ready", port: "health" }, periodSeconds: 5 },
            resources: {
              requests: { cpu: deploy.cpu, memory: `${deploy.memoryRequestMiB}Mi` },
              limits: { memory: `${deploy.memoryMiB}Mi` },
            },
            securityContext: {
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ["ALL"] },
            },
            volumeMounts: mounts,
          }],
          volumes,
        },
      },
    },
  };
}

function disruptionBudget(service: ServiceEntry): Yaml {
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: { name: service.name, labels: labels(service.name) },
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": service.name } },
    },
  };
}

function scaledObject(service: ServiceEntry): Yaml {
  return {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: { name: service.name, labels: labels(service.name) },
    spec: {
      scaleTargetRef: { name: service.name },
      minReplicaCount: 1,
      maxReplicaCount: service.deploy.maxReplicas,
      triggers: service.deploy.consumers.length
        ? service.deploy.consumers.map((consumer) => ({
          type: "nats-jetstream",
          metadata: {
            natsServerMonitoringEndpoint: "nats.ai-ml.svc.cluster.local:8222",
            account: "$G",
            stream: consumer.stream,
            consumer: consumer.durable,
            lagThreshold: "10",
          },
        }))
        : [{
          type: "cpu",
          metricType: "Utilization",
          metadata: { value: String(service.deploy.cpuScaleTarget ?? 60) },
        }],
    },
  };
}

function networkPolicy(service: ServiceEntry, definition: ServiceDefinition): Yaml {
  const specs = specByVariable(definition);
  const ports = new Set<number>(service.deploy.egressPorts ?? []);
  for (const name of BACKEND_VARIABLES) {
    const spec = specs.get(name);
    const value = spec && defaultOf(spec);
    const port = value === undefined ? undefined : portOf(value);
    if (port) ports.add(port);
  }
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: service.name, labels: labels(service.name) },
    spec: {
      podSelector: { matchLabels: { "app.kubernetes.io/name": service.name } },
      policyTypes: ["Ingress", "Egress"],
      // Only the kubelet's probes and KEDA's metrics need the health port.
      ingress: [{ ports: [{ protocol: "TCP", port: 8080 }] }],
      egress: [
        {
          to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
          ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
        },
        {
          ports: [...ports].sort((a, b) => a - b).map((port) => ({ protocol: "TCP", port })),
        },
      ],
    },
  };
}

function configMap(definitions: readonly ServiceDefinition[]): Yaml {
  const data: Record<string, string> = {};
  for (const name of BACKEND_VARIABLES) {
    for (const definition of definitions) {
      const spec = specByVariable(definition).get(name);
      const value = spec && defaultOf(spec);
      if (value !== undefined) {
        data[name] = value;
        break;
      }
    }
  }
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: BACKENDS_CONFIG_MAP },
    data,
  };
}

function streamsJob(): Yaml {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: "ensure-streams", labels: labels("ensure-streams") },
    spec: {
      backoffLimit: 10,
      ttlSecondsAfterFinished: 3600,
      template: {
        metadata: { labels: labels("ensure-streams") },
        spec: {
          restartPolicy: "OnFailure",
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [{
            name: "ensure-streams",
            image: "ensure-streams:0.1.0",
            env: [
              {
                name: "NATS_URL",
                valueFrom: { configMapKeyRef: { name: BACKENDS_CONFIG_MAP, key: "NATS_URL" } },
              },
              { name: "JETSTREAM_REPLICAS", value: "1" },
              ...["NATS_USER", "NATS_PASSWORD"].map((name) => ({
                name,
                valueFrom: {
                  secretKeyRef: {
                    name: "nats-user-admin",
                    key: name === "NATS_USER" ? "user" : "password",
                    optional: true,
                  },
                },
              })),
            ],
            resources: { requests: { cpu: "10m", memory: "64Mi" }, limits: { memory: "128Mi" } },
            securityContext: {
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ["ALL"] },
            },
          }],
        },
      },
    },
  };
}

/** Every file of `k8s/` this script owns, by path relative to the repository root. */
export async function renderManifests(): Promise<Map<string, string>> {
  const definitions = await Promise.all(SERVICES.map((s) => s.load()));
  const files = new Map<string, string>();
  const generated = "Generated by scripts/manifests.ts from services/table.ts: do not edit.";
  files.set(
    "k8s/namespace.yaml",
    document(generated, {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: NAMESPACE },
    }),
  );
  files.set(
    "k8s/backends.yaml",
    document(
      `${generated}\nWhere the backends are (SYSTEM.md section 6); edit with a kustomize patch.`,
      configMap(definitions),
    ),
  );
  files.set(
    "k8s/streams-job.yaml",
    document(
      `${generated}\nCreates or updates the JetStream streams (${
        Object.keys(STREAMS).join(", ")
      }).`,
      streamsJob(),
    ),
  );
  SERVICES.forEach((service, i) => {
    const definition = definitions[i]!;
    files.set(
      `k8s/${service.name}.yaml`,
      document(
        `${generated}\n${service.name}: ${definition.description}`,
        deployment(service, definition),
        disruptionBudget(service),
        scaledObject(service),
        networkPolicy(service, definition),
      ),
    );
  });
  files.set("k8s/nats/authorization.conf", natsAuthorization(SERVICES));
  const resources = [
    "namespace.yaml",
    "backends.yaml",
    "streams-job.yaml",
    ...SERVICES.flatMap((s) => [`${s.name}.yaml`, ...(s.deploy.extraManifests ?? [])]),
  ];
  files.set(
    "k8s/kustomization.yaml",
    document(generated, {
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      namespace: NAMESPACE,
      resources,
    }),
  );
  return files;
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const check = Deno.args.includes("--check");
  let stale = 0;
  for (const [path, content] of await renderManifests()) {
    const url = new URL(path, root);
    const current = await Deno.readTextFile(url).catch(() => undefined);
    if (current === content) continue;
    stale++;
    console.error(`${path}: ${check ? "stale" : "written"}`);
    if (!check) {
      await Deno.mkdir(new URL(".", url), { recursive: true });
      await Deno.writeTextFile(url, content);
    }
  }
  if (check && stale) Deno.exit(1);
}
