/**
 * Service discovery and statistics in the NATS micro protocol, so that
 * `nats micro ls`, `nats micro info <name>` and `nats micro stats <name>` see
 * handler-base services. Every instance answers `$SRV.PING`, `$SRV.INFO` and
 * `$SRV.STATS` on the three subject forms (`$SRV.<VERB>`,
 * `$SRV.<VERB>.<name>`, `$SRV.<VERB>.<name>.<id>`) without a queue group, with
 * the JSON of the micro spec (`io.nats.micro.v1.ping_response`,
 * `info_response`, `stats_response`) built from {@linkcode Service.stats}.
 * `runService` starts it for every service.
 *
 * Requires `--allow-net=<nats>`.
 *
 * @example Answer discovery requests
 * ```ts
 * import assert from "node:assert/strict";
 * import { startDiscovery } from "@homelab/handler-base/discovery";
 * import { startTestService } from "@homelab/handler-base/testing";
 *
 * await using t = await startTestService({ endpoints: [], name: "demo" });
 * await using discovery = startDiscovery(t.service, { description: "Text to speech" });
 * await t.service.nc.flush(); // the server has the subscriptions before another client asks
 * const reply = await t.nc.request(`$SRV.INFO.demo.${discovery.id}`); // as `nats micro info` asks
 * assert.equal(reply.json<{ description: string }>().description, "Text to speech");
 * ```
 *
 * @module
 */
import { nuid } from "@nats-io/nats-core";
import type { Service } from "./handler.ts";
import { isoTime } from "./iso_time.ts";
import type { Msg, NatsConnection } from "./natsutil.ts";

/**
 * The `type` of each micro response.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MICRO_RESPONSE_TYPES } from "@homelab/handler-base/discovery";
 *
 * assert.equal(MICRO_RESPONSE_TYPES.stats, "io.nats.micro.v1.stats_response");
 * ```
 */
export const MICRO_RESPONSE_TYPES = {
  ping: "io.nats.micro.v1.ping_response",
  info: "io.nats.micro.v1.info_response",
  stats: "io.nats.micro.v1.stats_response",
} as const;

/** What identifies one instance of a service in every micro response. */
export interface ServiceIdentity {
  /** The service name. */
  readonly name: string;
  /** The instance's unique id. */
  readonly id: string;
  /** The service version (semver). */
  readonly version: string;
  /** Free-form key-value pairs. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** The answer to `$SRV.PING`. */
export interface PingResponse extends ServiceIdentity {
  /** Always {@linkcode MICRO_RESPONSE_TYPES}`.ping`. */
  readonly type: typeof MICRO_RESPONSE_TYPES.ping;
}

/** One endpoint in an {@linkcode InfoResponse}. */
export interface EndpointInfo {
  /** The endpoint's name. */
  readonly name: string;
  /** Its subject. */
  readonly subject: string;
  /** Its queue group (the durable consumer for a JetStream endpoint). */
  readonly queue_group: string;
  /** `consume`, and for JetStream endpoints `stream` and `durable`. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** The answer to `$SRV.INFO`. */
export interface InfoResponse extends ServiceIdentity {
  /** Always {@linkcode MICRO_RESPONSE_TYPES}`.info`. */
  readonly type: typeof MICRO_RESPONSE_TYPES.info;
  /** What the service does. */
  readonly description: string;
  /** Its endpoints. */
  readonly endpoints: readonly EndpointInfo[];
}

/** One endpoint in a {@linkcode StatsResponse}. */
export interface EndpointStatsResponse {
  /** The endpoint's name. */
  readonly name: string;
  /** Its subject. */
  readonly subject: string;
  /** Its queue group. */
  readonly queue_group: string;
  /** Messages handled, failed or not. */
  readonly num_requests: number;
  /** Messages that failed. */
  readonly num_errors: number;
  /** The last failure, or "". */
  readonly last_error: string;
  /** Total handling time in nanoseconds. */
  readonly processing_time: number;
  /** Average handling time in nanoseconds. */
  readonly average_processing_time: number;
  /**
   * What is running and waiting now, the concurrency limit, and the fields
   * of {@linkcode DiscoveryOptions.data} (`backends`: the circuit breakers of
   * the service's backends, under `serviceMain`).
   */
  readonly data: {
    readonly in_flight: number;
    readonly pending: number;
    readonly concurrency: number;
    readonly [field: string]: unknown;
  };
}

/** The answer to `$SRV.STATS`. */
export interface StatsResponse extends ServiceIdentity {
  /** Always {@linkcode MICRO_RESPONSE_TYPES}`.stats`. */
  readonly type: typeof MICRO_RESPONSE_TYPES.stats;
  /** When this instance started answering, RFC 3339. */
  readonly started: string;
  /** Counters per endpoint. */
  readonly endpoints: readonly EndpointStatsResponse[];
}

/** Options of {@linkcode startDiscovery}. */
export interface DiscoveryOptions {
  /**
   * What the service does, for `nats micro info`.
   *
   * @default ""
   */
  description?: string;
  /**
   * Free-form key-value pairs in every response.
   *
   * @default {}
   */
  metadata?: Readonly<Record<string, string>>;
  /**
   * The instance id.
   *
   * @default a new unique id
   */
  id?: string;
  /**
   * More fields of every endpoint's `data` in `$SRV.STATS`, read on each
   * request (the micro protocol's free-form per-endpoint data).
   *
   * @default none
   */
  data?: () => Readonly<Record<string, unknown>>;
}

/** A running discovery responder. */
export interface Discovery extends AsyncDisposable {
  /** This instance's id. */
  readonly id: string;
  /** The `$SRV.PING` answer. */
  ping(): PingResponse;
  /** The `$SRV.INFO` answer. */
  info(): InfoResponse;
  /** The `$SRV.STATS` answer, with the counters as they are now. */
  stats(): StatsResponse;
  /** Stops answering. */
  stop(): Promise<void>;
}

/**
 * The verbs of the micro protocol that every instance answers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MICRO_VERBS } from "@homelab/handler-base/discovery";
 *
 * assert.deepEqual(MICRO_VERBS.map((verb) => `$SRV.${verb}`), ["$SRV.PING", "$SRV.INFO", "$SRV.STATS"]);
 * ```
 */
export const MICRO_VERBS = ["PING", "INFO", "STATS"] as const;

/** One of {@linkcode MICRO_VERBS}. */
export type MicroVerb = typeof MICRO_VERBS[number];

/**
 * The subjects one instance answers a verb on: every service, every instance
 * of this name, this instance.
 *
 * @param verb `PING`, `INFO` or `STATS`.
 * @param identity The service name and instance id.
 * @returns The three subjects.
 *
 * @example
 * ```ts
 * import { discoverySubjects } from "@homelab/handler-base/discovery";
 *
 * console.log(discoverySubjects("PING", { name: "tts-module", id: "abc" }));
 * // ["$SRV.PING", "$SRV.PING.tts-module", "$SRV.PING.tts-module.abc"]
 * ```
 */
export function discoverySubjects(
  verb: MicroVerb,
  identity: { name: string; id: string },
): string[] {
  return [
    `$SRV.${verb}`,
    `$SRV.${verb}.${identity.name}`,
    `$SRV.${verb}.${identity.name}.${identity.id}`,
  ];
}

/**
 * Answers the micro protocol's PING, INFO and STATS requests for a service
 * until stopped. Every instance answers (no queue group).
 *
 * @param service The service.
 * @param options Description, metadata and instance id.
 * @returns The running responder.
 * @throws {TypeError} When the service name is not a valid micro name (letters, digits, `-`, `_`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startDiscovery } from "@homelab/handler-base/discovery";
 * import { startTestService } from "@homelab/handler-base/testing";
 *
 * await using t = await startTestService({ endpoints: [], name: "demo" });
 * const discovery = startDiscovery(t.service, { id: "second" });
 * await t.service.nc.flush(); // the server has the subscriptions before another client asks
 * const reply = await t.nc.request("$SRV.PING.demo.second");
 * assert.deepEqual(reply.json(), discovery.ping());
 * await discovery.stop();
 * ```
 */
export function startDiscovery(service: Service, options: DiscoveryOptions = {}): Discovery {
  const { name, version } = service;
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new TypeError(
      `Cannot start discovery: the service name "${name}" may hold only letters, digits, "-" and "_"`,
    );
  }
  const id = options.id ?? nuid.next();
  const metadata = { ...options.metadata };
  const started = isoTime();
  const identity = { name, id, version, metadata };
  const jetstream = new Set(service.jetstreamEndpoints);

  const discovery: Discovery = {
    id,
    ping: () => ({ type: MICRO_RESPONSE_TYPES.ping, ...identity }),
    info: () => ({
      type: MICRO_RESPONSE_TYPES.info,
      ...identity,
      description: options.description ?? "",
      endpoints: service.endpoints.map((endpoint, i): EndpointInfo => ({
        name: endpoint.name,
        subject: endpoint.subject,
        queue_group: service.stats()[i]?.queueGroup ?? "",
        metadata: jetstream.has(endpoint)
          ? {
            consume: "jetstream",
            stream: endpoint.stream ?? "",
            durable: endpoint.durable ?? name,
          }
          : { consume: "core" },
      })),
    }),
    stats: () => {
      const extra = options.data?.() ?? {};
      return {
        type: MICRO_RESPONSE_TYPES.stats,
        ...identity,
        started,
        endpoints: service.stats().map((s) => ({
          name: s.name,
          subject: s.subject,
          queue_group: s.queueGroup,
          num_requests: s.numRequests,
          num_errors: s.numErrors,
          last_error: s.lastError,
          processing_time: s.processingTimeNs,
          average_processing_time: s.averageProcessingTimeNs,
          data: {
            ...extra,
            in_flight: s.inFlight,
            pending: s.pending,
            concurrency: s.concurrency,
          },
        })),
      };
    },
    async stop() {
      await Promise.all(subscriptions.map((sub) => sub.drain().catch(() => {})));
    },
    [Symbol.asyncDispose]() {
      return discovery.stop();
    },
  };

  const answer = {
    PING: discovery.ping,
    INFO: discovery.info,
    STATS: discovery.stats,
  } as const;
  const subscriptions = MICRO_VERBS.flatMap((verb) =>
    discoverySubjects(verb, { name, id }).map((subject) =>
      subscribe(service.nc, subject, (msg) => msg.respond(JSON.stringify(answer[verb]())))
    )
  );
  return discovery;
}

function subscribe(nc: NatsConnection, subject: string, onMessage: (msg: Msg) => void) {
  return nc.subscribe(subject, {
    callback: (error, msg) => {
      if (!error && msg.reply) onMessage(msg);
    },
  });
}
