/**
 * Typed configuration from environment variables. A service declares its
 * variables once as a spec (an object of {@linkcode envVar} builders whose keys
 * are the typed field names), lists their exact names for `--allow-env`, and
 * loads them into a frozen object. Every missing or malformed variable is
 * reported together in one {@linkcode ConfigError}.
 *
 * Values are trimmed; an empty value counts as unset. A variable with a
 * default or `required: true` always has a value, any other is
 * `T | undefined`.
 *
 * Needs `--allow-env=<names>` where the names are exactly
 * `configVarNames(spec)`: {@linkcode loadConfig} reads only the declared
 * names. Importing this module reads nothing.
 *
 * @example Declare, list and load
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   configVarNames,
 *   envVar,
 *   loadConfig,
 *   natsConfigSpec,
 *   runtimeConfigSpec,
 * } from "@homelab/handler-base/config";
 *
 * const spec = {
 *   ...natsConfigSpec,
 *   ...runtimeConfigSpec,
 *   enableTts: envVar.bool("ENABLE_TTS", { default: false }),
 *   llmTimeoutMs: envVar.duration("LLM_TIMEOUT_MS", { default: 60_000 }),
 * };
 * assert.ok(configVarNames(spec).includes("LLM_TIMEOUT_MS")); // for --allow-env=...
 * const config = loadConfig(spec, { HEALTH_PORT: "9090", LLM_TIMEOUT_MS: "1.5s" });
 * assert.deepEqual([config.healthPort, config.llmTimeoutMs, config.natsToken], [9090, 1500, undefined]);
 * ```
 *
 * @module
 */
import { type LogLevel, parseLogLevel } from "./log.ts";
import { countCodePoints, truncateText } from "./text.ts";

/** What {@linkcode VarSpec.read} makes of one variable: its value or what is wrong with it. */
export type VarResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problem: string };

/**
 * One declared environment variable whose loaded value has type `T` (which
 * includes `undefined` when the variable may stay unset). Made by the
 * {@linkcode envVar} builders.
 */
export interface VarSpec<T> {
  /** The variable's name, such as `HEALTH_PORT`. */
  readonly name: string;
  /** Whether the value is a secret: it never appears in errors or in {@linkcode redactedConfig}. */
  readonly secret: boolean;
  /**
   * Turns the raw value into the typed value, applying the default and
   * `required`.
   *
   * @param raw The trimmed value, or undefined when unset or empty.
   * @returns The value, or the problem as text that follows the variable's
   * name ("is required", "must be true or false (got \"maybe\")").
   */
  read(raw: string | undefined): VarResult<T>;
  /**
   * The form of a loaded value that is safe to log.
   *
   * @param value A value returned by {@linkcode VarSpec.read}.
   * @returns `"[redacted]"` for a set secret, a URL without its credentials, else the value.
   */
  loggable(value: T): unknown;
}

/** Options every {@linkcode envVar} builder takes. */
export interface VarOptions<T> {
  /**
   * The value when the variable is unset or empty. Checked when the spec is
   * declared: an invalid default throws there.
   *
   * @default undefined (the value is `T | undefined`)
   */
  default?: T;
  /**
   * Whether an unset variable is a configuration problem.
   *
   * @default false
   */
  required?: boolean;
  /**
   * Whether the value is a secret, kept out of errors and logs.
   *
   * @default false
   */
  secret?: boolean;
}

/** The options that make a variable always have a value: a default, or `required: true`. */
export type AlwaysSet<T> = { default: T } | { required: true };

/** Options of {@linkcode EnvVarBuilders.int}. */
export interface IntVarOptions extends VarOptions<number> {
  /**
   * The smallest accepted value.
   *
   * @default Number.MIN_SAFE_INTEGER
   */
  min?: number;
  /**
   * The largest accepted value.
   *
   * @default Number.MAX_SAFE_INTEGER
   */
  max?: number;
}

/** Options of {@linkcode EnvVarBuilders.url} and {@linkcode EnvVarBuilders.urlList}. */
export interface UrlVarOptions<T> extends VarOptions<T> {
  /**
   * The accepted schemes, without the colon.
   *
   * @default ["http", "https", "nats", "tls", "ws", "wss"]
   */
  schemes?: readonly string[];
}

/** Options of {@linkcode EnvVarBuilders.custom}. */
export interface CustomVarOptions<T> extends VarOptions<T> {
  /**
   * The value when the variable is unset or empty (not checked: there is no
   * way back to text).
   *
   * @default undefined (the value is `T | undefined`)
   */
  default?: NoInfer<T>;
  /**
   * Parses a trimmed, non-empty raw value.
   *
   * @param raw The raw value.
   * @returns The value, or undefined when the text is malformed.
   */
  parse: (raw: string) => T | undefined;
  /** What a valid value looks like, after "must be" ("one of debug, info, warn, error"). */
  expected: string;
}

/**
 * The builders of {@linkcode VarSpec}s, one per value type. Each has two
 * signatures: with a default or `required: true` the value is always set;
 * otherwise it is `T | undefined`.
 */
export interface EnvVarBuilders {
  /**
   * A text variable, taken as is (trimmed).
   *
   * @param name The variable's name.
   * @param options Default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name is not a valid variable name.
   */
  string(name: string, options: VarOptions<string> & AlwaysSet<string>): VarSpec<string>;
  /** A text variable that may stay unset. */
  string(name: string, options?: VarOptions<string>): VarSpec<string | undefined>;
  /**
   * A URL with one of the accepted schemes and a host, kept as written.
   * Credentials in it are masked in errors and in {@linkcode redactedConfig}.
   *
   * @param name The variable's name.
   * @param options Schemes, default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name or the default is invalid.
   */
  url(name: string, options: UrlVarOptions<string> & AlwaysSet<string>): VarSpec<string>;
  /** A URL that may stay unset. */
  url(name: string, options?: UrlVarOptions<string>): VarSpec<string | undefined>;
  /**
   * A comma-separated list of URLs, each checked as by
   * {@linkcode EnvVarBuilders.url} (for `NATS_URL`, which may name several
   * servers).
   *
   * @param name The variable's name.
   * @param options Schemes, default, required, secret.
   * @returns The spec; the loaded list is frozen.
   * @throws {TypeError} When the name or the default is invalid.
   */
  urlList(
    name: string,
    options: UrlVarOptions<readonly string[]> & AlwaysSet<readonly string[]>,
  ): VarSpec<readonly string[]>;
  /** A list of URLs that may stay unset. */
  urlList(
    name: string,
    options?: UrlVarOptions<readonly string[]>,
  ): VarSpec<readonly string[] | undefined>;
  /**
   * A decimal integer within `min`..`max`.
   *
   * @param name The variable's name.
   * @param options Bounds, default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name or the default is invalid.
   */
  int(name: string, options: IntVarOptions & AlwaysSet<number>): VarSpec<number>;
  /** An integer that may stay unset. */
  int(name: string, options?: IntVarOptions): VarSpec<number | undefined>;
  /**
   * A boolean: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
   *
   * @param name The variable's name.
   * @param options Default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name is invalid.
   */
  bool(name: string, options: VarOptions<boolean> & AlwaysSet<boolean>): VarSpec<boolean>;
  /** A boolean that may stay unset. */
  bool(name: string, options?: VarOptions<boolean>): VarSpec<boolean | undefined>;
  /**
   * A duration in milliseconds: a bare number is milliseconds (`"1500"`),
   * or a number with a unit `ms`, `s`, `m` or `h` (`"250ms"`, `"1.5s"`,
   * `"2m"`, `"1h"`). The value is rounded to whole milliseconds.
   *
   * @param name The variable's name.
   * @param options Default (in milliseconds), required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name or the default is invalid.
   */
  duration(name: string, options: VarOptions<number> & AlwaysSet<number>): VarSpec<number>;
  /** A duration that may stay unset. */
  duration(name: string, options?: VarOptions<number>): VarSpec<number | undefined>;
  /**
   * A comma-separated list of texts, each trimmed, empty items dropped.
   *
   * @param name The variable's name.
   * @param options Default, required, secret.
   * @returns The spec; the loaded list is frozen.
   * @throws {TypeError} When the name is invalid.
   */
  list(
    name: string,
    options: VarOptions<readonly string[]> & AlwaysSet<readonly string[]>,
  ): VarSpec<readonly string[]>;
  /** A list that may stay unset. */
  list(
    name: string,
    options?: VarOptions<readonly string[]>,
  ): VarSpec<readonly string[] | undefined>;
  /**
   * One of a fixed set of texts, matched exactly.
   *
   * @typeParam V The accepted values.
   * @param name The variable's name.
   * @param values The accepted values.
   * @param options Default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name or the default is invalid.
   */
  oneOf<const V extends readonly [string, ...string[]]>(
    name: string,
    values: V,
    options: VarOptions<V[number]> & AlwaysSet<V[number]>,
  ): VarSpec<V[number]>;
  /** One of a fixed set of texts, or unset. */
  oneOf<const V extends readonly [string, ...string[]]>(
    name: string,
    values: V,
    options?: VarOptions<V[number]>,
  ): VarSpec<V[number] | undefined>;
  /**
   * A variable with a parser of your own.
   *
   * @typeParam T The parsed value.
   * @param name The variable's name.
   * @param options The parser, what it expects, default, required, secret.
   * @returns The spec.
   * @throws {TypeError} When the name is invalid.
   */
  custom<T>(name: string, options: CustomVarOptions<T> & AlwaysSet<NoInfer<T>>): VarSpec<T>;
  /** A variable with a parser of your own, that may stay unset. */
  custom<T>(name: string, options: CustomVarOptions<T>): VarSpec<T | undefined>;
}

const DEFAULT_URL_SCHEMES: readonly string[] = ["http", "https", "nats", "tls", "ws", "wss"];
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SHOWN_VALUE_MAX = 60;
const REDACTED = "[redacted]";

/** Replaces the user-info part of every URL in the text (`nats://u:p@h` -> `nats://[redacted]@h`). */
function maskUrlCredentials(text: string): string {
  return text.replace(/\/\/[^/?#\s,]*@/g, `//${REDACTED}@`);
}

function showValue(raw: string, secret: boolean, mask: (text: string) => string): string {
  if (secret) return `a secret of ${countCodePoints(raw)} chars`;
  const shown = truncateText(mask(raw), SHOWN_VALUE_MAX + 1, { ellipsis: "…" });
  return JSON.stringify(shown);
}

function identity(text: string): string {
  return text;
}

interface Kind<T> {
  /** After "must be": "an integer from 0 to 65535". */
  expected: string;
  parse(raw: string): T | undefined;
  /** Whether a declared default is valid; without it, any default is. */
  accepts?(value: T): boolean;
  /** Masks credentials in raw text and in logged values. */
  mask?: (text: string) => string;
}

function makeSpec<T>(name: string, options: VarOptions<T>, kind: Kind<T>): VarSpec<never> {
  if (!VAR_NAME.test(name)) {
    throw new TypeError(
      `Cannot declare variable ${JSON.stringify(name)}: a name is letters, digits and underscores`,
    );
  }
  const { default: fallback, required = false, secret = false } = options;
  const mask = kind.mask ?? identity;
  if (fallback !== undefined && kind.accepts && !kind.accepts(fallback)) {
    const shown = secret ? "" : ` ${JSON.stringify(fallback)}`;
    throw new TypeError(
      `Cannot declare variable ${name}: the default${shown} is not ${kind.expected}`,
    );
  }
  const spec: VarSpec<T | undefined> = {
    name,
    secret,
    read(raw) {
      if (raw === undefined) {
        return fallback === undefined && required
          ? { ok: false, problem: "is required" }
          : { ok: true, value: fallback };
      }
      const value = kind.parse(raw);
      if (value === undefined) {
        return {
          ok: false,
          problem: `must be ${kind.expected} (got ${showValue(raw, secret, mask)})`,
        };
      }
      return { ok: true, value };
    },
    loggable(value) {
      if (value === undefined) return undefined;
      if (secret) return REDACTED;
      if (typeof value === "string") return mask(value);
      if (Array.isArray(value)) {
        return value.map((item) => typeof item === "string" ? mask(item) : item);
      }
      return value;
    },
  };
  // A VarSpec only produces T, so the never-typed spec fits every overload's return type.
  return Object.freeze(spec) as VarSpec<never>;
}

function splitList(raw: string): string[] {
  return raw.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

function isUrl(text: string, schemes: readonly string[]): boolean {
  // A comma would be taken into the host of a non-special scheme ("nats://a,nats://b").
  if (/[\s,]/.test(text) || !URL.canParse(text)) return false;
  const url = new URL(text);
  return schemes.includes(url.protocol.slice(0, -1)) && url.host !== "";
}

function urlExpected(schemes: readonly string[]): string {
  return `a URL with scheme ${schemes.join(", ")}`;
}

function describeRange(min: number, max: number): string {
  const hasMin = min > Number.MIN_SAFE_INTEGER;
  const hasMax = max < Number.MAX_SAFE_INTEGER;
  if (hasMin && hasMax) return `an integer from ${min} to ${max}`;
  if (hasMin) return `an integer of at least ${min}`;
  if (hasMax) return `an integer of at most ${max}`;
  return "an integer";
}

const BOOLEAN_WORDS: ReadonlyMap<string, boolean> = new Map([
  ["true", true],
  ["1", true],
  ["yes", true],
  ["on", true],
  ["false", false],
  ["0", false],
  ["no", false],
  ["off", false],
]);

const DURATION = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/;
const MS_PER_UNIT: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function parseDuration(raw: string): number | undefined {
  const match = DURATION.exec(raw.toLowerCase());
  if (!match) return undefined;
  const ms = Math.round(Number(match[1]) * MS_PER_UNIT[match[2] ?? "ms"]!);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

function stringVar(name: string, options: VarOptions<string> = {}): VarSpec<never> {
  return makeSpec(name, options, { expected: "a text", parse: identity });
}

function urlVar(name: string, options: UrlVarOptions<string> = {}): VarSpec<never> {
  const { schemes = DEFAULT_URL_SCHEMES } = options;
  return makeSpec(name, options, {
    expected: urlExpected(schemes),
    parse: (raw) => isUrl(raw, schemes) ? raw : undefined,
    accepts: (value) => isUrl(value, schemes),
    mask: maskUrlCredentials,
  });
}

function urlListVar(name: string, options: UrlVarOptions<readonly string[]> = {}): VarSpec<never> {
  const { schemes = DEFAULT_URL_SCHEMES } = options;
  const allUrls = (items: readonly string[]) =>
    items.length > 0 && items.every((item) => isUrl(item, schemes));
  return makeSpec(name, {
    ...options,
    default: options.default && Object.freeze([...options.default]),
  }, {
    expected: `a comma-separated list of URLs with scheme ${schemes.join(", ")}`,
    parse: (raw) => {
      const items = splitList(raw);
      return allUrls(items) ? Object.freeze(items) : undefined;
    },
    accepts: allUrls,
    mask: maskUrlCredentials,
  });
}

function intVar(name: string, options: IntVarOptions = {}): VarSpec<never> {
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = options;
  if (min > max) {
    throw new TypeError(`Cannot declare variable ${name}: min ${min} is greater than max ${max}`);
  }
  const accepts = (value: number) => Number.isSafeInteger(value) && value >= min && value <= max;
  return makeSpec(name, options, {
    expected: describeRange(min, max),
    parse: (raw) => {
      if (!/^[+-]?\d+$/.test(raw)) return undefined;
      const value = Number(raw);
      return accepts(value) ? value : undefined;
    },
    accepts,
  });
}

function boolVar(name: string, options: VarOptions<boolean> = {}): VarSpec<never> {
  return makeSpec(name, options, {
    expected: "true or false",
    parse: (raw) => BOOLEAN_WORDS.get(raw.toLowerCase()),
  });
}

function durationVar(name: string, options: VarOptions<number> = {}): VarSpec<never> {
  return makeSpec(name, options, {
    expected: "a duration such as 1500 (milliseconds), 250ms, 1.5s, 2m or 1h",
    parse: parseDuration,
    accepts: (value) => Number.isSafeInteger(value) && value >= 0,
  });
}

function listVar(name: string, options: VarOptions<readonly string[]> = {}): VarSpec<never> {
  return makeSpec(name, {
    ...options,
    default: options.default && Object.freeze([...options.default]),
  }, {
    expected: "a comma-separated list",
    parse: (raw) => Object.freeze(splitList(raw)),
  });
}

function oneOfVar(
  name: string,
  values: readonly string[],
  options: VarOptions<string> = {},
): VarSpec<never> {
  return makeSpec(name, options, {
    expected: `one of ${values.join(", ")}`,
    parse: (raw) => values.includes(raw) ? raw : undefined,
    accepts: (value) => values.includes(value),
  });
}

function customVar<T>(name: string, options: CustomVarOptions<T>): VarSpec<never> {
  return makeSpec(name, options, { expected: options.expected, parse: options.parse });
}

/**
 * The builders of variable specs: `string`, `url`, `urlList`, `int`, `bool`,
 * `duration`, `list`, `oneOf` and `custom`. The key a spec is put under in
 * the spec object becomes the typed field of the loaded config.
 *
 * @example A service's own variables
 * ```ts
 * import assert from "node:assert/strict";
 * import { envVar, loadConfig } from "@homelab/handler-base/config";
 *
 * const spec = {
 *   vllmUrl: envVar.url("VLLM_URL", { default: "http://llm-draft.ai-ml.svc.cluster.local:8000" }),
 *   milvusToken: envVar.string("MILVUS_TOKEN", { secret: true }),
 *   milvusPort: envVar.int("MILVUS_PORT", { default: 19530, min: 1, max: 65535 }),
 *   mode: envVar.oneOf("CONSUME_MODE", ["core", "jetstream"], { default: "core" }),
 *   pipelines: envVar.list("PIPELINES", { default: [] }),
 * };
 * const config = loadConfig(spec, { CONSUME_MODE: "jetstream", PIPELINES: "a, b,," });
 * assert.deepEqual([config.mode, config.pipelines], ["jetstream", ["a", "b"]]);
 * ```
 */
export const envVar: EnvVarBuilders = Object.freeze({
  string: stringVar as EnvVarBuilders["string"],
  url: urlVar as EnvVarBuilders["url"],
  urlList: urlListVar as EnvVarBuilders["urlList"],
  int: intVar as EnvVarBuilders["int"],
  bool: boolVar as EnvVarBuilders["bool"],
  duration: durationVar as EnvVarBuilders["duration"],
  list: listVar as EnvVarBuilders["list"],
  oneOf: oneOfVar as EnvVarBuilders["oneOf"],
  custom: customVar as EnvVarBuilders["custom"],
});

/** A configuration spec: typed field names mapped to variable specs. */
export type ConfigSpec = { readonly [field: string]: VarSpec<unknown> };

/** The loaded configuration of a spec: each field typed by its variable spec. */
export type Config<S extends ConfigSpec> = {
  readonly [K in keyof S]: S[K] extends VarSpec<infer T> ? T : never;
};

/** Where variables are read from: a plain record, or anything with `get(name)` such as `Deno.env`. */
export type EnvSource =
  | { readonly [name: string]: string | undefined }
  | { get(name: string): string | undefined };

/** One bad variable in a {@linkcode ConfigError}. */
export interface ConfigProblem {
  /** The variable's name. */
  readonly name: string;
  /** What is wrong, as text that follows the name ("is required"). */
  readonly problem: string;
}

/**
 * Thrown by {@linkcode loadConfig} with every missing or malformed variable.
 * Its message names them all and never shows a secret value.
 *
 * @example Print the problems
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, envVar, loadConfig } from "@homelab/handler-base/config";
 *
 * try {
 *   loadConfig({ port: envVar.int("HEALTH_PORT", { required: true }) }, {});
 * } catch (error) {
 *   if (!(error instanceof ConfigError)) throw error;
 *   assert.equal(error.message, "Cannot load configuration: HEALTH_PORT is required");
 *   assert.equal(error.problems[0]?.name, "HEALTH_PORT");
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Every bad variable, in spec order. */
  readonly problems: readonly ConfigProblem[];

  /**
   * Creates the error from its problems.
   *
   * @param problems The bad variables; the message lists them all.
   */
  constructor(problems: readonly ConfigProblem[]) {
    const list = problems.map(({ name, problem }) => `${name} ${problem}`).join("; ");
    super(`Cannot load configuration: ${list}`);
    this.name = "ConfigError";
    this.problems = Object.freeze([...problems]);
  }
}

/**
 * The exact, de-duplicated names a spec reads, in spec order: what to pass
 * to `--allow-env=`.
 *
 * @param spec The configuration spec.
 * @returns The variable names.
 *
 * @example Build the permission flag
 * ```ts
 * import { configVarNames, runtimeConfigSpec } from "@homelab/handler-base/config";
 *
 * console.log(`--allow-env=${configVarNames(runtimeConfigSpec).join(",")}`);
 * // --allow-env=HEALTH_PORT,LOG_LEVEL,SHUTDOWN_GRACE_MS
 * ```
 */
export function configVarNames(spec: ConfigSpec): string[] {
  return [...new Set(Object.values(spec).map((varSpec) => varSpec.name))];
}

function readRaw(source: EnvSource, name: string): string | undefined {
  const raw = typeof source.get === "function"
    ? (source as { get(name: string): string | undefined }).get(name)
    : (source as { readonly [name: string]: string | undefined })[name];
  const trimmed = raw?.trim();
  return trimmed === "" ? undefined : trimmed;
}

/**
 * Loads every variable of a spec from a source, reading only the declared
 * names (one `get(name)` each, never the whole environment).
 *
 * @typeParam S The spec.
 * @param spec The configuration spec.
 * @param source A record of values, or `Deno.env`.
 * @returns The frozen, typed configuration.
 * @throws {ConfigError} When any variable is missing, malformed or cannot be
 * read (no permission); the error lists them all.
 *
 * @example Load from the process environment
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig, natsConfigSpec, runtimeConfigSpec } from "@homelab/handler-base/config";
 *
 * // deno run --allow-env=NATS_URL,NATS_USER,...,SHUTDOWN_GRACE_MS service.ts
 * const config = loadConfig({ ...natsConfigSpec, ...runtimeConfigSpec }, Deno.env);
 * assert.ok(config.natsUrl.length >= 1); // NATS_URL's servers, or the in-cluster default
 * ```
 */
export function loadConfig<S extends ConfigSpec>(spec: S, source: EnvSource): Config<S> {
  const config: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [field, varSpec] of Object.entries(spec)) {
    const { name } = varSpec;
    let raw: string | undefined;
    try {
      raw = readRaw(source, name);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      problems.push({ name, problem: `cannot be read: ${reason}` });
      continue;
    }
    const result = varSpec.read(raw);
    if (result.ok) config[field] = result.value;
    else problems.push({ name, problem: result.problem });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config) as Config<S>;
}

/**
 * A copy of a loaded configuration that is safe to log: set secrets become
 * `"[redacted]"` (unset ones stay undefined) and credentials inside URLs are
 * masked.
 *
 * @typeParam S The spec.
 * @param spec The spec the configuration was loaded with.
 * @param config The loaded configuration.
 * @returns A plain object with the same fields.
 *
 * @example Log the configuration at start
 * ```ts
 * import assert from "node:assert/strict";
 * import { envVar, loadConfig, redactedConfig } from "@homelab/handler-base/config";
 *
 * const spec = { token: envVar.string("NATS_TOKEN", { secret: true }) };
 * const config = loadConfig(spec, { NATS_TOKEN: "s3cr3t" });
 * assert.deepEqual(redactedConfig(spec, config), { token: "[redacted]" });
 * ```
 */
export function redactedConfig<S extends ConfigSpec>(
  spec: S,
  config: Config<S>,
): { readonly [K in keyof S]: unknown } {
  const loggable: Record<string, unknown> = {};
  for (const [field, varSpec] of Object.entries(spec)) {
    loggable[field] = varSpec.loggable((config as Record<string, unknown>)[field]);
  }
  return loggable as { readonly [K in keyof S]: unknown };
}

/** The type of {@linkcode runtimeConfigSpec}. */
export type RuntimeConfigSpec = {
  /** `HEALTH_PORT`: the port of the health server, 0 to 65535. */
  readonly healthPort: VarSpec<number>;
  /** `LOG_LEVEL`: debug, info, warn or error. */
  readonly logLevel: VarSpec<LogLevel>;
  /** `SHUTDOWN_GRACE_MS`: how long draining may take after SIGTERM. */
  readonly shutdownGraceMs: VarSpec<number>;
};

/** The loaded {@linkcode runtimeConfigSpec}. */
export type RuntimeConfig = Config<RuntimeConfigSpec>;

/**
 * The variables every service reads for its runtime: `HEALTH_PORT` (8080),
 * `LOG_LEVEL` (info; debug, info, warn or error, any case) and
 * `SHUTDOWN_GRACE_MS` (a duration, 10000).
 *
 * @example Compose with a service's own variables
 * ```ts
 * import assert from "node:assert/strict";
 * import { envVar, loadConfig, runtimeConfigSpec } from "@homelab/handler-base/config";
 *
 * const config = loadConfig(
 *   { ...runtimeConfigSpec, enableTts: envVar.bool("ENABLE_TTS", { default: false }) },
 *   { LOG_LEVEL: "WARNING", SHUTDOWN_GRACE_MS: "30s" },
 * );
 * assert.deepEqual([config.logLevel, config.shutdownGraceMs, config.healthPort], ["warn", 30000, 8080]);
 * ```
 */
export const runtimeConfigSpec: RuntimeConfigSpec = Object.freeze({
  healthPort: envVar.int("HEALTH_PORT", { default: 8080, min: 0, max: 65535 }),
  logLevel: envVar.custom("LOG_LEVEL", {
    default: "info",
    parse: parseLogLevel,
    expected: "one of debug, info, warn, error",
  }),
  shutdownGraceMs: envVar.duration("SHUTDOWN_GRACE_MS", { default: 10_000 }),
});

/** The type of {@linkcode natsConfigSpec}. */
export type NatsConfigSpec = {
  /** `NATS_URL`: one or more comma-separated server URLs. */
  readonly natsUrl: VarSpec<readonly string[]>;
  /** `NATS_USER`: user name, with `NATS_PASSWORD`. */
  readonly natsUser: VarSpec<string | undefined>;
  /** `NATS_PASSWORD`: password (secret). */
  readonly natsPassword: VarSpec<string | undefined>;
  /** `NATS_TOKEN`: token (secret). */
  readonly natsToken: VarSpec<string | undefined>;
  /** `NATS_CREDS`: path of a `.creds` file. */
  readonly natsCreds: VarSpec<string | undefined>;
  /** `NATS_TLS_CA`: path of a PEM CA bundle. */
  readonly natsTlsCa: VarSpec<string | undefined>;
};

/** The loaded {@linkcode natsConfigSpec}. */
export type NatsConfig = Config<NatsConfigSpec>;

/** The default of `NATS_URL`. */
export const DEFAULT_NATS_URL = "nats://nats.ai-ml.svc.cluster.local:4222";

/**
 * The NATS connection variables every service reads: `NATS_URL` (a
 * comma-separated list of `nats`, `tls`, `ws` or `wss` URLs, default
 * {@linkcode DEFAULT_NATS_URL}), `NATS_USER`, `NATS_PASSWORD` (secret),
 * `NATS_TOKEN` (secret), `NATS_CREDS` and `NATS_TLS_CA` (file paths). All but
 * `NATS_URL` are optional.
 *
 * @example Several servers
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig, natsConfigSpec } from "@homelab/handler-base/config";
 *
 * const config = loadConfig(natsConfigSpec, { NATS_URL: "nats://a:4222, nats://b:4222" });
 * assert.deepEqual(config.natsUrl, ["nats://a:4222", "nats://b:4222"]);
 * ```
 */
export const natsConfigSpec: NatsConfigSpec = Object.freeze({
  natsUrl: envVar.urlList("NATS_URL", {
    default: [DEFAULT_NATS_URL],
    schemes: ["nats", "tls", "ws", "wss"],
  }),
  natsUser: envVar.string("NATS_USER"),
  natsPassword: envVar.string("NATS_PASSWORD", { secret: true }),
  natsToken: envVar.string("NATS_TOKEN", { secret: true }),
  natsCreds: envVar.string("NATS_CREDS"),
  natsTlsCa: envVar.string("NATS_TLS_CA"),
});
