/**
 * A minimal service for the process-level tests of `run.ts`: it answers
 * `TTSRequest` on `ECHO_SUBJECT` with `TTSStatus{message: text}` after
 * `ECHO_DELAY_MS`, first asking `ECHO_FORWARD_SUBJECT` the same when that is
 * set (two of them make a chain for trace tests), `ECHO_CONCURRENCY` at once.
 * It runs `runService` without `serviceMain`, so its exit after a stop is
 * `runService`'s own doing. Run with exactly
 * {@linkcode permissions}.
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
import { createLogger } from "../log.ts";
import { TTSRequestSchema, TTSStatusSchema } from "../messages.ts";
import { natsOptionsFromConfig } from "../natsutil.ts";
import { runService } from "../run.ts";

/** The variables of the echo service. */
export const spec = {
  ...natsConfigSpec,
  ...runtimeConfigSpec,
  delayMs: envVar.duration("ECHO_DELAY_MS", { default: 0 }),
  name: envVar.string("ECHO_NAME", { default: "echo" }),
  subject: envVar.string("ECHO_SUBJECT", { default: "test.echo" }),
  forwardSubject: envVar.string("ECHO_FORWARD_SUBJECT"),
  concurrency: envVar.int("ECHO_CONCURRENCY", { default: 64, min: 1 }),
};

/** The exact permission flags the echo service runs with. */
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
  const { name, forwardSubject } = config;
  const logger = createLogger({ service: name, level: config.logLevel });
  const echo = defineEndpoint({
    subject: config.subject,
    request: TTSRequestSchema,
    response: TTSStatusSchema,
    concurrency: config.concurrency,
    async handle(req, ctx) {
      await new Promise((resolve) => setTimeout(resolve, config.delayMs));
      if (forwardSubject) {
        await ctx.request(forwardSubject, TTSRequestSchema, req, TTSStatusSchema, {
          timeout: 5000,
        });
      }
      return { status: "ok", message: req.text, sessionId: ctx.service };
    },
  });
  await runService({
    name,
    endpoints: [echo],
    nats: natsOptionsFromConfig(config),
    healthPort: config.healthPort,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
  });
}
