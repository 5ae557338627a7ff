/**
 * A service for the process-level JetStream tests: it takes `TTSRequest` jobs
 * on `test.jobs.>` (stored by the stream `TEST_JOBS`), waits `JOB_DELAY_MS`,
 * publishes the job id as `TTSStatus{sessionId}` on `test.handled` (an output,
 * flushed before the ack). `CONSUME_MODE` and its family come from
 * `consumeConfigSpec`.
 * Run with exactly {@linkcode permissions}.
 *
 * @module
 */
import {
  ConfigError,
  configVarNames,
  envVar,
  loadConfig,
  natsConfigSpec,
  runtimeConfigSpec,
} from "../config.ts";
import { defineEndpoint } from "../handler.ts";
import { consumeConfigSpec, consumeSettingsFromConfig } from "../jetstream.ts";
import { createLogger } from "../log.ts";
import { TTSRequestSchema, TTSStatusSchema } from "../messages.ts";
import { natsOptionsFromConfig } from "../natsutil.ts";
import { runService } from "../run.ts";

/** The variables of the jobs service. */
export const spec = {
  ...natsConfigSpec,
  ...runtimeConfigSpec,
  ...consumeConfigSpec,
  delayMs: envVar.duration("JOB_DELAY_MS", { default: 0 }),
};

/**
 * The exact permission flags the jobs service runs with.
 *
 * @param natsHostPort The NATS server's `host:port`.
 * @returns The flags.
 */
export function permissions(natsHostPort: string): string[] {
  return [
    `--allow-env=${configVarNames(spec).join(",")}`,
    `--allow-net=${natsHostPort},0.0.0.0`,
  ];
}

if (import.meta.main) {
  let config;
  try {
    config = loadConfig(spec, Deno.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(78);
  }
  const logger = createLogger({ service: "jobs", level: config.logLevel });
  const jobs = defineEndpoint({
    subject: "test.jobs.>",
    stream: "TEST_JOBS",
    request: TTSRequestSchema,
    concurrency: 8,
    async handle(req, ctx) {
      await new Promise((resolve) => setTimeout(resolve, config.delayMs));
      ctx.publish("test.handled", TTSStatusSchema, { sessionId: req.text, status: "done" });
    },
  });
  await runService({
    name: "jobs",
    endpoints: [jobs],
    nats: natsOptionsFromConfig(config),
    healthPort: config.healthPort,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
    ...consumeSettingsFromConfig(config),
  });
}
