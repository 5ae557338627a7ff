/**
 * How a service takes the messages of endpoints that declare a `stream`: the
 * consume modes ({@linkcode CONSUME_MODES}), the `CONSUME_MODE` family of
 * variables ({@linkcode consumeConfigSpec}) and the settings `runService`
 * takes from them ({@linkcode consumeSettingsFromConfig}).
 *
 * Loading {@linkcode consumeConfigSpec} needs
 * `--allow-env=CONSUME_MODE,ENSURE_STREAMS,JETSTREAM_REPLICAS,JETSTREAM_MAX_DELIVER,JETSTREAM_ACK_WAIT_MS`.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { consumeConfigSpec, consumeSettingsFromConfig } from "@homelab/handler-base/consume-config";
 *
 * const settings = consumeSettingsFromConfig(loadConfig(consumeConfigSpec, {}));
 * console.log(settings.consumeMode, settings.jetstream?.maxDeliver); // "core" 5
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "./config.ts";
import type { JetStreamConsumerOptions } from "./consumer.ts";

/**
 * How a service takes the messages of endpoints that declare a `stream`: a
 * core queue subscription, or a durable JetStream pull consumer.
 *
 * @example
 * ```ts
 * import { CONSUME_MODES } from "@homelab/handler-base/consume-config";
 *
 * console.log(CONSUME_MODES.join(", ")); // core, jetstream
 * ```
 */
export const CONSUME_MODES = ["core", "jetstream"] as const;

/** One of {@linkcode CONSUME_MODES}. */
export type ConsumeMode = typeof CONSUME_MODES[number];

/** The type of {@linkcode consumeConfigSpec}. */
export type ConsumeConfigSpec = {
  /** `CONSUME_MODE`: `core` or `jetstream`. */
  readonly consumeMode: VarSpec<ConsumeMode>;
  /** `ENSURE_STREAMS`: create or update the streams at start. */
  readonly ensureStreams: VarSpec<boolean>;
  /** `JETSTREAM_REPLICAS`: how many servers hold each stream `ENSURE_STREAMS` applies. */
  readonly jetstreamReplicas: VarSpec<number>;
  /** `JETSTREAM_MAX_DELIVER`: deliveries of one message before it is dead-lettered. */
  readonly jetstreamMaxDeliver: VarSpec<number>;
  /** `JETSTREAM_ACK_WAIT_MS`: how long a delivery may go without an ack or progress. */
  readonly jetstreamAckWaitMs: VarSpec<number>;
};

/** The loaded {@linkcode consumeConfigSpec}. */
export type ConsumeConfig = Config<ConsumeConfigSpec>;

/**
 * The variables of the consume mode, for a service's config spec:
 * `CONSUME_MODE` (`core`), `ENSURE_STREAMS` (`false`), `JETSTREAM_REPLICAS`
 * (1, 1 to 5; 3 on a three-node cluster), `JETSTREAM_MAX_DELIVER` (5, 1 to 1000) and `JETSTREAM_ACK_WAIT_MS` (a
 * duration, 30 s).
 *
 * @example Compose and load
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { consumeConfigSpec, consumeSettingsFromConfig } from "@homelab/handler-base/consume-config";
 *
 * const config = loadConfig(consumeConfigSpec, { CONSUME_MODE: "jetstream" });
 * console.log(consumeSettingsFromConfig(config).consumeMode); // "jetstream"
 * ```
 */
export const consumeConfigSpec: ConsumeConfigSpec = Object.freeze({
  consumeMode: envVar.oneOf("CONSUME_MODE", CONSUME_MODES, { default: "core" }),
  ensureStreams: envVar.bool("ENSURE_STREAMS", { default: false }),
  jetstreamReplicas: envVar.int("JETSTREAM_REPLICAS", { default: 1, min: 1, max: 5 }),
  jetstreamMaxDeliver: envVar.int("JETSTREAM_MAX_DELIVER", { default: 5, min: 1, max: 1000 }),
  jetstreamAckWaitMs: envVar.duration("JETSTREAM_ACK_WAIT_MS", { default: 30_000 }),
});

/** How a service takes its stream-backed input; `runService` accepts these fields. */
export interface ConsumeSettings {
  /**
   * Core queue subscriptions or durable JetStream consumers for endpoints
   * that declare a `stream`.
   *
   * @default "core"
   */
  consumeMode?: ConsumeMode;
  /**
   * Create or update the platform's streams at start (`ensureStreams` of `streams.ts`).
   *
   * @default false
   */
  ensureStreams?: boolean;
  /**
   * How many servers hold each stream that `ensureStreams` creates or updates.
   *
   * @default 1 (each definition's own count)
   */
  streamReplicas?: number;
  /**
   * Consumer settings in JetStream mode.
   *
   * @default {}
   */
  jetstream?: JetStreamConsumerOptions;
}

/**
 * The {@linkcode ConsumeSettings} a loaded {@linkcode consumeConfigSpec} describes.
 *
 * @param config The loaded variables.
 * @returns Settings for `runService`.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { consumeConfigSpec, consumeSettingsFromConfig } from "@homelab/handler-base/consume-config";
 *
 * const settings = consumeSettingsFromConfig(
 *   loadConfig(consumeConfigSpec, { JETSTREAM_ACK_WAIT_MS: "1m" }),
 * );
 * console.log(settings.jetstream?.ackWaitMs); // 60000
 * ```
 */
export function consumeSettingsFromConfig(config: ConsumeConfig): ConsumeSettings {
  return {
    consumeMode: config.consumeMode,
    ensureStreams: config.ensureStreams,
    streamReplicas: config.jetstreamReplicas,
    jetstream: { maxDeliver: config.jetstreamMaxDeliver, ackWaitMs: config.jetstreamAckWaitMs },
  };
}
