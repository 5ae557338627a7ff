/**
 * The one table of the project's services: name, entry file and definition.
 * The permission set of each service in the root `deno.json` is named after
 * it. Everything that lists the services (the local stack, the compile
 * script, the manifests and permission tests) reads this table, so a new
 * service is one row here, its definition and entry file, its permission set
 * (`deno task permissions` writes the variables) and a manifest in `k8s/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SERVICES } from "./table.ts";
 *
 * assert.equal(SERVICES.map((s) => s.name).includes("tts-module"), true);
 * ```
 *
 * @module
 */
import type { ServiceDefinition } from "@homelab/handler-base/main";

/** A durable JetStream consumer of a service: what KEDA reads lag from. */
export interface ConsumerRef {
  /** The stream (a name of `STREAMS`). */
  readonly stream: string;
  /** The durable consumer's name. */
  readonly durable: string;
}

/** The subjects a service's NATS user may use, besides its inbox, `$SRV` and JetStream. */
export interface SubjectRights {
  /** What it subscribes to, as `subject` or `subject queue` (its inputs). */
  readonly subscribe: readonly string[];
  /** What it publishes to (its outputs). */
  readonly publish: readonly string[];
}

/** A read-only volume of a Deployment. */
export interface VolumeRef {
  /** The volume's name. */
  readonly name: string;
  /** Where it is mounted. */
  readonly mountPath: string;
  /** The persistent volume claim it comes from, or... */
  readonly claimName?: string;
  /** ...the ConfigMap it comes from. */
  readonly configMap?: string;
}

/** How a service is deployed: what the manifests and the broker's users are made of. */
export interface DeployProfile {
  /** The durable consumers of its JetStream consume mode. */
  readonly consumers: readonly ConsumerRef[];
  /** The container's memory limit in MiB; the V8 heap is sized from it. */
  readonly memoryMiB: number;
  /** The container's memory request in MiB. */
  readonly memoryRequestMiB: number;
  /** The container's CPU request, such as `50m`. */
  readonly cpu: string;
  /** The shutdown grace (`SHUTDOWN_GRACE_MS`) in the cluster, in seconds. */
  readonly graceSeconds: number;
  /**
   * The CPU utilization (percent of the request) KEDA scales on, for a service without
   * durable consumers to read lag from.
   */
  readonly cpuScaleTarget?: number;
  /** The most replicas KEDA may run. */
  readonly maxReplicas: number;
  /** More environment of the Deployment (variables the service declares). */
  readonly env?: Readonly<Record<string, string>>;
  /** Read-only volumes: a persistent volume claim or a ConfigMap. */
  readonly volumes?: readonly VolumeRef[];
  /** Whether it talks to the Kubernetes API with its own ServiceAccount (declared in one of its `extraManifests`). */
  readonly serviceAccount?: boolean;
  /** More egress ports beyond NATS and the backends its variables name (a Kubernetes API). */
  readonly egressPorts?: readonly number[];
  /** More manifests of its own in `k8s/` (a ServiceAccount and Role). */
  readonly extraManifests?: readonly string[];
  /** The broker subjects of its NATS user. */
  readonly nats: SubjectRights;
}

/** One service of the project. */
export interface ServiceEntry {
  /** The service name: its permission set, queue group, durable consumer and manifest. */
  readonly name: string;
  /** The entry file, relative to the repository root. */
  readonly entry: string;
  /** How it is deployed. */
  readonly deploy: DeployProfile;
  /** Loads the service's definition (lazily, so that reading the table loads no service). */
  load(): Promise<ServiceDefinition>;
}

/** Every service, in the order the stack starts them. */
export const SERVICES: readonly ServiceEntry[] = [
  {
    name: "chat-handler",
    entry: "services/chat.ts",
    deploy: {
      consumers: [
        { stream: "COMPANIONS_CHAT", durable: "chat-handler" },
        { stream: "COMPANIONS_CHAT", durable: "chat-handler-greeting" },
      ],
      memoryMiB: 256,
      memoryRequestMiB: 96,
      cpu: "50m",
      graceSeconds: 120,
      maxReplicas: 4,
      nats: {
        subscribe: [
          "ai.chat.request chat-handler",
          "ai.chat.user.*.message chat-handler",
          "ai.chat.user.*.greeting.request chat-handler",
        ],
        publish: [
          "ai.chat.response.>",
          "ai.chat.user.*.greeting.response",
          "dlq.chat-handler.>",
        ],
      },
    },
    load: async () => (await import("./chat/service.ts")).chatService,
  },
  {
    name: "tts-module",
    entry: "services/tts.ts",
    deploy: {
      consumers: [{ stream: "AI_VOICE_STREAM", durable: "tts-module" }],
      memoryMiB: 256,
      memoryRequestMiB: 128,
      cpu: "50m",
      graceSeconds: 320,
      maxReplicas: 4,
      env: { TTS_VOICES_DIR: "/voices" },
      volumes: [{ name: "voices", mountPath: "/voices", claimName: "tts-voices" }],
      nats: {
        subscribe: [
          "ai.voice.tts.request.> tts-module",
          "ai.voice.tts.voices.list tts-module",
          "ai.voice.tts.voices.refresh tts-module",
        ],
        publish: ["ai.voice.tts.audio.>", "ai.voice.tts.status.>", "dlq.tts-module.>"],
      },
    },
    load: async () => (await import("./tts/service.ts")).ttsService,
  },
  {
    name: "pipeline-bridge",
    entry: "services/pipeline_bridge.ts",
    deploy: {
      consumers: [{ stream: "AI_PIPELINE", durable: "pipeline-bridge" }],
      memoryMiB: 256,
      memoryRequestMiB: 96,
      cpu: "20m",
      graceSeconds: 30,
      // Every replica resumes the unfinished runs it finds: more than two only repeats statuses.
      maxReplicas: 2,
      env: {
        PIPELINES_CONFIG: "/etc/pipeline-bridge/pipelines.yaml",
        PIPELINE_POLL_MS: "5000",
      },
      volumes: [{
        name: "pipelines",
        mountPath: "/etc/pipeline-bridge",
        configMap: "pipeline-bridge-pipelines",
      }],
      serviceAccount: true,
      egressPorts: [443, 6443],
      extraManifests: ["pipeline-bridge-resources.yaml"],
      nats: {
        subscribe: ["ai.pipeline.trigger pipeline-bridge"],
        publish: ["ai.pipeline.status.>", "dlq.pipeline-bridge.>"],
      },
    },
    load: async () => (await import("./pipeline_bridge/service.ts")).pipelineBridgeService,
  },
  {
    name: "stt-module",
    entry: "services/stt.ts",
    deploy: {
      // Every replica sees every chunk (affinity decides who acts, docs/STT.md): no consumer
      // lag to read, so KEDA scales on the CPU the VAD costs.
      consumers: [],
      cpuScaleTarget: 60,
      memoryMiB: 256,
      memoryRequestMiB: 96,
      cpu: "100m",
      graceSeconds: 30,
      maxReplicas: 4,
      env: { STT_AFFINITY: "kv", STT_CLAIM_TTL_MS: "10000", STT_MAX_SESSIONS: "200" },
      nats: {
        subscribe: ["ai.voice.stream.>"],
        publish: [
          "ai.voice.transcription.>",
          // The session claims: the key-value bucket stt_sessions and its stream's API.
          "$KV.stt_sessions.>",
          "$JS.API.INFO",
          "$JS.API.STREAM.CREATE.KV_stt_sessions",
          "$JS.API.STREAM.INFO.KV_stt_sessions",
          // Raising a bucket made with fewer replicas to JETSTREAM_REPLICAS.
          "$JS.API.STREAM.UPDATE.KV_stt_sessions",
          "$JS.API.STREAM.MSG.GET.KV_stt_sessions",
          "$JS.API.DIRECT.GET.KV_stt_sessions.>",
        ],
      },
    },
    load: async () => (await import("./stt/service.ts")).sttService,
  },
  {
    name: "voice-assistant",
    entry: "services/voice.ts",
    deploy: {
      consumers: [{ stream: "AI_VOICE_STREAM", durable: "voice-assistant" }],
      // Up to VOICE_CONCURRENCY (8) requests, each holding its input (at most
      // VOICE_MAX_AUDIO_BYTES) and its answer's audio until the response.
      memoryMiB: 384,
      memoryRequestMiB: 128,
      cpu: "100m",
      // Above VOICE_TIMEOUT_MS (60 s): a request in flight finishes its answer.
      graceSeconds: 75,
      maxReplicas: 4,
      nats: {
        subscribe: ["ai.voice.request voice-assistant"],
        publish: ["ai.voice.response.>", "dlq.voice-assistant.>"],
      },
    },
    load: async () => (await import("./voice/service.ts")).voiceService,
  },
];

/**
 * The `-P=<set>` flag that runs a service with exactly its permission set.
 *
 * @param entry The service.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { permissionFlag, SERVICES } from "./table.ts";
 *
 * assert.equal(permissionFlag(SERVICES[0]!), "-P=chat-handler");
 * ```
 */
export function permissionFlag(entry: ServiceEntry): string {
  return `-P=${entry.name}`;
}

if (import.meta.main) {
  // `deno run services/table.ts` prints "name entry" lines for shell scripts.
  for (const service of SERVICES) console.log(`${service.name} ${service.entry}`);
}
