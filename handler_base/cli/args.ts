/**
 * The command line of the client: the command table (names, arguments,
 * options, help) and its parser, built on `node:util`'s `parseArgs`. Parsing
 * touches nothing: it returns what to run or the help to print, or throws a
 * {@linkcode UsageError}.
 *
 * @example
 * ```ts
 * import { parseCommandLine } from "./args.ts";
 *
 * const parsed = parseCommandLine(["chat", "What is NATS?", "--rag", "--json"]);
 * if (parsed.kind === "run") console.log(parsed.command.name, parsed.json); // chat true
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { EXIT_CODES, UsageError } from "./exit_codes.ts";

/** One option of a command. */
export interface OptionSpec {
  /** `boolean` for a flag, `string` for an option with a value. */
  readonly type: "boolean" | "string";
  /** A one-letter alias. @default none */
  readonly short?: string;
  /** The value's name in help, for string options. @default "value" */
  readonly value?: string;
  /** One line of help. */
  readonly help: string;
}

/** One command of the client. */
export interface CommandSpec {
  /** The command's name. */
  readonly name: string;
  /** What it does, in one line. */
  readonly summary: string;
  /** The arguments after the name, for help (`"<in.wav>"`). */
  readonly args: string;
  /** More help, line by line. */
  readonly details: readonly string[];
  /** Its options (the global ones are added). */
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Fewest positional arguments. */
  readonly minArgs: number;
  /** Most positional arguments (Infinity for any). */
  readonly maxArgs: number;
  /** Default of `--timeout`, in seconds. */
  readonly timeoutS: number;
  /** The service it talks to, for error hints. */
  readonly service?: string;
}

/** The options every command takes. */
export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  nats: {
    type: "string",
    value: "url",
    help: "NATS server (default: $NATS_URL, else nats://127.0.0.1:4222)",
  },
  json: { type: "boolean", help: "one JSON object per line on stdout (see --help)" },
  timeout: { type: "string", value: "seconds", help: "how long to wait for the service" },
  help: { type: "boolean", short: "h", help: "show this help" },
};

/**
 * Every command, in the order help lists them.
 *
 * @example
 * ```ts
 * import { COMMANDS } from "./args.ts";
 *
 * console.log(COMMANDS.map((c) => c.name).join(" "));
 * // chat greet tts voices stt listen voice pipeline services
 * ```
 */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "chat",
    summary: "ask chat-handler a question, printing tokens as they arrive",
    args: '"question"',
    details: [
      "Sends a ChatRequest on ai.chat.request; with --stream prints the ChatStreamChunk",
      "deltas of ai.chat.response.stream.<request_id> as they arrive.",
    ],
    options: {
      rag: { type: "boolean", help: "use the knowledge base (RAG and reranking)" },
      stream: { type: "boolean", help: "stream the answer token by token" },
      tts: { type: "string", value: "out.wav", help: "also speak the answer into a WAV file" },
      user: { type: "string", value: "id", help: 'the user id sent (default "cli")' },
    },
    minArgs: 1,
    maxArgs: Infinity,
    timeoutS: 120,
    service: "chat-handler",
  },
  {
    name: "greet",
    summary: "ask chat-handler to greet a user",
    args: "<user>",
    details: ["Sends a GreetingRequest on ai.chat.user.<user>.greeting.request."],
    options: {
      nickname: { type: "string", value: "name", help: "the nickname to greet" },
      premium: { type: "boolean", help: "a premium user (premium model)" },
    },
    minArgs: 1,
    maxArgs: 1,
    timeoutS: 60,
    service: "chat-handler",
  },
  {
    name: "tts",
    summary: "speak a text into a WAV file through tts-module",
    args: '"text"',
    details: [
      "Sends a TTSRequest on ai.voice.tts.request.<session>; with --stream assembles the",
      "TTSAudioChunk messages of ai.voice.tts.audio.<session> and prints the time to first audio.",
    ],
    options: {
      output: { type: "string", short: "o", value: "out.wav", help: "the WAV file (required)" },
      stream: { type: "boolean", help: "stream the audio in chunks" },
      voice: { type: "string", value: "name", help: "a custom voice or backend speaker" },
      language: { type: "string", value: "code", help: 'the language (default "en")' },
    },
    minArgs: 1,
    maxArgs: Infinity,
    timeoutS: 120,
    service: "tts-module",
  },
  {
    name: "voices",
    summary: "list tts-module's voices",
    args: "",
    details: ["Asks ai.voice.tts.voices.list, or ai.voice.tts.voices.refresh with --refresh."],
    options: { refresh: { type: "boolean", help: "rescan the voice directory first" } },
    minArgs: 0,
    maxArgs: 0,
    timeoutS: 15,
    service: "tts-module",
  },
  {
    name: "stt",
    summary: "stream a WAV file to stt-module, printing transcriptions as they come",
    args: "<in.wav>",
    details: [
      "Sends STTStreamMessage start, chunk..., end on ai.voice.stream.<session>, chunks of",
      "--chunk-ms of audio paced at real time, and prints the partial and final STTTranscription",
      "messages of ai.voice.transcription.<session>. The WAV must be 16-bit PCM (16 kHz mono is",
      "what the platform expects). --timeout bounds the wait after the end of the audio.",
    ],
    options: {
      "chunk-ms": { type: "string", value: "ms", help: "audio per chunk (default 100)" },
      speed: {
        type: "string",
        value: "x",
        help: "pace, times real time; 0 = no pacing (default 1)",
      },
      "settle-ms": {
        type: "string",
        value: "ms",
        help: "quiet time after the end that closes the session (default 3000)",
      },
      session: { type: "string", value: "id", help: "the session id (default a new UUID)" },
    },
    minArgs: 1,
    maxArgs: 1,
    timeoutS: 60,
    service: "stt-module",
  },
  {
    name: "listen",
    summary: "stream the microphone to stt-module (needs arecord or sox)",
    args: "",
    details: [
      "Records 16 kHz mono with arecord (alsa-utils) or sox and streams it as stt does,",
      "until --seconds pass or Ctrl-C; then waits for the final transcription.",
    ],
    options: {
      seconds: { type: "string", value: "n", help: "stop after n seconds (default: Ctrl-C)" },
      "chunk-ms": { type: "string", value: "ms", help: "audio per chunk (default 100)" },
      "settle-ms": { type: "string", value: "ms", help: "as for stt (default 3000)" },
    },
    minArgs: 0,
    maxArgs: 0,
    timeoutS: 60,
    service: "stt-module",
  },
  {
    name: "voice",
    summary: "ask voice-assistant a spoken question, write the spoken answer",
    args: "<in.wav>",
    details: [
      "Sends a VoiceRequest on ai.voice.request; prints the transcription, the answer and the",
      "time to first audio (the first TTSAudioChunk on ai.voice.response.audio.<request_id>).",
    ],
    options: {
      output: { type: "string", short: "o", value: "out.wav", help: "the WAV file (required)" },
      language: { type: "string", value: "code", help: "the language of the question" },
      collection: { type: "string", value: "name", help: "the knowledge-base collection" },
    },
    minArgs: 1,
    maxArgs: 1,
    timeoutS: 120,
    service: "voice-assistant",
  },
  {
    name: "pipeline",
    summary: "trigger a pipeline and follow its status until it ends",
    args: "<name> [key=value...]",
    details: [
      "Sends a PipelineTrigger on ai.pipeline.trigger and prints each PipelineStatus of",
      "ai.pipeline.status.<request_id> until succeeded, failed or error (exit code 1 unless",
      "succeeded). --timeout bounds the whole run; the first status must come within 15 s.",
    ],
    options: {
      "request-id": {
        type: "string",
        value: "id",
        help: "the request id (a repeat starts no run)",
      },
    },
    minArgs: 1,
    maxArgs: Infinity,
    timeoutS: 600,
    service: "pipeline-bridge",
  },
  {
    name: "services",
    summary: "list running services, their endpoints and stats ($SRV)",
    args: "[name]",
    details: ["Gathers the answers to $SRV.PING, $SRV.INFO and $SRV.STATS (or .<name>)."],
    options: {},
    minArgs: 0,
    maxArgs: 1,
    timeoutS: 5,
  },
];

/** What {@linkcode parseCommandLine} found. */
export type ParsedCommandLine =
  | {
    /** Print `text` and exit 0. */
    readonly kind: "help";
    /** The help. */
    readonly text: string;
  }
  | {
    /** Run `command`. */
    readonly kind: "run";
    /** The command. */
    readonly command: CommandSpec;
    /** Its options, by name. */
    readonly values: Readonly<Record<string, string | boolean | undefined>>;
    /** Its positional arguments. */
    readonly positionals: readonly string[];
    /** `--nats`, when given. */
    readonly natsUrl: string | undefined;
    /** `--json`. */
    readonly json: boolean;
    /** `--timeout` in milliseconds, else the command's default. */
    readonly timeoutMs: number;
  };

/**
 * Parses a number option.
 *
 * @param values The parsed options.
 * @param name The option.
 * @param bounds The smallest value and whether 0 is allowed.
 * @returns The number, or undefined when the option is absent.
 * @throws {UsageError} When it is not a number in range.
 *
 * @example
 * ```ts
 * import { numberOption } from "./args.ts";
 *
 * console.log(numberOption({ speed: "2" }, "speed")); // 2
 * ```
 */
export function numberOption(
  values: Readonly<Record<string, string | boolean | undefined>>,
  name: string,
  bounds: { allowZero?: boolean } = {},
): number | undefined {
  const raw = values[name];
  if (raw === undefined || typeof raw === "boolean") return undefined;
  const value = Number(raw);
  const ok = raw.trim() !== "" && Number.isFinite(value) &&
    (value > 0 || (bounds.allowZero === true && value === 0));
  if (!ok) {
    const what = bounds.allowZero ? "a number >= 0" : "a number > 0";
    throw new UsageError(`Cannot parse --${name}: "${raw}" is not ${what}`);
  }
  return value;
}

/**
 * Parses the command line.
 *
 * @param args The arguments (without the program).
 * @returns The command to run, or the help to print.
 * @throws {UsageError} When the arguments are wrong.
 *
 * @example
 * ```ts
 * import { parseCommandLine } from "./args.ts";
 *
 * console.log(parseCommandLine(["--help"]).kind); // "help"
 * ```
 */
export function parseCommandLine(args: readonly string[]): ParsedCommandLine {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    const command = COMMANDS.find((c) => c.name === topic);
    return { kind: "help", text: command ? commandHelp(command) : overviewHelp() };
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    throw new UsageError(`Cannot parse the arguments: unknown command "${name}"`);
  }
  const options = { ...command.options, ...GLOBAL_OPTIONS };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: Object.fromEntries(
        Object.entries(options).map(([key, o]) => [
          key,
          { type: o.type, ...(o.short ? { short: o.short } : {}) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(`Cannot parse the arguments of ${name}: ${(error as Error).message}`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { kind: "help", text: commandHelp(command) };
  const { positionals } = parsed;
  if (positionals.length < command.minArgs || positionals.length > command.maxArgs) {
    const expected = command.args ? `${name} ${command.args}` : `${name} takes no arguments`;
    throw new UsageError(`Cannot parse the arguments: usage: ${expected}`);
  }
  const timeoutS = numberOption(values, "timeout") ?? command.timeoutS;
  return {
    kind: "run",
    command,
    values,
    positionals,
    natsUrl: typeof values.nats === "string" ? values.nats : undefined,
    json: values.json === true,
    timeoutMs: Math.round(timeoutS * 1000),
  };
}

/**
 * Parses `key=value` arguments.
 *
 * @param pairs The arguments.
 * @returns The parameters.
 * @throws {UsageError} When one has no `=` or an empty key.
 *
 * @example
 * ```ts
 * import { parseParameters } from "./args.ts";
 *
 * console.log(parseParameters(["source=s3://docs", "batch=8"])); // { source: "s3://docs", batch: "8" }
 * ```
 */
export function parseParameters(pairs: readonly string[]): Record<string, string> {
  const parameters: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) {
      throw new UsageError(`Cannot parse the parameter "${pair}": write it as key=value`);
    }
    parameters[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return parameters;
}

/**
 * Checks that a value can be one token of a NATS subject.
 *
 * @param what What the value is, for the message.
 * @param value The value.
 * @returns The value.
 * @throws {UsageError} When it is empty or holds `.`, `*`, `>` or white space.
 *
 * @example
 * ```ts
 * import { subjectToken } from "./args.ts";
 *
 * console.log(subjectToken("user", "ada")); // "ada"
 * ```
 */
export function subjectToken(what: string, value: string): string {
  if (!/^[^\s.*>]+$/.test(value)) {
    throw new UsageError(
      `Cannot use the ${what} "${value}": it goes into a subject, so no dots, wildcards or spaces`,
    );
  }
  return value;
}

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  return Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${name}${
      o.type === "string" ? ` <${o.value ?? "value"}>` : ""
    }`;
    return `  ${flag.padEnd(28)} ${o.help}`;
  });
}

const PROGRAM = "deno task cli";

/**
 * The help of one command.
 *
 * @param command The command.
 * @returns The help text.
 *
 * @example
 * ```ts
 * import { COMMANDS, commandHelp } from "./args.ts";
 *
 * console.log(commandHelp(COMMANDS[0]!).split("\n")[0]);
 * // Usage: deno task cli chat "question" [options]
 * ```
 */
export function commandHelp(command: CommandSpec): string {
  return [
    `Usage: ${PROGRAM} ${command.name}${command.args ? ` ${command.args}` : ""} [options]`,
    "",
    `${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.`,
    ...command.details,
    "",
    "Options:",
    ...optionLines(command.options),
    ...optionLines({
      ...GLOBAL_OPTIONS,
      timeout: {
        ...GLOBAL_OPTIONS.timeout!,
        help: `how long to wait (default ${command.timeoutS})`,
      },
    }),
    "",
    `Exit codes: ${exitCodeSummary()}.`,
    "",
  ].join("\n");
}

function exitCodeSummary(): string {
  return `${EXIT_CODES.ok} ok, ${EXIT_CODES.remoteError} the service answered an error, ` +
    `${EXIT_CODES.usage} usage, ${EXIT_CODES.natsUnavailable} NATS unreachable, ` +
    `${EXIT_CODES.noService} no service answering or timeout, ${EXIT_CODES.localError} local ` +
    `failure, ${EXIT_CODES.interrupted} interrupted`;
}

/**
 * The help of the client.
 *
 * @returns The help text.
 *
 * @example
 * ```ts
 * import { overviewHelp } from "./args.ts";
 *
 * console.log(overviewHelp().includes("pipeline")); // true
 * ```
 */
export function overviewHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length + c.args.length + 1));
  return [
    `Usage: ${PROGRAM} <command> [arguments] [options]`,
    "",
    "Talks to the platform's services over NATS, as a frontend does (SYSTEM.md sections 4-5).",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${`${c.name} ${c.args}`.padEnd(width)}  ${c.summary}`),
    "",
    "Options of every command:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    "Output: text for humans on stdout, progress and errors on stderr. With --json every",
    'stdout line is one JSON object with a "type": events as they happen ("token",',
    '"chunk", "transcription", "status", ...), then one "result" (the command\'s outcome)',
    'or one "error" ({"type":"error","exitCode":4,"kind":"no_service","message":...}).',
    "",
    "Exit codes:",
    `  ${EXIT_CODES.ok}    ok`,
    `  ${EXIT_CODES.remoteError}    a service answered with an error (or a pipeline failed)`,
    `  ${EXIT_CODES.usage}    usage error (arguments, unreadable or unsuitable input file)`,
    `  ${EXIT_CODES.natsUnavailable}    NATS cannot be reached`,
    `  ${EXIT_CODES.noService}    no service answers, or no answer in time`,
    `  ${EXIT_CODES.localError}    local failure (cannot write the output, no recorder, unexpected)`,
    `  ${EXIT_CODES.interrupted}  interrupted (Ctrl-C)`,
    "",
    `Run "${PROGRAM} <command> --help" for a command's options.`,
    "",
  ].join("\n");
}
