import assert from "node:assert/strict";
import {
  ConfigError,
  configVarNames,
  DEFAULT_NATS_URL,
  type EnvSource,
  envVar,
  loadConfig,
  natsConfigSpec,
  redactedConfig,
  runtimeConfigSpec,
} from "./config.ts";
import { spec as scriptSpec } from "./testdata/load_config.ts";

const serviceSpec = {
  natsUrl: envVar.url("NATS_URL", { default: "nats://nats.ai-ml.svc.cluster.local:4222" }),
  natsToken: envVar.string("NATS_TOKEN", { secret: true }),
  healthPort: envVar.int("HEALTH_PORT", { default: 8080, min: 0, max: 65535 }),
  enableTts: envVar.bool("ENABLE_TTS", { default: false }),
  llmTimeoutMs: envVar.duration("LLM_TIMEOUT_MS", { default: 60_000 }),
  pipelines: envVar.list("PIPELINES", { default: [] }),
  mode: envVar.oneOf("CONSUME_MODE", ["core", "jetstream"], { default: "core" }),
  required: envVar.string("X", { required: true }),
  retries: envVar.int("RETRIES"),
};

// Compile-time checks: `deno test` type-checks this file, so a wrong inferred type fails it.
type Equal<A, B> = (<V>() => V extends A ? 1 : 2) extends (<V>() => V extends B ? 1 : 2) ? true
  : false;
type Expect<T extends true> = T;
type ServiceConfig = ReturnType<typeof loadConfig<typeof serviceSpec>>;
type _InferredTypes = [
  Expect<Equal<ServiceConfig["natsUrl"], string>>,
  Expect<Equal<ServiceConfig["natsToken"], string | undefined>>,
  Expect<Equal<ServiceConfig["healthPort"], number>>,
  Expect<Equal<ServiceConfig["enableTts"], boolean>>,
  Expect<Equal<ServiceConfig["llmTimeoutMs"], number>>,
  Expect<Equal<ServiceConfig["pipelines"], readonly string[]>>,
  Expect<Equal<ServiceConfig["mode"], "core" | "jetstream">>,
  Expect<Equal<ServiceConfig["required"], string>>,
  Expect<Equal<ServiceConfig["retries"], number | undefined>>,
  Expect<
    Equal<
      ReturnType<typeof loadConfig<typeof runtimeConfigSpec>>["logLevel"],
      "debug" | "info" | "warn" | "error"
    >
  >,
  Expect<Equal<ReturnType<typeof loadConfig<typeof natsConfigSpec>>["natsUrl"], readonly string[]>>,
];

function loadError(spec: Parameters<typeof loadConfig>[0], source: EnvSource): ConfigError {
  try {
    loadConfig(spec, source);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }
  assert.fail("loadConfig() did not throw");
}

Deno.test("loadConfig() applies defaults and leaves optional variables undefined", () => {
  const config = loadConfig(serviceSpec, { X: "x" });
  assert.deepEqual({ ...config }, {
    natsUrl: "nats://nats.ai-ml.svc.cluster.local:4222",
    natsToken: undefined,
    healthPort: 8080,
    enableTts: false,
    llmTimeoutMs: 60_000,
    pipelines: [],
    mode: "core",
    required: "x",
    retries: undefined,
  });
});

Deno.test("loadConfig() parses every kind of value", () => {
  const config = loadConfig(serviceSpec, {
    NATS_URL: "tls://nats.example:4222",
    NATS_TOKEN: "tok",
    HEALTH_PORT: "0",
    ENABLE_TTS: "YES",
    LLM_TIMEOUT_MS: "2m",
    PIPELINES: " a, b ,,c ,",
    CONSUME_MODE: "jetstream",
    X: "value with spaces",
    RETRIES: "-3",
  });
  assert.deepEqual({ ...config }, {
    natsUrl: "tls://nats.example:4222",
    natsToken: "tok",
    healthPort: 0,
    enableTts: true,
    llmTimeoutMs: 120_000,
    pipelines: ["a", "b", "c"],
    mode: "jetstream",
    required: "value with spaces",
    retries: -3,
  });
});

Deno.test("loadConfig() returns a frozen config with frozen lists", () => {
  const config = loadConfig(serviceSpec, { X: "x", PIPELINES: "a,b" });
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.pipelines));
  assert.ok(Object.isFrozen(loadConfig(serviceSpec, { X: "x" }).pipelines));
});

Deno.test("loadConfig() treats empty and blank values as unset and trims the rest", () => {
  const config = loadConfig(serviceSpec, {
    X: "  kept  ",
    HEALTH_PORT: "",
    NATS_TOKEN: "   ",
    ENABLE_TTS: " true\n",
  });
  assert.equal(config.required, "kept");
  assert.equal(config.healthPort, 8080);
  assert.equal(config.natsToken, undefined);
  assert.equal(config.enableTts, true);
  const error = loadError(serviceSpec, { X: " " });
  assert.equal(error.message, "Cannot load configuration: X is required");
});

Deno.test("envVar.duration() accepts milliseconds and ms, s, m, h units", () => {
  const spec = { d: envVar.duration("D", { required: true }) };
  const cases: [string, number][] = [
    ["1500", 1500],
    ["250ms", 250],
    ["1.5s", 1500],
    [".5s", 500],
    ["2m", 120_000],
    ["1h", 3_600_000],
    ["10S", 10_000],
    ["0", 0],
    ["1.5", 2], // milliseconds are rounded
  ];
  for (const [raw, ms] of cases) assert.equal(loadConfig(spec, { D: raw }).d, ms, raw);
  for (const raw of ["-1", "5 s", "1d", "s", "1m30s", "abc"]) {
    assert.equal(
      loadError(spec, { D: raw }).message,
      "Cannot load configuration: D must be a duration such as 1500 (milliseconds), 250ms, " +
        `1.5s, 2m or 1h (got ${JSON.stringify(raw)})`,
    );
  }
});

Deno.test("envVar.int() accepts only whole decimal numbers within its bounds", () => {
  const spec = { port: envVar.int("PORT", { required: true, min: 1, max: 10 }) };
  assert.equal(loadConfig(spec, { PORT: "+7" }).port, 7);
  for (const raw of ["0", "11", "1.0", "1e1", "0x5", "five"]) {
    assert.deepEqual(loadError(spec, { PORT: raw }).problems, [
      { name: "PORT", problem: `must be an integer from 1 to 10 (got ${JSON.stringify(raw)})` },
    ]);
  }
  const atLeast = { n: envVar.int("N", { min: 0 }) };
  assert.match(loadError(atLeast, { N: "-1" }).message, /N must be an integer of at least 0/);
  const unbounded = { n: envVar.int("N") };
  assert.match(loadError(unbounded, { N: "9007199254740993" }).message, /N must be an integer \(/);
});

Deno.test("envVar.bool() accepts true/false, 1/0, yes/no, on/off in any case", () => {
  const spec = { flag: envVar.bool("FLAG", { required: true }) };
  for (const raw of ["true", "TRUE", "1", "yes", "On"]) {
    assert.equal(loadConfig(spec, { FLAG: raw }).flag, true, raw);
  }
  for (const raw of ["false", "0", "No", "off"]) {
    assert.equal(loadConfig(spec, { FLAG: raw }).flag, false, raw);
  }
  assert.equal(
    loadError(spec, { FLAG: "maybe" }).message,
    'Cannot load configuration: FLAG must be true or false (got "maybe")',
  );
});

Deno.test("envVar.url() accepts the allowed schemes with a host", () => {
  const spec = { url: envVar.url("U", { required: true }) };
  for (
    const raw of ["http://a", "https://a:1/x", "nats://a:4222", "tls://a", "ws://a", "wss://a"]
  ) {
    assert.equal(loadConfig(spec, { U: raw }).url, raw);
  }
  for (const raw of ["ftp://a", "a:4222", "http://", "not a url", "nats://a,nats://b"]) {
    assert.match(
      loadError(spec, { U: raw }).message,
      /U must be a URL with scheme http, https/,
      raw,
    );
  }
  const httpOnly = { url: envVar.url("U", { schemes: ["http", "https"] }) };
  assert.equal(
    loadError(httpOnly, { U: "nats://a" }).message,
    'Cannot load configuration: U must be a URL with scheme http, https (got "nats://a")',
  );
});

Deno.test("natsConfigSpec reads NATS_URL as a list of NATS URLs", () => {
  assert.deepEqual(loadConfig(natsConfigSpec, {}).natsUrl, [DEFAULT_NATS_URL]);
  assert.deepEqual(
    loadConfig(natsConfigSpec, { NATS_URL: "nats://a:4222, tls://b:4222," }).natsUrl,
    ["nats://a:4222", "tls://b:4222"],
  );
  assert.match(
    loadError(natsConfigSpec, { NATS_URL: "nats://a:4222,http://b" }).message,
    /NATS_URL must be a comma-separated list of URLs with scheme nats, tls, ws, wss/,
  );
  assert.match(loadError(natsConfigSpec, { NATS_URL: " , " }).message, /NATS_URL must be/);
});

Deno.test("runtimeConfigSpec reads HEALTH_PORT, LOG_LEVEL and SHUTDOWN_GRACE_MS", () => {
  assert.deepEqual({ ...loadConfig(runtimeConfigSpec, {}) }, {
    healthPort: 8080,
    logLevel: "info",
    shutdownGraceMs: 10_000,
  });
  const config = loadConfig(runtimeConfigSpec, {
    HEALTH_PORT: "9000",
    LOG_LEVEL: "WARNING",
    SHUTDOWN_GRACE_MS: "30s",
  });
  assert.deepEqual({ ...config }, { healthPort: 9000, logLevel: "warn", shutdownGraceMs: 30_000 });
  assert.equal(
    loadError(runtimeConfigSpec, { LOG_LEVEL: "verbose" }).message,
    'Cannot load configuration: LOG_LEVEL must be one of debug, info, warn, error (got "verbose")',
  );
});

Deno.test("envVar.oneOf() matches its values exactly", () => {
  const spec = { mode: envVar.oneOf("MODE", ["core", "jetstream"]) };
  assert.equal(loadConfig(spec, { MODE: "core" }).mode, "core");
  assert.equal(
    loadError(spec, { MODE: "JetStream" }).message,
    'Cannot load configuration: MODE must be one of core, jetstream (got "JetStream")',
  );
});

Deno.test("loadConfig() reports every bad variable in one ConfigError, in spec order", () => {
  const error = loadError(serviceSpec, {
    HEALTH_PORT: "abc",
    ENABLE_TTS: "maybe",
    CONSUME_MODE: "both",
  });
  assert.equal(error.name, "ConfigError");
  assert.deepEqual(error.problems.map((p) => p.name), [
    "HEALTH_PORT",
    "ENABLE_TTS",
    "CONSUME_MODE",
    "X",
  ]);
  assert.equal(
    error.message,
    "Cannot load configuration: " +
      'HEALTH_PORT must be an integer from 0 to 65535 (got "abc"); ' +
      'ENABLE_TTS must be true or false (got "maybe"); ' +
      'CONSUME_MODE must be one of core, jetstream (got "both"); ' +
      "X is required",
  );
});

Deno.test("ConfigError never shows a secret value or URL credentials", () => {
  const spec = {
    pin: envVar.int("PIN", { secret: true }),
    backend: envVar.url("BACKEND_URL"),
    long: envVar.string("LONG"),
    odd: envVar.int("ODD"),
  };
  const error = loadError(spec, {
    PIN: "hunter2-is-it",
    BACKEND_URL: "ftp://alice:pa55word@host/x",
    ODD: "12\n34",
  });
  assert.ok(!error.message.includes("hunter2"), error.message);
  assert.ok(!error.message.includes("pa55word"), error.message);
  assert.ok(!error.message.includes("alice"), error.message);
  assert.deepEqual(error.problems, [
    { name: "PIN", problem: "must be an integer (got a secret of 13 chars)" },
    {
      name: "BACKEND_URL",
      problem:
        'must be a URL with scheme http, https, nats, tls, ws, wss (got "ftp://[redacted]@host/x")',
    },
    { name: "ODD", problem: 'must be an integer (got "12\\n34")' },
  ]);
  const longSpec = { n: envVar.int("N") };
  const longError = loadError(longSpec, { N: "x".repeat(500) });
  assert.ok(longError.message.length < 200, longError.message);
});

Deno.test("redactedConfig() hides set secrets and URL credentials", () => {
  const spec = {
    ...natsConfigSpec,
    vllmUrl: envVar.url("VLLM_URL", { default: "http://llm:8000" }),
    port: envVar.int("PORT", { default: 1 }),
  };
  const config = loadConfig(spec, {
    NATS_URL: "nats://user:secretpw@a:4222,nats://tokenvalue@b:4222,nats://c:4222",
    NATS_USER: "svc",
    NATS_PASSWORD: "p4ss",
  });
  assert.equal(config.natsPassword, "p4ss");
  assert.deepEqual(redactedConfig(spec, config), {
    natsUrl: ["nats://[redacted]@a:4222", "nats://[redacted]@b:4222", "nats://c:4222"],
    natsUser: "svc",
    natsPassword: "[redacted]",
    natsToken: undefined,
    natsCreds: undefined,
    natsTlsCa: undefined,
    vllmUrl: "http://llm:8000",
    port: 1,
  });
});

Deno.test("loadConfig() calls get() once per declared name and nothing else", () => {
  const asked: string[] = [];
  const source = {
    get(name: string) {
      asked.push(name);
      return name === "X" ? "x" : undefined;
    },
    toObject(): never {
      throw new Error("toObject() must not be called");
    },
  };
  loadConfig(serviceSpec, source);
  assert.deepEqual(asked, configVarNames(serviceSpec));
});

Deno.test("loadConfig() reports variables it may not read as problems", () => {
  const source = {
    get(name: string): string | undefined {
      if (name === "HEALTH_PORT") {
        throw new Deno.errors.NotCapable(`Requires env access to "${name}"`);
      }
      return name === "X" ? "x" : undefined;
    },
  };
  assert.deepEqual(loadError(serviceSpec, source).problems, [
    { name: "HEALTH_PORT", problem: 'cannot be read: Requires env access to "HEALTH_PORT"' },
  ]);
});

Deno.test("configVarNames() lists each name once, in spec order", () => {
  assert.deepEqual(configVarNames({ ...runtimeConfigSpec, again: envVar.int("HEALTH_PORT") }), [
    "HEALTH_PORT",
    "LOG_LEVEL",
    "SHUTDOWN_GRACE_MS",
  ]);
  assert.deepEqual(configVarNames(natsConfigSpec), [
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CREDS",
    "NATS_TLS_CA",
  ]);
});

Deno.test("envVar builders reject invalid names and defaults when declared", () => {
  assert.throws(
    () => envVar.url("U", { default: "nats.example:4222" }),
    new TypeError(
      'Cannot declare variable U: the default "nats.example:4222" is not a URL with scheme http, https, nats, tls, ws, wss',
    ),
  );
  assert.throws(() => envVar.urlList("U", { default: [] }), TypeError);
  assert.throws(() => envVar.int("P", { default: 70_000, max: 65535 }), TypeError);
  assert.throws(() => envVar.int("P", { default: 1.5 }), TypeError);
  assert.throws(() => envVar.int("P", { min: 2, max: 1 }), TypeError);
  assert.throws(() => envVar.duration("D", { default: -1 }), TypeError);
  assert.throws(() => envVar.string("BAD-NAME"), TypeError);
  assert.throws(() => envVar.string("A,B"), TypeError);
  assert.throws(
    () => envVar.int("PIN", { default: -5, min: 0, secret: true }),
    new TypeError("Cannot declare variable PIN: the default is not an integer of at least 0"),
  );
  const modes = ["core", "jetstream"] as const;
  // @ts-expect-error: a default outside the values does not type-check either
  assert.throws(() => envVar.oneOf("MODE", modes, { default: "both" }), TypeError);
});

Deno.test("envVar.custom() uses its parser and description", () => {
  const spec = {
    ratio: envVar.custom("RATIO", {
      default: 0.5,
      expected: "a number from 0 to 1",
      parse: (raw) => {
        const value = Number(raw);
        return value >= 0 && value <= 1 ? value : undefined;
      },
    }),
  };
  assert.equal(loadConfig(spec, {}).ratio, 0.5);
  assert.equal(loadConfig(spec, { RATIO: "0.25" }).ratio, 0.25);
  assert.equal(
    loadError(spec, { RATIO: "2" }).message,
    'Cannot load configuration: RATIO must be a number from 0 to 1 (got "2")',
  );
});

const scriptUrl = new URL("./testdata/load_config.ts", import.meta.url);

/** Runs the config script with exactly the declared names allowed, every one set in `env` ("" = unset). */
async function runScript(env: Record<string, string>, allowed = configVarNames(scriptSpec)) {
  const unset = Object.fromEntries(configVarNames(scriptSpec).map((name) => [name, ""]));
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--allow-env=${allowed.join(",")}`, scriptUrl.pathname],
    env: { ...unset, ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("loadConfig() runs under --allow-env with exactly configVarNames()", async () => {
  const result = await runScript({ HEALTH_PORT: "9090", NATS_TOKEN: "t0ken", ENABLE_TTS: "true" });
  assert.equal(result.stderr, "");
  assert.equal(result.code, 0);
  assert.deepEqual(JSON.parse(result.stdout), {
    natsUrl: [DEFAULT_NATS_URL],
    natsToken: "[redacted]",
    healthPort: 9090,
    logLevel: "info",
    shutdownGraceMs: 10_000,
    enableTts: true,
    llmTimeoutMs: 60_000,
    mode: "core",
  });
});

Deno.test("loadConfig() under a narrower --allow-env names the unreadable variable", async () => {
  const allowed = configVarNames(scriptSpec).filter((name) => name !== "LLM_TIMEOUT_MS");
  const result = await runScript({}, allowed);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^Cannot load configuration: LLM_TIMEOUT_MS cannot be read: /);
});

Deno.test("a service with bad variables exits non-zero with one error naming them all", async () => {
  const result = await runScript({
    HEALTH_PORT: "abc",
    NATS_URL: "http://nats:4222",
    LOG_LEVEL: "loud",
    CONSUME_MODE: "both",
    NATS_PASSWORD: "never-printed",
  });
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    "Cannot load configuration: " +
      'NATS_URL must be a comma-separated list of URLs with scheme nats, tls, ws, wss (got "http://nats:4222"); ' +
      'HEALTH_PORT must be an integer from 0 to 65535 (got "abc"); ' +
      'LOG_LEVEL must be one of debug, info, warn, error (got "loud"); ' +
      'CONSUME_MODE must be one of core, jetstream (got "both")\n',
  );
});
