import assert from "node:assert/strict";
import { defineEndpoint } from "../handler.ts";
import { TTSRequestSchema, TTSStatusSchema } from "../messages.ts";
import { closedPortUrl, startNatsServer, startTestService } from "../testing/mod.ts";
import { runIn, runSubprocess } from "./testdata/cli_helpers.ts";
import { COMMANDS, parseCommandLine, parseParameters } from "./args.ts";
import { formatServices } from "./services.ts";

const echo = defineEndpoint({
  subject: "test.echo",
  name: "echo",
  request: TTSRequestSchema,
  response: TTSStatusSchema,
  handle: (req) => Promise.resolve({ status: req.text }),
});

Deno.test("cli services lists what answers $SRV, with endpoints and stats", async () => {
  await using a = await startTestService({ name: "echo-service", endpoints: [echo] });
  await using _b = await startTestService({ name: "other-service", endpoints: [], natsUrl: a.url });
  await a.request("test.echo", TTSRequestSchema, { text: "x" }, TTSStatusSchema);
  const run = await runIn(a.url, ["services"]);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split("\n");
  assert.match(lines[0]!, /^echo-service \S+ \(\w+\)/);
  assert.match(lines[1]!, /^ {2}echo\s+test\.echo\s+core\s+1 requests, avg/);
  assert.match(lines[2]!, /^other-service /);

  const json = await runIn(a.url, ["services", "echo-service", "--json"]);
  assert.equal(json.code, 0);
  const [result] = json.events;
  const instances = result!.instances as { name: string; endpoints: { requests: number }[] }[];
  assert.deepEqual(instances.map((i) => i.name), ["echo-service"]);
  assert.equal(instances[0]!.endpoints[0]!.requests, 1);
});

Deno.test("cli services with no service running is exit code 4", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const run = await runIn(server.url, ["services", "--json"]);
  assert.equal(run.code, 4);
  assert.deepEqual(run.events, [{
    type: "error",
    exitCode: 4,
    kind: "no_service",
    message: "Cannot list services: no service answers $SRV.PING",
  }]);
});

Deno.test("the cli as a subprocess: NATS down is exit code 3 and one line on stderr", async () => {
  const url = closedPortUrl("nats");
  const { code, stdout, stderr } = await runSubprocess(["chat", "Hi", "--nats", url]);
  assert.equal(code, 3);
  assert.equal(stdout, "");
  assert.equal(stderr, `error: Cannot connect to NATS at ${url}: connection refused\n`);
  const json = await runSubprocess(["voices", "--json"], { NATS_URL: url });
  assert.equal(json.code, 3);
  assert.deepEqual(JSON.parse(json.stdout), {
    type: "error",
    exitCode: 3,
    kind: "nats_unavailable",
    message: `Cannot connect to NATS at ${url}: connection refused`,
  });
});

Deno.test("the cli as a subprocess: no responders is exit code 4, usage is 2, help is 0", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const none = await runSubprocess(["tts", "Hi", "-o", "/dev/null"], { NATS_URL: server.url });
  assert.equal(none.code, 4);
  assert.match(
    none.stderr,
    /^error: No service answers on ai\.voice\.tts\.request\.\S+ \(is tts-module running\?\)\n$/m,
  );
  const usage = await runSubprocess(["frobnicate"]);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, 'error: Cannot parse the arguments: unknown command "frobnicate"\n');
  const help = await runSubprocess(["pipeline", "--help"]);
  assert.equal(help.code, 0);
  assert.match(
    help.stdout,
    /^Usage: deno task cli pipeline <name> \[key=value\.\.\.\] \[options\]/,
  );
});

Deno.test("every command has --help, and the overview lists every command and exit code", () => {
  for (const command of COMMANDS) {
    const parsed = parseCommandLine([command.name, "--help"]);
    assert.equal(parsed.kind, "help");
    if (parsed.kind === "help") {
      assert.match(parsed.text, new RegExp(`^Usage: deno task cli ${command.name}`));
      assert.match(parsed.text, /--json/);
    }
  }
  const overview = parseCommandLine([]);
  assert.equal(overview.kind, "help");
  if (overview.kind === "help") {
    for (const command of COMMANDS) {
      assert.match(overview.text, new RegExp(`\\n  ${command.name} `));
    }
    for (const code of ["0", "1", "2", "3", "4", "5", "130"]) {
      assert.match(overview.text, new RegExp(`\\n  ${code} +\\S`));
    }
  }
});

Deno.test("parseCommandLine() reads options, defaults the timeout and refuses bad input", () => {
  const parsed = parseCommandLine(["chat", "What", "is", "NATS?", "--rag", "--timeout", "2.5"]);
  assert.equal(parsed.kind, "run");
  if (parsed.kind === "run") {
    assert.equal(parsed.command.name, "chat");
    assert.deepEqual(parsed.positionals, ["What", "is", "NATS?"]);
    assert.equal(parsed.values.rag, true);
    assert.equal(parsed.timeoutMs, 2500);
    assert.equal(parsed.json, false);
  }
  const voices = parseCommandLine(["voices", "--json", "--nats", "nats://h:4222"]);
  assert.ok(voices.kind === "run" && voices.timeoutMs === 15_000 && voices.json);
  assert.ok(voices.kind === "run" && voices.natsUrl === "nats://h:4222");
  for (
    const bad of [
      ["nope"],
      ["chat"],
      ["voices", "extra"],
      ["chat", "hi", "--timeout", "soon"],
      ["chat", "hi", "--timeout", "0"],
      ["greet", "ada", "--unknown"],
    ]
  ) {
    assert.throws(() => parseCommandLine(bad), (e: Error & { code?: number }) => e.code === 2);
  }
  assert.deepEqual(parseParameters(["a=1", "b=x=y", "c="]), { a: "1", b: "x=y", c: "" });
  assert.throws(() => parseParameters(["=1"]));
});

Deno.test("cli greet refuses a user id that cannot be a subject token, before connecting", async () => {
  const run = await runIn("nats://127.0.0.1:1", ["greet", "a.b"]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /no dots, wildcards or spaces/);
});

Deno.test("formatServices() writes one line per instance and per endpoint", () => {
  const lines = formatServices([{
    name: "tts-module",
    id: "abc",
    version: "0.1.0",
    description: "",
    started: "",
    endpoints: [{
      name: "synthesize",
      subject: "ai.voice.tts.request.>",
      queueGroup: "tts-module",
      consume: "core",
      requests: 3,
      errors: 1,
      averageMs: 12.25,
      lastError: "Backend down",
      inFlight: 0,
    }],
  }]);
  assert.equal(lines[0], "tts-module 0.1.0 (abc)");
  assert.match(lines[1]!, /3 requests, 1 errors, avg 12\.3 ms \(last: Backend down\)$/);
});
