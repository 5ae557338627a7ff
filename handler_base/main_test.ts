import assert from "node:assert/strict";
import { ConfigError, envVar } from "./config.ts";
import { defineEndpoint } from "./handler.ts";
import { baseServiceSpec, defineService, EXIT_CODES, serviceMain } from "./main.ts";
import { TTSRequestSchema, TTSStatusSchema } from "./messages.ts";
import { connectNats, request } from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";

const echo = defineService({
  name: "echo",
  config: { prefix: envVar.string("ECHO_PREFIX", { default: "echo: " }) },
  setup: (config) => ({
    endpoints: [defineEndpoint({
      subject: "test.echo",
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle: (req) => Promise.resolve({ status: "ok", message: config.prefix + req.text }),
    })],
  }),
});

function exitRecorder() {
  const lines: string[] = [];
  let code: number | undefined;
  return {
    lines,
    get code() {
      return code;
    },
    options: { exit: (c: number) => void (code = c), printError: (l: string) => lines.push(l) },
  };
}

Deno.test("defineService() merges the base variables into the spec", () => {
  for (const field of Object.keys(baseServiceSpec)) assert.ok(field in echo.spec, field);
  assert.equal(echo.spec.prefix.name, "ECHO_PREFIX");
  assert.equal(echo.description, "");
});

Deno.test("defineService() takes a service's own default consume mode", () => {
  const durable = defineService({
    name: "durable",
    config: {},
    consumeMode: "jetstream",
    setup: () => ({ endpoints: [] }),
  });
  assert.equal(durable.spec.consumeMode.read(undefined).ok, true);
  assert.deepEqual(durable.spec.consumeMode.read(undefined), { ok: true, value: "jetstream" });
  assert.deepEqual(echo.spec.consumeMode.read(undefined), { ok: true, value: "core" });
  assert.deepEqual(durable.spec.consumeMode.read("core"), { ok: true, value: "core" });
});

Deno.test("defineService() refuses a service variable that redeclares a base one", () => {
  assert.throws(
    () =>
      defineService({
        name: "bad",
        config: { port: envVar.int("HEALTH_PORT", { default: 1 }) },
        setup: () => ({ endpoints: [] }),
      }),
    /Cannot define service "bad": HEALTH_PORT already declared/,
  );
});

Deno.test("serviceMain() exits 78 naming every bad variable", async () => {
  const run = exitRecorder();
  await serviceMain(echo, { env: { HEALTH_PORT: "x", CONSUME_MODE: "kafka" }, ...run.options });
  assert.equal(run.code, EXIT_CODES.config);
  assert.equal(run.lines.length, 1);
  assert.match(run.lines[0]!, /HEALTH_PORT.*CONSUME_MODE/);
});

Deno.test("serviceMain() exits 78 when setup finds a configuration problem", async () => {
  const broken = defineService({
    name: "broken",
    config: {},
    setup: () => {
      throw new ConfigError([{ name: "PIPELINES_CONFIG", problem: "is not valid JSON" }]);
    },
  });
  const run = exitRecorder();
  await serviceMain(broken, { env: {}, ...run.options });
  assert.equal(run.code, EXIT_CODES.config);
  assert.match(run.lines[0]!, /PIPELINES_CONFIG is not valid JSON/);
});

Deno.test("serviceMain() serves until the signal, disposes, then exits 0", async () => {
  await using server = await startNatsServer();
  const controller = new AbortController();
  let disposed = false;
  const service = defineService({
    ...echo,
    config: { prefix: echo.spec.prefix },
    setup: async (config, context) => ({
      ...(await echo.setup(config, context)),
      dispose: () => void (disposed = true),
    }),
  });
  const run = exitRecorder();
  const main = serviceMain(service, {
    env: { NATS_URL: server.url, HEALTH_PORT: "0", LOG_LEVEL: "error", ECHO_PREFIX: ">>" },
    signal: controller.signal,
    ...run.options,
  });
  const nc = await connectNats({ servers: server.url, name: "main-test" });
  try {
    let reply;
    for (let attempt = 0; !reply && attempt < 100; attempt++) {
      reply = await request(nc, "test.echo", TTSRequestSchema, { text: "hi" }, TTSStatusSchema, {
        timeout: 500,
      }).catch(() => undefined);
    }
    assert.equal(reply?.message, ">>hi");
  } finally {
    await nc.close();
  }
  assert.equal(run.code, undefined);
  controller.abort();
  await main;
  assert.equal(run.code, EXIT_CODES.ok);
  assert.ok(disposed);
});
