/**
 * `services`: the running services, their endpoints and statistics, through
 * the NATS micro protocol every handler-base service answers (`$SRV.PING`,
 * `$SRV.INFO`, `$SRV.STATS`; see `discovery.ts`). Every instance answers, so
 * the client gathers answers until they stop coming.
 *
 * @example
 * ```ts ignore
 * import { services } from "./services.ts";
 *
 * const { instances } = await services(ctx);
 * console.log(instances.map((i) => i.name));
 * ```
 *
 * @module
 */
import type {
  InfoResponse,
  MicroVerb,
  PingResponse,
  ServiceIdentity,
  StatsResponse,
} from "../discovery.ts";
import type { NatsConnection } from "../natsutil.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";

/** One endpoint of a {@linkcode ServiceInstance}. */
export interface InstanceEndpoint {
  /** The endpoint's name. */
  readonly name: string;
  /** Its subject. */
  readonly subject: string;
  /** Its queue group. */
  readonly queueGroup: string;
  /** `core` or `jetstream`. */
  readonly consume: string;
  /** Messages handled. */
  readonly requests: number;
  /** Messages that failed. */
  readonly errors: number;
  /** Average handling time in milliseconds. */
  readonly averageMs: number;
  /** The last failure, or "". */
  readonly lastError: string;
  /** Messages being handled now. */
  readonly inFlight: number;
}

/** One running instance of a service. */
export interface ServiceInstance {
  /** The service name. */
  readonly name: string;
  /** The instance id. */
  readonly id: string;
  /** The service version. */
  readonly version: string;
  /** What it does. */
  readonly description: string;
  /** When it started, RFC 3339. */
  readonly started: string;
  /** Its endpoints with their counters. */
  readonly endpoints: readonly InstanceEndpoint[];
}

/** What {@linkcode services} returns. */
export interface ServicesResult {
  /** Every instance that answered, sorted by name then id. */
  readonly instances: readonly ServiceInstance[];
}

/** Options of {@linkcode services}. */
export interface ServicesOptions {
  /** Only this service. @default every service */
  name?: string | undefined;
  /**
   * Stop gathering once no answer came for this long, in milliseconds.
   *
   * @default 300
   */
  stallMs?: number;
}

async function gather<T>(
  nc: NatsConnection,
  verb: MicroVerb,
  name: string | undefined,
  options: { maxWaitMs: number; stallMs: number },
): Promise<T[]> {
  const subject = name ? `$SRV.${verb}.${name}` : `$SRV.${verb}`;
  const answers: T[] = [];
  try {
    const replies = await nc.requestMany(subject, "", {
      strategy: "stall",
      stall: options.stallMs,
      maxWait: options.maxWaitMs,
    });
    for await (const reply of replies) {
      if (reply.data.length === 0) continue; // A no-responders status.
      try {
        answers.push(reply.json<T>());
      } catch {
        // Not JSON: not a micro service.
      }
    }
  } catch {
    // No responders: no answers.
  }
  return answers;
}

/**
 * Lists the running services through `$SRV.PING`, `$SRV.INFO` and
 * `$SRV.STATS`.
 *
 * @param ctx Connection, output, and the longest wait for answers.
 * @param options One service only, and when to stop gathering.
 * @returns Every instance that answered.
 * @throws {CliError} With exit code 4 when no service answers.
 *
 * @example
 * ```ts ignore
 * const { instances } = await services(ctx, { name: "tts-module" });
 * ```
 */
export async function services(
  ctx: CommandContext,
  options: ServicesOptions = {},
): Promise<ServicesResult> {
  const wait = { maxWaitMs: Math.min(ctx.timeoutMs, 5000), stallMs: options.stallMs ?? 300 };
  const [pings, infos, stats] = await Promise.all([
    gather<PingResponse>(ctx.nc, "PING", options.name, wait),
    gather<InfoResponse>(ctx.nc, "INFO", options.name, wait),
    gather<StatsResponse>(ctx.nc, "STATS", options.name, wait),
  ]);
  const ids = new Map<string, ServiceIdentity>();
  for (const ping of [...pings, ...infos, ...stats]) {
    if (typeof ping?.id === "string" && !ids.has(ping.id)) ids.set(ping.id, ping);
  }
  if (ids.size === 0) {
    const what = options.name ? `no ${options.name}` : "no service";
    throw new CliError(EXIT_CODES.noService, `Cannot list services: ${what} answers $SRV.PING`);
  }
  const instances = [...ids.values()].map((identity): ServiceInstance => {
    const info = infos.find((i) => i.id === identity.id);
    const stat = stats.find((s) => s.id === identity.id);
    const endpoints = (info?.endpoints ?? stat?.endpoints ?? []).map((e): InstanceEndpoint => {
      const s = stat?.endpoints.find((x) => x.name === e.name && x.subject === e.subject);
      const infoEndpoint = info?.endpoints.find((x) => x.name === e.name);
      return {
        name: e.name,
        subject: e.subject,
        queueGroup: e.queue_group,
        consume: infoEndpoint?.metadata?.consume ?? "",
        requests: s?.num_requests ?? 0,
        errors: s?.num_errors ?? 0,
        averageMs: (s?.average_processing_time ?? 0) / 1e6,
        lastError: s?.last_error ?? "",
        inFlight: s?.data?.in_flight ?? 0,
      };
    });
    return {
      name: identity.name,
      id: identity.id,
      version: identity.version,
      description: info?.description ?? "",
      started: stat?.started ?? "",
      endpoints,
    };
  }).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  for (const line of formatServices(instances)) ctx.ui.line(line);
  return { instances };
}

/**
 * The human lines of a service list: one line per instance, one per endpoint.
 *
 * @param instances The instances.
 * @returns The lines.
 *
 * @example
 * ```ts
 * import { formatServices } from "./services.ts";
 *
 * const lines = formatServices([{
 *   name: "tts-module", id: "abc", version: "0.1.0", description: "Text to speech",
 *   started: "", endpoints: [{
 *     name: "synthesize", subject: "ai.voice.tts.request.>", queueGroup: "tts-module",
 *     consume: "core", requests: 3, errors: 1, averageMs: 12.5, lastError: "", inFlight: 0,
 *   }],
 * }]);
 * console.log(lines[0]); // "tts-module 0.1.0 (abc): Text to speech"
 * ```
 */
export function formatServices(instances: readonly ServiceInstance[]): string[] {
  const lines: string[] = [];
  for (const instance of instances) {
    const description = instance.description ? `: ${instance.description}` : "";
    lines.push(`${instance.name} ${instance.version} (${instance.id})${description}`);
    for (const e of instance.endpoints) {
      const errors = e.errors > 0 ? `, ${e.errors} errors` : "";
      const last = e.lastError ? ` (last: ${e.lastError})` : "";
      lines.push(
        `  ${e.name.padEnd(16)} ${e.subject.padEnd(40)} ${e.consume || "-"}  ` +
          `${e.requests} requests${errors}, avg ${e.averageMs.toFixed(1)} ms${last}`,
      );
    }
  }
  return lines;
}
