/**
 * The pipeline registry of pipeline-bridge: which engine runs a pipeline and
 * where (an Argo WorkflowTemplate, or a Kubeflow pipeline and version), with
 * default parameters, and the validation of a trigger's parameters.
 *
 * The five pipelines of the contract are built in (SYSTEM.md section 5):
 * `document-ingestion`, `batch-inference` and `model-evaluation` run on
 * Argo (a WorkflowTemplate of the same name), `rag-query` and
 * `voice-pipeline` on Kubeflow (a pipeline whose id is the same name; set the
 * real ids in the file). A file (`PIPELINES_CONFIG`, JSON or YAML) adds
 * pipelines and replaces built-in ones of the same name; with
 * `include_defaults: false` only its own pipelines exist:
 *
 * ```yaml
 * include_defaults: true
 * pipelines:
 *   document-ingestion:
 *     engine: argo
 *     template: document-ingestion      # WorkflowTemplate name
 *     parameters: { chunk_size: "512" } # defaults, a trigger may override them
 *   rag-query:
 *     engine: kubeflow
 *     pipeline_id: 7c1b0a9e-...         # KFP pipeline id
 *     version_id: 0d2e...               # optional: the latest version when unset
 *     experiment_id: 11aa...            # optional
 *     allowed_parameters: [query, top_k] # optional: refuse any other name
 * ```
 *
 * Limits: at most {@linkcode MAX_PIPELINES} pipelines, a file of at most
 * {@linkcode MAX_FILE_BYTES} bytes; pipeline names are lower-case DNS labels
 * of at most 40 characters; parameter names start with a letter or `_` and
 * hold letters, digits, `_` (and `-` on Argo), at most 63 characters; a value
 * is at most {@linkcode MAX_VALUE_CHARS} characters without control
 * characters other than tab and newline; at most {@linkcode MAX_PARAMETERS}
 * parameters after merging the defaults.
 *
 * @example Merge a file over the defaults and validate a trigger
 * ```ts
 * import { parseRegistry, resolveParameters } from "./registry.ts";
 *
 * const registry = parseRegistry('{"pipelines": {"ocr": {"engine": "argo", "template": "ocr-v2"}}}', "p.json");
 * console.log(registry.names().length); // 6
 * const params = resolveParameters(registry.get("ocr")!, { lang: "de" });
 * console.log(params); // { ok: true, parameters: { lang: "de" } }
 * ```
 *
 * @module
 */
import * as yaml from "js-yaml";

/** The engines a pipeline can run on. */
export type EngineName = "argo" | "kubeflow";

/** A pipeline that runs as an Argo Workflow from a WorkflowTemplate. */
export interface ArgoPipeline {
  /** The pipeline's name in triggers. */
  readonly name: string;
  /** `argo`. */
  readonly engine: "argo";
  /** The WorkflowTemplate's name. */
  readonly template: string;
  /** Default parameters; a trigger's own override them. */
  readonly parameters: Readonly<Record<string, string>>;
  /** The only parameter names a trigger may set, or undefined for any. */
  readonly allowedParameters: readonly string[] | undefined;
}

/** A pipeline that runs as a Kubeflow Pipelines run. */
export interface KubeflowPipeline {
  /** The pipeline's name in triggers. */
  readonly name: string;
  /** `kubeflow`. */
  readonly engine: "kubeflow";
  /** The KFP pipeline id. */
  readonly pipelineId: string;
  /** The KFP pipeline version id, or undefined for the latest. */
  readonly versionId: string | undefined;
  /** The KFP experiment id, or undefined for the default. */
  readonly experimentId: string | undefined;
  /** Default parameters. */
  readonly parameters: Readonly<Record<string, string>>;
  /** The only parameter names a trigger may set, or undefined for any. */
  readonly allowedParameters: readonly string[] | undefined;
}

/** One registered pipeline. */
export type Pipeline = ArgoPipeline | KubeflowPipeline;

/** The pipelines a bridge knows. */
export interface Registry {
  /** The pipeline of that name, or undefined. */
  get(name: string): Pipeline | undefined;
  /** Every name, sorted. */
  names(): string[];
  /** The engines some pipeline uses. */
  engines(): Set<EngineName>;
}

/** A registry file that cannot be used; its message names the file and the problem. */
export class RegistryError extends Error {
  /**
   * Creates the error.
   *
   * @param file The file's path.
   * @param problem What is wrong.
   */
  constructor(file: string, problem: string) {
    super(`Cannot load the pipeline registry ${file}: ${problem}`);
    this.name = "RegistryError";
  }
}

/** The most pipelines a registry may hold. */
export const MAX_PIPELINES = 200;
/** The most parameters a run may get (defaults and the trigger's together). */
export const MAX_PARAMETERS = 64;
/** The longest parameter value. */
export const MAX_VALUE_CHARS = 8192;
/** The largest registry file. */
export const MAX_FILE_BYTES = 1024 * 1024;

const PIPELINE_NAME = /^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/;
const ARGO_PARAMETER = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;
const KUBEFLOW_PARAMETER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const KFP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

function argo(name: string): ArgoPipeline {
  return { name, engine: "argo", template: name, parameters: {}, allowedParameters: undefined };
}

function kubeflow(name: string): KubeflowPipeline {
  return {
    name,
    engine: "kubeflow",
    pipelineId: name,
    versionId: undefined,
    experimentId: undefined,
    parameters: {},
    allowedParameters: undefined,
  };
}

/** The built-in pipelines of the contract. */
export const DEFAULT_PIPELINES: readonly Pipeline[] = Object.freeze([
  argo("document-ingestion"),
  argo("batch-inference"),
  argo("model-evaluation"),
  kubeflow("rag-query"),
  kubeflow("voice-pipeline"),
]);

/**
 * Why a parameter name or value is not acceptable for an engine, or undefined.
 *
 * @param engine The engine.
 * @param name The name.
 * @param value The value.
 * @returns The problem, or undefined.
 */
export function parameterProblem(
  engine: EngineName,
  name: string,
  value: string,
): string | undefined {
  const pattern = engine === "argo" ? ARGO_PARAMETER : KUBEFLOW_PARAMETER;
  if (!pattern.test(name)) {
    const shown = JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
    return `parameter name ${shown} is not valid (a letter or _ first, then letters, digits, _${
      engine === "argo" ? " or -" : ""
    }; at most 63)`;
  }
  if (value.length > MAX_VALUE_CHARS) {
    return `parameter ${name} is longer than ${MAX_VALUE_CHARS} characters`;
  }
  if (CONTROL.test(value)) return `parameter ${name} contains control characters`;
  return undefined;
}

function registryOf(pipelines: ReadonlyMap<string, Pipeline>): Registry {
  return {
    get: (name) => pipelines.get(name),
    names: () => [...pipelines.keys()].sort(),
    engines: () => new Set([...pipelines.values()].map((p) => p.engine)),
  };
}

/**
 * The registry of the built-in pipelines only.
 *
 * @returns The registry.
 */
export function defaultRegistry(): Registry {
  return registryOf(new Map(DEFAULT_PIPELINES.map((p) => [p.name, p])));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function scalar(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return undefined;
}

function parseEntry(name: string, raw: unknown): Pipeline | string {
  if (!PIPELINE_NAME.test(name)) {
    return `pipeline name ${
      JSON.stringify(name)
    } is not a lower-case DNS label of at most 40 characters`;
  }
  if (!isObject(raw)) return `pipeline ${name} is not a mapping`;
  const engine = raw.engine;
  if (engine !== "argo" && engine !== "kubeflow") {
    return `pipeline ${name}: engine must be argo or kubeflow`;
  }
  const known = engine === "argo"
    ? ["engine", "template", "parameters", "allowed_parameters"]
    : ["engine", "pipeline_id", "version_id", "experiment_id", "parameters", "allowed_parameters"];
  const unknown = Object.keys(raw).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    return `pipeline ${name}: unknown field ${unknown[0]} (known: ${known.join(", ")})`;
  }
  const parameters: Record<string, string> = {};
  if (raw.parameters !== undefined && raw.parameters !== null) {
    if (!isObject(raw.parameters)) return `pipeline ${name}: parameters must be a mapping`;
    for (const [key, value] of Object.entries(raw.parameters)) {
      const text = scalar(value);
      if (text === undefined) return `pipeline ${name}: parameter ${key} must be a scalar`;
      const problem = parameterProblem(engine, key, text);
      if (problem) return `pipeline ${name}: ${problem}`;
      parameters[key] = text;
    }
    if (Object.keys(parameters).length > MAX_PARAMETERS) {
      return `pipeline ${name}: more than ${MAX_PARAMETERS} parameters`;
    }
  }
  let allowedParameters: string[] | undefined;
  if (raw.allowed_parameters !== undefined && raw.allowed_parameters !== null) {
    const list = raw.allowed_parameters;
    if (!Array.isArray(list) || !list.every((item) => typeof item === "string")) {
      return `pipeline ${name}: allowed_parameters must be a list of names`;
    }
    for (const item of list) {
      const problem = parameterProblem(engine, item, "");
      if (problem) return `pipeline ${name}: allowed_parameters: ${problem}`;
    }
    allowedParameters = [...list];
  }
  if (engine === "argo") {
    const template = raw.template ?? name;
    if (typeof template !== "string" || !K8S_NAME.test(template)) {
      return `pipeline ${name}: template must be a WorkflowTemplate name (lower-case DNS name)`;
    }
    return { name, engine, template, parameters, allowedParameters };
  }
  const id = (key: string): string | undefined | false => {
    const value = raw[key];
    if (value === undefined || value === null) return undefined;
    return typeof value === "string" && KFP_ID.test(value) ? value : false;
  };
  const pipelineId = id("pipeline_id");
  if (!pipelineId) return `pipeline ${name}: pipeline_id is required (a KFP pipeline id)`;
  const versionId = id("version_id");
  if (versionId === false) return `pipeline ${name}: version_id is not a KFP id`;
  const experimentId = id("experiment_id");
  if (experimentId === false) return `pipeline ${name}: experiment_id is not a KFP id`;
  return { name, engine, pipelineId, versionId, experimentId, parameters, allowedParameters };
}

/**
 * Parses a registry file's text (JSON or YAML) and merges it over the
 * built-in pipelines.
 *
 * @param text The file's content.
 * @param file The file's path, for messages.
 * @returns The registry.
 * @throws {RegistryError} Naming the file and the first problem.
 */
export function parseRegistry(text: string, file: string): Registry {
  if (new TextEncoder().encode(text).length > MAX_FILE_BYTES) {
    throw new RegistryError(file, `larger than ${MAX_FILE_BYTES} bytes`);
  }
  let document: unknown;
  try {
    document = yaml.load(text, { filename: file, json: true });
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new RegistryError(file, `not valid YAML or JSON: ${reason}`);
  }
  if (!isObject(document)) throw new RegistryError(file, "the top level must be a mapping");
  const unknown = Object.keys(document).filter((k) =>
    k !== "pipelines" && k !== "include_defaults"
  );
  if (unknown.length > 0) {
    throw new RegistryError(
      file,
      `unknown top-level field ${unknown[0]} (known: pipelines, include_defaults)`,
    );
  }
  const includeDefaults = document.include_defaults ?? true;
  if (typeof includeDefaults !== "boolean") {
    throw new RegistryError(file, "include_defaults must be true or false");
  }
  const entries = document.pipelines ?? {};
  if (!isObject(entries)) throw new RegistryError(file, "pipelines must be a mapping of names");
  const pipelines = new Map<string, Pipeline>(
    includeDefaults ? DEFAULT_PIPELINES.map((p) => [p.name, p]) : [],
  );
  for (const [name, raw] of Object.entries(entries)) {
    const entry = parseEntry(name, raw);
    if (typeof entry === "string") throw new RegistryError(file, entry);
    pipelines.set(name, entry);
  }
  if (pipelines.size === 0) throw new RegistryError(file, "it defines no pipeline");
  if (pipelines.size > MAX_PIPELINES) {
    throw new RegistryError(file, `more than ${MAX_PIPELINES} pipelines`);
  }
  return registryOf(pipelines);
}

/**
 * Loads the registry: the built-in pipelines, merged with the file when one
 * is given.
 *
 * @param file The file's path, or undefined.
 * @returns The registry.
 * @throws {RegistryError} When the file cannot be read or used.
 */
export async function loadRegistry(file: string | undefined): Promise<Registry> {
  if (!file) return defaultRegistry();
  let text: string;
  try {
    const info = await Deno.stat(file);
    if (!info.isFile) throw new RegistryError(file, "not a file");
    if (info.size > MAX_FILE_BYTES) {
      throw new RegistryError(file, `larger than ${MAX_FILE_BYTES} bytes`);
    }
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof RegistryError) throw error;
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ? "no permission to read it (add --allow-read for it)"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new RegistryError(file, reason);
  }
  return parseRegistry(text, file);
}

/** The parameters of a run, or what is wrong with the trigger's. */
export type ParameterResult =
  | { readonly ok: true; readonly parameters: Record<string, string> }
  | { readonly ok: false; readonly problem: string };

/**
 * The parameters a run of a pipeline gets: its defaults overridden by the
 * trigger's, each name and value validated for the engine.
 *
 * @param pipeline The pipeline.
 * @param given The trigger's parameters.
 * @returns The parameters, or the first problem.
 */
export function resolveParameters(
  pipeline: Pipeline,
  given: Readonly<Record<string, string>>,
): ParameterResult {
  const names = Object.keys(given);
  if (names.length > MAX_PARAMETERS) {
    return { ok: false, problem: `more than ${MAX_PARAMETERS} parameters` };
  }
  for (const name of names) {
    const problem = parameterProblem(pipeline.engine, name, given[name]!);
    if (problem) return { ok: false, problem };
    if (pipeline.allowedParameters && !pipeline.allowedParameters.includes(name)) {
      return {
        ok: false,
        problem: `parameter ${name} is not accepted by pipeline ${pipeline.name} (accepted: ${
          pipeline.allowedParameters.join(", ") || "none"
        })`,
      };
    }
  }
  const parameters = { ...pipeline.parameters, ...given };
  if (Object.keys(parameters).length > MAX_PARAMETERS) {
    return { ok: false, problem: `more than ${MAX_PARAMETERS} parameters with the defaults` };
  }
  return { ok: true, parameters };
}
