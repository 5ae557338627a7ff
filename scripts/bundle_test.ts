import assert from "node:assert/strict";
import { connectNats, request } from "../handler_base/natsutil.ts";
import { TTSRequestSchema, TTSVoiceListResponseSchema } from "../handler_base/messages.ts";
import { runEntryToExit, startServiceProcess } from "../handler_base/testing/service_process.ts";
import { eventually } from "../handler_base/testing/eventually.ts";
import { freePort } from "../handler_base/testing/ports.ts";
import {
  binaryFlags,
  NATS_READY_BUNDLE,
  natsReadyFlags,
  serviceRuns,
  startBackends,
} from "../bench/perf/services.ts";
import { spawnToReady } from "../bench/perf/startup.ts";
import {
  BUNDLE_TARGETS,
  bundleAll,
  bundleTarget,
  findRegistryLeaks,
  selectTargets,
  stripRegistryLeaks,
  stripRequirePrelude,
} from "./bundle.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const IMPORT_MIN =
  'import{createRequire as __deno_internal_createRequire} from "node:module";var r=__deno_internal_createRequire(import.meta.url);';
const IMPORT_PLAIN =
  'import { createRequire as __deno_internal_createRequire } from "node:module";\nvar __require = __deno_internal_createRequire(import.meta.url);\n';

Deno.test("stripRequirePrelude removes the prelude when the only use is guarded (minified)", () => {
  const body =
    'else typeof r<"u"&&(u=r("node:crypto"),u&&u.randomBytes&&t.set(function(x){x(r)}));';
  const result = stripRequirePrelude(IMPORT_MIN + body);
  assert.equal(result.stripped, true, result.reason);
  assert.equal(result.source, "var r=void 0;" + body);
  assert.ok(!result.source.includes("node:module"));
});

Deno.test("stripRequirePrelude: a regular expression's range that spells the name is no use", () => {
  // The minifier may name the require function `Za`; `[A-Za-z]` then spells it.
  const prelude = IMPORT_MIN.replace("var r=", "var Za=");
  const body = 'mg=/^[A-Za-z0-9_]+$/,ok=/[Za-z]/;typeof Za<"u"&&(u=Za("node:crypto"));';
  const result = stripRequirePrelude(prelude + body);
  assert.equal(result.stripped, true, result.reason);
  // A call is still a use, whatever is around it.
  assert.equal(stripRequirePrelude(prelude + "x=-Za-(1);y=Za(2);").stripped, false);
});

Deno.test("stripRequirePrelude: a class's static member of that name is no use", () => {
  // The minifier may name the require function `jc`, the name of a static field of nats.js.
  const prelude = IMPORT_MIN.replace("var r=", "var jc=");
  const body = 'var fc=class{_h;static jc;static  jc(){}};typeof jc<"u"&&(b=jc("node:crypto"));';
  const result = stripRequirePrelude(prelude + body);
  assert.equal(result.stripped, true, result.reason);
  assert.equal(result.source, "var jc=void 0;" + body);
  // Where the name is a value, it is still a use: a static field's value, a key's, a ternary's.
  for (const use of ["class A{static f=jc}", "o={jc:jc}", "x=a?jc:b;", "f(static_ jc)"]) {
    assert.equal(stripRequirePrelude(prelude + use).stripped, false, use);
  }
});

Deno.test("stripRequirePrelude removes the prelude behind an if block or a ternary (not minified)", () => {
  const body =
    'if (typeof __require !== "undefined") {\n  crypto = __require("node:crypto");\n}\n' +
    "var f = typeof __require != 'undefined' ? __require(\"node:fs\") : null;\n";
  const result = stripRequirePrelude(IMPORT_PLAIN + body);
  assert.equal(result.stripped, true, result.reason);
  assert.equal(result.source, "\nvar __require=void 0;\n" + body);
});

Deno.test("stripRequirePrelude keeps the prelude when one use is not guarded", () => {
  for (
    const body of [
      'var a=r("node:fs");',
      'typeof r<"u"&&(u=r("node:crypto"));var b=r("node:net");',
      'typeof r<"u"&&r("node:crypto");', // no parenthesised operand: the use is not read as guarded
      'typeof r<"u"&&(u=r(`node:${x}`));', // a template literal in the region: unread, kept
      "module.exports=r;",
    ]
  ) {
    const result = stripRequirePrelude(IMPORT_MIN + body);
    assert.equal(result.stripped, false, body);
    assert.equal(result.source, IMPORT_MIN + body);
    assert.match(result.reason, /not behind a typeof guard/);
  }
  // A property named like the variable is no use of it.
  assert.equal(stripRequirePrelude(IMPORT_MIN + "a.r=1;").stripped, true);
});

Deno.test("stripRequirePrelude leaves a source without the prelude alone", () => {
  const result = stripRequirePrelude('import{x}from"node:fs";var a=1;');
  assert.deepEqual(result, {
    source: 'import{x}from"node:fs";var a=1;',
    stripped: false,
    reason: "no createRequire prelude",
  });
});

Deno.test("registry leaks: cache paths and registry hosts are found, comments dropped, code refused", () => {
  assert.deepEqual(findRegistryLeaks('var a="registry";a.registry.get(1);'), []);
  assert.deepEqual(
    findRegistryLeaks("x /root/.cache/deno/npm/registry.example.org/p/1/i.js"),
    ["/root/.cache/deno/npm/registry.example.org/p/1/i.js"],
  );
  assert.equal(findRegistryLeaks("registry.example.org").length, 1);
  const source =
    "var a=1;\n// ../deno/npm/registry.example.org/p/1.0.0/i.mjs\n/* registry.example.org */var b=2;\n";
  assert.equal(stripRegistryLeaks(source), "var a=1;\nvar b=2;\n");
  assert.throws(() => stripRegistryLeaks('var h="registry.example.org";'), /Cannot bundle/);
});

Deno.test("selectTargets: every table row plus the streams Job; unknown names refused", () => {
  assert.deepEqual(selectTargets([]), BUNDLE_TARGETS);
  assert.deepEqual(
    BUNDLE_TARGETS.map((t) => t.name),
    [
      "chat-handler",
      "tts-module",
      "pipeline-bridge",
      "stt-module",
      "voice-assistant",
      "ensure-streams",
    ],
  );
  assert.throws(() => selectTargets(["tts-module", "nope"]), /Cannot bundle nope/);
});

/** The core-mode services: their bundles must not load Node's module layer at start. */
const CORE = ["chat-handler", "tts-module", "stt-module", "voice-assistant"];

Deno.test({
  name: "every bundle builds, is deterministic, and runs with exactly its permission set",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "bundle-test-" });
    try {
      const results = await bundleAll(dir);
      assert.deepEqual(results.map((r) => r.name), BUNDLE_TARGETS.map((t) => t.name));
      const sources = new Map<string, string>();
      for (const r of results) sources.set(r.name, await Deno.readTextFile(r.path));

      await t.step("no static node:module in the core services, no registry leak anywhere", () => {
        for (const name of CORE) {
          const source = sources.get(name)!;
          assert.ok(results.find((r) => r.name === name)!.preludeRemoved, name);
          assert.doesNotMatch(source, /\bfrom\s*["']node:module["']/, name);
          assert.doesNotMatch(source, /__deno_internal_createRequire/, name);
          // Nor later: stt's VAD no longer goes through Emscripten glue that imports it.
          assert.doesNotMatch(source, /import\(\s*["']node:module["']\s*\)/, name);
          // Descriptors are embedded as data: protobuf-es's descriptor.proto is not booted.
          assert.ok(!source.includes("google/protobuf/descriptor.proto"), name);
        }
        for (const [name, source] of sources) assert.deepEqual(findRegistryLeaks(source), [], name);
        // Latin-1 only: one character above U+00FF and V8 holds the whole source as a
        // two-byte string, twice the memory (0.4 MiB for voice-assistant's bundle).
        for (const [name, source] of sources) {
          const wide = [...source].filter((c) => c.codePointAt(0)! > 0xff);
          assert.deepEqual(wide, [], `${name} holds characters above U+00FF`);
        }
        // Every bundle's module wrappers compile with it (so its code cache holds them): if the
        // bundler's helpers change shape, none would, and start-up would quietly slow down.
        for (const r of results) {
          assert.ok(r.eagerWrappers >= 50, `${r.name}: ${r.eagerWrappers} wrappers made eager`);
        }
        // pipeline-bridge's Kubernetes client requires Node modules: its prelude stays, said so.
        const bridge = results.find((r) => r.name === "pipeline-bridge")!;
        assert.equal(bridge.preludeRemoved, false);
        assert.match(bridge.note, /not behind a typeof guard/);
        // It keeps only the Kubernetes API classes it names: the custom objects' API, not the
        // generated classes of the rest of the API (2.7 MB of the bundle when it kept them all).
        const bridgeSource = sources.get("pipeline-bridge")!;
        assert.ok(bridgeSource.includes('"CustomObjectsApi"'));
        for (const unused of ['"CoreV1Api"', '"AppsV1Api"', '"BatchV1Api"']) {
          assert.ok(!bridgeSource.includes(unused), `pipeline-bridge's bundle holds ${unused}`);
        }
      });

      await t.step("the same sources give the same bytes", async () => {
        const again = await Deno.makeTempDir({ prefix: "bundle-test-again-" });
        try {
          const target = BUNDLE_TARGETS.find((b) => b.name === "tts-module")!;
          const second = await bundleTarget(target, { outDir: again });
          assert.equal(await Deno.readTextFile(second.path), sources.get("tts-module"));
        } finally {
          await Deno.remove(again, { recursive: true });
        }
      });

      await using backends = await startBackends();
      const client = await connectNats({ servers: backends.nats.url, name: "bundle-test" });
      try {
        for (const run of serviceRuns(backends, dir)) {
          await t.step(
            `${run.name}: /ready 200, answers over NATS, exits 0 on SIGTERM`,
            async () => {
              const service = await startServiceProcess({
                entry: run.bundle!,
                // As its compiled binary starts: no config read, the embedded flags.
                flags: run.binaryFlags.filter((f) => f !== "--no-prompt"),
                env: run.env,
                cwd: ROOT,
              });
              try {
                await service.waitForReadiness(200, { timeoutMs: 20_000 });
                const ping = JSON.parse(new TextDecoder().decode(
                  (await client.request(`$SRV.PING.${run.name}`, undefined, { timeout: 5000 }))
                    .data,
                ));
                assert.equal(ping.name, run.name);
                assert.equal(ping.type, "io.nats.micro.v1.ping_response");
                const info = JSON.parse(new TextDecoder().decode(
                  (await client.request(`$SRV.INFO.${run.name}`, undefined, { timeout: 5000 }))
                    .data,
                ));
                assert.ok(info.endpoints.length > 0, JSON.stringify(info));
                if (run.name === "tts-module") {
                  const list = await request(
                    client,
                    "ai.voice.tts.voices.list",
                    TTSRequestSchema,
                    {},
                    TTSVoiceListResponseSchema,
                    { timeout: 5000 },
                  );
                  assert.deepEqual(list.customVoices, []);
                  assert.ok(list.defaultSpeaker.length > 0);
                }
                const status = await service.stop("SIGTERM");
                assert.equal(status.code, 0, service.lines.join("\n"));
              } finally {
                await service[Symbol.asyncDispose]();
              }
            },
          );
        }
        await t.step("the start-up benchmark reads where a bundle's start went", async () => {
          const run = serviceRuns(backends, dir).find((r) => r.name === "tts-module")!;
          const sample = await spawnToReady(
            ["run", ...run.binaryFlags, run.bundle!],
            run.env,
            freePort(),
          );
          const { total, ...phases } = sample.phases;
          assert.deepEqual(Object.keys(phases), [
            "load",
            "setup",
            "health",
            "connect",
            "subscribe",
          ]);
          assert.ok(total! > 0 && total! <= sample.ms, JSON.stringify(sample));
        });
        await t.step(
          "the floor baseline's bundle: /ready 200 once connected, answers",
          async () => {
            await bundleTarget({ name: "nats-ready", entry: "bench/perf/nats_ready.ts" }, {
              outDir: dir,
            });
            const port = freePort();
            const floor = new Deno.Command(Deno.execPath(), {
              args: ["run", ...natsReadyFlags(), `${dir}/${NATS_READY_BUNDLE}`],
              clearEnv: true,
              env: { NATS_URL: backends.nats.url, HEALTH_PORT: String(port) },
              stdin: "null",
              stdout: "null",
              stderr: "null",
            }).spawn();
            try {
              await eventually(async () => {
                const response = await fetch(`http://127.0.0.1:${port}/ready`);
                await response.body?.cancel();
                return response.status === 200;
              });
              const echo = await client.request("bench.nats-ready", new Uint8Array([7]), {
                timeout: 5000,
              });
              assert.deepEqual([...echo.data], [7]);
            } finally {
              floor.kill("SIGKILL");
              await floor.status;
            }
          },
        );
      } finally {
        await client.close();
      }

      await t.step("ensure-streams: the Job's bundle ensures the streams and exits 0", async () => {
        const { code, stderr } = await runEntryToExit({
          entry: `${dir}/ensure-streams.js`,
          flags: binaryFlags("ensure-streams").filter((f) => f !== "--no-prompt"),
          env: { NATS_URL: backends.nats.url },
          cwd: ROOT,
        });
        assert.equal(code, 0, stderr);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
