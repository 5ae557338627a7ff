/**
 * Loads {@linkcode spec} from the process environment and prints the
 * redacted configuration as JSON, or the configuration error on stderr with
 * exit code 1. Run by `config_test.ts` with `--allow-env=<exactly the names>`.
 *
 * @module
 */
import {
  ConfigError,
  envVar,
  loadConfig,
  natsConfigSpec,
  redactedConfig,
  runtimeConfigSpec,
} from "../config.ts";

/** The spec of a typical service: shared fragments plus its own variables. */
export const spec = {
  ...natsConfigSpec,
  ...runtimeConfigSpec,
  enableTts: envVar.bool("ENABLE_TTS", { default: false }),
  llmTimeoutMs: envVar.duration("LLM_TIMEOUT_MS", { default: 60_000 }),
  mode: envVar.oneOf("CONSUME_MODE", ["core", "jetstream"], { default: "core" }),
};

if (import.meta.main) {
  try {
    console.log(JSON.stringify(redactedConfig(spec, loadConfig(spec, Deno.env))));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
}
