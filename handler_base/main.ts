/**
 * A service as one definition, and the process main that runs it.
 *
 * A service module exports one {@linkcode ServiceDefinition}: its name, its
 * own variables (a config spec built from the client specs it uses and its
 * own {@linkcode envVar}s; the NATS, runtime and consume-mode families are
 * merged in) and a `setup` that turns the loaded config into endpoints,
 * readiness checks and what to dispose after the drain. Its entry file is a
 * module doc and one call to {@linkcode serviceMain}, which does what every
 * service does the same way: load the environment (exit 78 naming every bad
 * variable), refuse at once when the process lacks the permission to read
 * its variables (exit 77 naming the permission set to use), make the logger
 * and the termination signal, run the service until SIGTERM or SIGINT,
 * drain, dispose and exit.
 *
 * Needs what the service needs: `--allow-env` for exactly
 * `configVarNames(definition.spec)`, `--allow-net` for NATS, the health port
 * and the backends. The permission set named after the service in the root
 * `deno.json` declares them (`deno run -P=<name> services/<entry>.ts`).
 *
 * @example A service and its entry file
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineService, serviceMain } from "@homelab/handler-base/main";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { envVar } from "@homelab/handler-base/config";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 *
 * export const echoService = defineService({
 *   name: "echo",
 *   description: "Answers a status with the request's text",
 *   config: { echoPrefix: envVar.string("ECHO_PREFIX", { default: "echo: " }) },
 *   setup(config) {
 *     const echo = defineEndpoint({
 *       subject: "demo.echo",
 *       request: TTSRequestSchema,
 *       response: TTSStatusSchema,
 *       handle: (req) => Promise.resolve({ status: "ok", message: config.echoPrefix + req.text }),
 *     });
 *     return { endpoints: [echo] };
 *   },
 * });
 * assert.deepEqual([echoService.spec.natsUrl.name, echoService.spec.echoPrefix.name], [
 *   "NATS_URL",
 *   "ECHO_PREFIX",
 * ]);
 * // The entry file: if (import.meta.main) await serviceMain(echoService);
 * assert.equal(typeof serviceMain, "function");
 * ```
 *
 * @module
 */
import {
  type Config,
  ConfigError,
  type ConfigSpec,
  configVarNames,
  type EnvSource,
  envVar,
  loadConfig,
  type NatsConfigSpec,
  natsConfigSpec,
  type RuntimeConfigSpec,
  runtimeConfigSpec,
} from "./config.ts";
import { CircuitBreakers } from "./clients/circuit_breaker.ts";
import type { ClientFromConfigOptions } from "./clients/http.ts";
import { CONSUME_MODES, type ConsumeMode, type Endpoint, type Service } from "./handler.ts";
import type { ReadinessCheck } from "./health.ts";
import {
  type ConsumeConfigSpec,
  consumeConfigSpec,
  consumeSettingsFromConfig,
} from "./consume_config.ts";
import { createLogger, type Logger } from "./log.ts";
import { natsOptionsFromConfig } from "./natsutil.ts";
import { runService, terminationSignal } from "./run.ts";
import type { Telemetry } from "./telemetry.ts";

/** The variables every service reads: NATS, runtime and consume mode. */
export type BaseServiceSpec = NatsConfigSpec & RuntimeConfigSpec & ConsumeConfigSpec;

/**
 * The variables every service reads, merged into each definition's spec:
 * the NATS connection (`NATS_URL`, ...), the runtime (`HEALTH_PORT`,
 * `LOG_LEVEL`, `SHUTDOWN_GRACE_MS`) and the consume mode (`CONSUME_MODE`,
 * `ENSURE_STREAMS`, `JETSTREAM_REPLICAS`, `JETSTREAM_MAX_DELIVER`, `JETSTREAM_ACK_WAIT_MS`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configVarNames } from "@homelab/handler-base/config";
 * import { baseServiceSpec } from "@homelab/handler-base/main";
 *
 * assert.equal(configVarNames(baseServiceSpec).includes("CONSUME_MODE"), true);
 * ```
 */
export const baseServiceSpec: BaseServiceSpec = Object.freeze({
  ...natsConfigSpec,
  ...runtimeConfigSpec,
  ...consumeConfigSpec,
});

/** The whole spec of a service: {@linkcode BaseServiceSpec} and its own variables. */
export type ServiceSpec<S extends ConfigSpec> = BaseServiceSpec & S;

/** What `setup` receives beside the loaded config. */
export interface SetupContext {
  /** The service name. */
  readonly name: string;
  /** The service's logger. */
  readonly logger: Logger;
  /** Fires on SIGTERM or SIGINT: pass it to background work that setup starts. */
  readonly signal: AbortSignal;
  /**
   * What every `<backend>ClientFromConfig` factory takes: the logger and the
   * service's circuit breakers, whose states `/ready` (as non-gating
   * `details.backends`, beside `details.memory`) and `$SRV.STATS` (each endpoint's `data.backends`)
   * show. Pass it as it is: `llmClientFromConfig(config, clients)`.
   */
  readonly clients: ClientFromConfigOptions & { readonly breakers: CircuitBreakers };
}

/** What a service's `setup` returns: what to serve and what to release after. */
export interface ServiceParts {
  /** The endpoints to serve. */
  endpoints: readonly Endpoint[];
  /**
   * Readiness checks besides NATS and the endpoints (shown on `/ready`).
   *
   * @default {}
   */
  checks?: Record<string, ReadinessCheck>;
  /**
   * Default concurrency of each endpoint.
   *
   * @default 16
   */
  concurrency?: number;
  /**
   * Default deadline of each message, in milliseconds.
   *
   * @default 60000
   */
  timeoutMs?: number;
  /**
   * Telemetry.
   *
   * @default one named after the service
   */
  telemetry?: Telemetry;
  /**
   * Called once the service serves (its endpoints and JetStream consumers).
   *
   * @default nothing
   */
  onStart?: (service: Service) => Promise<void>;
  /**
   * More non-gating facts for `/ready`'s `details` and `$SRV.STATS` (a
   * membership, a cache size): a name and a function that reads it.
   *
   * @default {}
   */
  details?: Record<string, () => unknown>;
  /**
   * Releases what setup made (timers, watchers, files), after the drain.
   *
   * @default nothing
   */
  dispose?: () => void | Promise<void>;
}

/** Options of {@linkcode defineService}. */
export interface ServiceDefinitionOptions<S extends ConfigSpec> {
  /** The service name: queue group, durable consumer, permission set, logs and spans. */
  name: string;
  /** What the service does, for `nats micro info`. @default "" */
  description?: string;
  /** The service version. @default "0.1.0" */
  version?: string;
  /** The service's own variables and those of the clients it uses. */
  config: S;
  /**
   * The default of `CONSUME_MODE` for this service: `"jetstream"` for a
   * service whose input must never be lost (pipeline-bridge's triggers).
   *
   * @default "core"
   */
  consumeMode?: ConsumeMode;
  /**
   * Turns the loaded config into endpoints. Throw a `ConfigError` for a
   * problem of configuration found here (a registry file that does not
   * parse): the process exits 78 with its message.
   */
  setup(
    config: Config<ServiceSpec<S>>,
    context: SetupContext,
  ): ServiceParts | Promise<ServiceParts>;
}

/** A service, ready for {@linkcode serviceMain} or a test. */
export interface ServiceDefinition<S extends ConfigSpec = ConfigSpec> {
  /** The service name. */
  readonly name: string;
  /** What the service does. */
  readonly description: string;
  /** The service version. */
  readonly version: string;
  /** Every variable the service reads (its permission set lists exactly these). */
  readonly spec: ServiceSpec<S>;
  /** See {@linkcode ServiceDefinitionOptions.setup}. */
  setup(
    config: Config<ServiceSpec<S>>,
    context: SetupContext,
  ): ServiceParts | Promise<ServiceParts>;
}

/**
 * Declares a service.
 *
 * @typeParam S The service's own config spec.
 * @param options Name, variables and setup.
 * @returns The definition, with the base variables merged into its spec.
 * @throws {TypeError} When the service's variables redeclare a base variable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineService } from "@homelab/handler-base/main";
 * import { llmConfigSpec } from "@homelab/handler-base/clients/llm";
 *
 * const service = defineService({
 *   name: "demo",
 *   config: llmConfigSpec,
 *   setup: () => ({ endpoints: [] }),
 * });
 * assert.deepEqual([service.spec.vllmUrl.name, service.version], ["VLLM_URL", "0.1.0"]);
 * ```
 */
export function defineService<S extends ConfigSpec>(
  options: ServiceDefinitionOptions<S>,
): ServiceDefinition<S> {
  const base = new Set(configVarNames(baseServiceSpec));
  const clash = configVarNames(options.config).filter((name) => base.has(name));
  if (clash.length > 0) {
    throw new TypeError(
      `Cannot define service "${options.name}": ${clash.join(", ")} ` +
        `already declared by every service`,
    );
  }
  const consumeMode = options.consumeMode
    ? envVar.oneOf("CONSUME_MODE", CONSUME_MODES, { default: options.consumeMode })
    : baseServiceSpec.consumeMode;
  return Object.freeze({
    name: options.name,
    description: options.description ?? "",
    version: options.version ?? "0.1.0",
    spec: Object.freeze({ ...baseServiceSpec, consumeMode, ...options.config }) as ServiceSpec<S>,
    setup: options.setup,
  });
}

/** The exit codes of {@linkcode serviceMain}. */
export interface ExitCodes {
  /** Stopped cleanly: 0. */
  readonly ok: 0;
  /** Setup or the runtime failed unexpectedly: 70. */
  readonly software: 70;
  /** The process may not read its variables: 77. */
  readonly noPermission: 77;
  /** A variable is missing or malformed, or setup found a configuration problem: 78. */
  readonly config: 78;
}

/**
 * The exit codes of {@linkcode serviceMain}, from BSD's `sysexits.h`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT_CODES } from "@homelab/handler-base/main";
 *
 * assert.equal(EXIT_CODES.config, 78);
 * ```
 */
export const EXIT_CODES: ExitCodes = Object.freeze({
  /** Stopped cleanly. */
  ok: 0,
  /** Setup or the runtime failed unexpectedly. */
  software: 70,
  /** The process may not read its variables (run it with its permission set). */
  noPermission: 77,
  /** A variable is missing or malformed, or setup found a configuration problem. */
  config: 78,
});

/** Options of {@linkcode serviceMain}; tests inject these, a process uses the defaults. */
export interface ServiceMainOptions {
  /**
   * Where the variables come from.
   *
   * @default Deno.env
   */
  env?: EnvSource;
  /**
   * Stops the service when it fires.
   *
   * @default terminationSignal(): SIGTERM or SIGINT
   */
  signal?: AbortSignal;
  /**
   * Ends the process with a code. Once the service has stopped the process
   * exits even if a library left a timer or socket behind (a NATS client
   * reconnecting to a broker that is gone), so a pod never outlives its stop.
   *
   * @default Deno.exit
   */
  exit?: (code: number) => void;
  /**
   * Where the few lines written before the logger exists go.
   *
   * @default console.error
   */
  printError?: (line: string) => void;
}

/**
 * Runs a service as the process's main: loads the variables, checks the
 * permission to read them, sets up the service, serves until the signal,
 * drains, disposes and exits (see {@linkcode EXIT_CODES}).
 *
 * @param definition The service.
 * @param options Injected environment, signal and exit (for tests).
 * @returns When the service has stopped and `exit` was called.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineService, serviceMain } from "@homelab/handler-base/main";
 *
 * const demo = defineService({ name: "demo", config: {}, setup: () => ({ endpoints: [] }) });
 * let code = -1;
 * await serviceMain(demo, {
 *   env: { HEALTH_PORT: "not a port" },
 *   exit: (c) => void (code = c),
 *   printError: () => {},
 * });
 * assert.equal(code, 78);
 * ```
 */
export async function serviceMain<S extends ConfigSpec>(
  definition: ServiceDefinition<S>,
  options: ServiceMainOptions = {},
): Promise<void> {
  // Everything before this call: the runtime's start and the modules' evaluation.
  const loadMs = performance.now();
  const { name } = definition;
  const env = options.env ?? Deno.env;
  const exit = options.exit ?? Deno.exit;
  const printError = options.printError ?? console.error;
  if (env === Deno.env) {
    const missing = unreadableVariables(definition.spec);
    if (missing.length > 0) {
      printError(permissionMessage(name, missing));
      return exit(EXIT_CODES.noPermission);
    }
  }
  let config: Config<ServiceSpec<S>>;
  try {
    config = loadConfig(definition.spec, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    printError(error.message);
    return exit(EXIT_CODES.config);
  }
  // The base fields, typed without the service's own (a generic spec hides them).
  const base = config as unknown as Config<BaseServiceSpec>;
  const logger = createLogger({ service: name, level: base.logLevel });
  const signal = options.signal ?? terminationSignal();
  const breakers = new CircuitBreakers({ logger });
  let parts: ServiceParts;
  try {
    parts = await definition.setup(config, { name, logger, signal, clients: { logger, breakers } });
  } catch (error) {
    if (error instanceof ConfigError) {
      printError(error.message);
      return exit(EXIT_CODES.config);
    }
    logger.error("Cannot set up the service", { error });
    return exit(EXIT_CODES.software);
  }
  let code: number = EXIT_CODES.ok;
  try {
    await runService({
      name,
      version: definition.version,
      description: definition.description,
      endpoints: parts.endpoints,
      nats: natsOptionsFromConfig(base),
      healthPort: base.healthPort,
      shutdownGraceMs: base.shutdownGraceMs,
      logger,
      signal,
      ...consumeSettingsFromConfig(base),
      ...(parts.checks ? { checks: parts.checks } : {}),
      ...(parts.concurrency ? { concurrency: parts.concurrency } : {}),
      ...(parts.timeoutMs ? { timeoutMs: parts.timeoutMs } : {}),
      ...(parts.telemetry ? { telemetry: parts.telemetry } : {}),
      ...(parts.onStart ? { onStart: parts.onStart } : {}),
      startupPhasesMs: { load: loadMs, setup: performance.now() - loadMs },
      details: { ...parts.details, backends: () => breakers.snapshot(), memory: memoryDetail },
    });
  } catch (error) {
    logger.error("The service failed", { error });
    code = EXIT_CODES.software;
  } finally {
    try {
      await parts.dispose?.();
    } catch (error) {
      logger.warn("Cannot dispose of the service's resources", { error });
    }
  }
  exit(code);
}

/** The process's memory in MiB, shown on `/ready` (never gating) for soak measurements. */
function memoryDetail(): Record<string, number> {
  const { rss, heapTotal, heapUsed, external } = Deno.memoryUsage();
  const mib = (bytes: number) => Math.round(bytes / 104857.6) / 10;
  return {
    rss_mib: mib(rss),
    heap_total_mib: mib(heapTotal),
    heap_used_mib: mib(heapUsed),
    external_mib: mib(external),
  };
}

/** The variables of a spec the process may not read. */
function unreadableVariables(spec: ConfigSpec): string[] {
  return configVarNames(spec).filter((variable) =>
    Deno.permissions.querySync({ name: "env", variable }).state !== "granted"
  );
}

/** One line that says what to run instead. */
function permissionMessage(name: string, missing: readonly string[]): string {
  const shown = missing.slice(0, 3).join(", ") + (missing.length > 3 ? ", ..." : "");
  return `Cannot start ${name}: no permission to read ${missing.length} of its environment ` +
    `variables (${shown}); run it with its permission set: deno run -P=${name} ${entryPath()}`;
}

/** The entry file as a user would type it (`services/tts.ts`). */
function entryPath(): string {
  const path = decodeURIComponent(new URL(Deno.mainModule).pathname);
  const at = path.lastIndexOf("/services/");
  return at >= 0 ? path.slice(at + 1) : path;
}
