#!/usr/bin/env -S deno run --allow-net --allow-env --allow-read --allow-write --allow-run=arecord,sox
/**
 * The platform's command-line client: talks to the services over NATS with
 * the contract's messages and subjects (SYSTEM.md sections 3-5), as a
 * frontend does.
 *
 * ```sh
 * deno task cli chat "What is JetStream?" --rag --stream [--tts answer.wav]
 * deno task cli greet ada [--nickname Ada]
 * deno task cli tts "Hello there" -o hello.wav [--stream] [--voice name]
 * deno task cli voices [--refresh]
 * deno task cli stt question.wav          # streams it at real time, prints transcriptions
 * deno task cli listen [--seconds 5]      # the same from the microphone (arecord or sox)
 * deno task cli voice question.wav -o answer.wav
 * deno task cli pipeline document-ingestion source=s3://docs
 * deno task cli services [name]
 * ```
 *
 * Every command takes `--nats <url>` (default `NATS_URL`, else
 * `nats://127.0.0.1:4222`; `NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`,
 * `NATS_CREDS`, `NATS_TLS_CA` apply too), `--timeout <seconds>`, `--json`
 * and `--help`. Every wait is bounded: connecting takes at most 5 s, a
 * command at most its timeout.
 *
 * Output: human text on stdout, progress and errors on stderr (an error is one
 * line, `error: ...`). With `--json` every stdout line is one JSON object with
 * a `type`: events as they happen (`token`, `chunk`, `status`,
 * `transcription`, `interrupt`, `first_audio`), then exactly one `result`
 * (the command's outcome) or one `error`
 * (`{"type":"error","exitCode":4,"kind":"no_service","message":"..."}`).
 *
 * Exit codes: 0 ok; 1 a service answered with an error (ErrorResponse,
 * `success=false`, an `error` field without an answer, a pipeline ending `failed` or `error`);
 * 2 usage (bad arguments, an input file that cannot be read or has the wrong
 * format); 3 NATS cannot be reached; 4 no service answers, or no answer in
 * time; 5 local failure (cannot write the output, no recorder); 130
 * interrupted.
 *
 * Permissions: `--allow-net` (NATS), `--allow-env` (the NATS variables),
 * `--allow-read` and `--allow-write` (audio files), `--allow-run=arecord,sox`
 * (`listen`).
 *
 * @example Run a command in-process and read its JSON output
 * ```ts ignore
 * import { runCli } from "@homelab/handler-base/cli";
 *
 * let out = "";
 * const code = await runCli(["services", "--json"], {
 *   output: { stdout: (text) => void (out += text), stderr: () => {} },
 * });
 * console.log(code, out.trim().split("\n").map((line) => JSON.parse(line).type));
 * ```
 *
 * @module
 */
import { ConfigError, type EnvSource, loadConfig, natsConfigSpec } from "../config.ts";
import { connectNats, type NatsConnection, natsOptionsFromConfig } from "../natsutil.ts";
import {
  type CommandSpec,
  numberOption,
  parseCommandLine,
  parseParameters,
  subjectToken,
} from "./args.ts";
import { chat, greet } from "./chat.ts";
import type { CommandContext } from "./context.ts";
import { CliError, describeFailure, EXIT_CODES, type ExitCode, UsageError } from "./exit_codes.ts";
import { type CliOutput, createUi, denoOutput } from "./output.ts";
import { pipeline } from "./pipeline.ts";
import { services } from "./services.ts";
import { tts, voices } from "./speech.ts";
import { listen, stt } from "./stt.ts";
import { voice } from "./voice.ts";

export type { CliOutput } from "./output.ts";
export { EXIT_CODES, type ExitCode } from "./exit_codes.ts";

/** The NATS URL when neither `--nats` nor `NATS_URL` gives one. */
export const DEFAULT_CLI_NATS_URL = "nats://127.0.0.1:4222";

/** Options of {@linkcode runCli}. */
export interface RunCliOptions {
  /** Where to write. @default the process's stdout and stderr */
  output?: CliOutput;
  /** Where the NATS variables come from. @default `Deno.env` */
  env?: EnvSource;
  /** Aborted on Ctrl-C: ends a command (exit 130), or stops `listen`'s recording. @default none */
  signal?: AbortSignal;
  /** How long connecting to NATS may take, in milliseconds. @default 5000 */
  connectTimeoutMs?: number;
}

type Values = Readonly<Record<string, string | boolean | undefined>>;

function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

function required(values: Values, name: string, command: string): string {
  const value = text(values, name);
  if (value === undefined || value === "") {
    throw new UsageError(`Cannot parse the arguments: ${command} needs --${name}`);
  }
  return value;
}

/** A command ready to run; it returns the JSON-able outcome. */
type PreparedCommand = (ctx: CommandContext) => Promise<object>;

/** Checks the arguments of one parsed command (before connecting) and binds them. */
function prepare(command: CommandSpec, values: Values, args: readonly string[]): PreparedCommand {
  switch (command.name) {
    case "chat": {
      const options = {
        question: args.join(" "),
        rag: values.rag === true,
        stream: values.stream === true,
        ttsFile: text(values, "tts"),
        userId: subjectToken("user", text(values, "user") ?? "cli"),
      };
      return (ctx) => chat(ctx, options);
    }
    case "greet": {
      const options = {
        user: subjectToken("user", args[0]!),
        nickname: text(values, "nickname"),
        premium: values.premium === true,
      };
      return (ctx) => greet(ctx, options);
    }
    case "tts": {
      const options = {
        text: args.join(" "),
        output: required(values, "output", "tts"),
        stream: values.stream === true,
        voice: text(values, "voice"),
        language: text(values, "language"),
      };
      return (ctx) => tts(ctx, options);
    }
    case "voices":
      return (ctx) => voices(ctx, { refresh: values.refresh === true });
    case "stt": {
      const session = text(values, "session");
      const options = {
        file: args[0]!,
        chunkMs: numberOption(values, "chunk-ms") ?? 100,
        speed: numberOption(values, "speed", { allowZero: true }) ?? 1,
        settleMs: numberOption(values, "settle-ms") ?? 3000,
        ...(session ? { sessionId: subjectToken("session", session) } : {}),
      };
      return (ctx) => stt(ctx, options);
    }
    case "listen": {
      const options = {
        seconds: numberOption(values, "seconds"),
        chunkMs: numberOption(values, "chunk-ms") ?? 100,
        settleMs: numberOption(values, "settle-ms") ?? 3000,
      };
      return (ctx) => listen(ctx, options);
    }
    case "voice": {
      const options = {
        input: args[0]!,
        output: required(values, "output", "voice"),
        language: text(values, "language"),
        collection: text(values, "collection"),
      };
      return (ctx) => voice(ctx, options);
    }
    case "pipeline": {
      const requestId = text(values, "request-id");
      const options = {
        name: args[0]!,
        parameters: parseParameters(args.slice(1)),
        ...(requestId ? { requestId: subjectToken("request id", requestId) } : {}),
      };
      return (ctx) => pipeline(ctx, options);
    }
    case "services": {
      const name = args[0];
      return (ctx) => services(ctx, { name });
    }
    default:
      throw new UsageError(`Cannot run "${command.name}": not implemented`);
  }
}

async function connect(
  natsUrl: string | undefined,
  env: EnvSource,
  connectTimeoutMs: number,
): Promise<NatsConnection> {
  const get = (name: string) =>
    "get" in env && typeof env.get === "function"
      ? (env.get as (n: string) => string | undefined)(name)
      : (env as Record<string, string | undefined>)[name];
  const url = natsUrl ?? get("NATS_URL") ?? DEFAULT_CLI_NATS_URL;
  let config;
  try {
    config = loadConfig(natsConfigSpec, { get: (name) => name === "NATS_URL" ? url : get(name) });
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(`Cannot connect: ${error.message}`);
    throw error;
  }
  try {
    return await connectNats({
      ...natsOptionsFromConfig(config),
      name: "homelab-cli",
      connectTimeoutMs,
    });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new CliError(
      EXIT_CODES.natsUnavailable,
      `Cannot connect to NATS at ${url}: ${detail}`,
      { cause: error },
    );
  }
}

/**
 * Runs the client: parses the arguments, connects, runs the command, reports,
 * and returns the exit code (it never exits the process itself).
 *
 * @param args The arguments (`Deno.args`).
 * @param options Output, environment, Ctrl-C signal.
 * @returns The exit code (see {@linkcode EXIT_CODES}).
 *
 * @example
 * ```ts
 * import { runCli } from "@homelab/handler-base/cli";
 *
 * let out = "";
 * const code = await runCli(["--help"], { output: { stdout: (t) => void (out += t), stderr: () => {} } });
 * console.log(code, out.startsWith("Usage:")); // 0 true
 * ```
 */
export async function runCli(
  args: readonly string[],
  options: RunCliOptions = {},
): Promise<ExitCode> {
  const output = options.output ?? denoOutput();
  const json = args.includes("--json");
  const ui = createUi(output, { json });
  const fail = (error: unknown, service?: string): ExitCode => {
    const failure = describeFailure(error, service);
    if (json) {
      ui.event("error", { exitCode: failure.code, kind: failure.kind, message: failure.message });
    } else output.stderr(`error: ${failure.message}\n`);
    return failure.code;
  };
  let parsed;
  let run: PreparedCommand;
  try {
    parsed = parseCommandLine(args);
    if (parsed.kind === "help") {
      output.stdout(parsed.text);
      return EXIT_CODES.ok;
    }
    run = prepare(parsed.command, parsed.values, parsed.positionals);
  } catch (error) {
    return fail(error);
  }
  const { command } = parsed;
  let nc: NatsConnection | undefined;
  try {
    nc = await connect(parsed.natsUrl, options.env ?? Deno.env, options.connectTimeoutMs ?? 5000);
    const ctx: CommandContext = {
      nc,
      ui,
      timeoutMs: parsed.timeoutMs,
      signal: options.signal,
    };
    const result = await run(ctx);
    ui.event("result", { command: command.name, ...result });
    return EXIT_CODES.ok;
  } catch (error) {
    return fail(error, command.service);
  } finally {
    await nc?.close().catch(() => {});
  }
}

if (import.meta.main) {
  const controller = new AbortController();
  const onInterrupt = () => {
    // The first Ctrl-C ends the command (or stops listen's recording); the second, the process.
    if (controller.signal.aborted) Deno.exit(EXIT_CODES.interrupted);
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const code = await runCli(Deno.args, { signal: controller.signal });
  Deno.exit(code);
}
