/**
 * A minimal service for the process-level tests of `run.ts`: it answers
 * `TTSRequest` on `test.echo` with `TTSStatus{message: text}` after
 * `ECHO_DELAY_MS`, and prints `HEALTH_PORT=<port>` once its health server
 * listens. Run with exactly {@linkcode PERMISSIONS}.
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
  const logger = createLogger({ service: "echo", level: config.logLevel });
  const echo = defineEndpoint({
    subject: "test.echo",
    request: TTSRequestSchema,
    response: TTSStatusSchema,
    concurrency: 64,
    async handle(req, ctx) {
      await new Promise((resolve) => setTimeout(resolve, config.delayMs));
      return { status: "ok", message: req.text, sessionId: ctx.service };
    },
  });
  await runService({
    name: "echo",
    endpoints: [echo],
    nats: natsOptionsFromConfig(config),
    healthPort: config.healthPort,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
    onListen: (port) => console.log(`HEALTH_PORT=${port}`),
  });
}
