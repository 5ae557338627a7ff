/**
 * The local stack end to end, as a user runs it: `deno task stack` (its
 * task's command, with `--nats-port=0`) as a subprocess, then the CLI
 * (`deno task cli ... --json` subprocesses) against it, then SIGINT, and a
 * look at `/proc` that nothing it started is left. The tests of this file run
 * in order against one stack; the first starts it, the last stops it.
 */
import assert from "node:assert/strict";
import { parseWav } from "../handler_base/clients/wav.ts";
import { SERVICES } from "../services/table.ts";
import { findProgram } from "./local_backends/_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SENTENCE = "turn on the kitchen lights";
const HAS_VOICE = SERVICES.some((s) => s.name === "voice-assistant");
/** The stack's processes live across tests: the sanitizers would count them as leaks. */
const ACROSS_TESTS = { sanitizeResources: false, sanitizeOps: false } as const;

/** The command of `deno task stack`, from deno.json, with Deno's own path. */
async function stackCommand(): Promise<string[]> {
  const { tasks } = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const [deno, ...args] = String(tasks.stack).split(/\s+/);
  assert.equal(deno, "deno");
  return args;
}

/** The lines a subprocess writes, and waits for one that matches. */
class Lines {
  readonly all: string[] = [];
  #waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let buffered = "";
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        buffered += text;
        const parts = buffered.split("\n");
        buffered = parts.pop() ?? "";
        for (const line of parts) this.#push(line);
      }
      if (buffered) this.#push(buffered);
    })();
  }

  #push(line: string): void {
    this.all.push(line);
    this.#waiters = this.#waiters.filter((w) => !w.pattern.test(line) || (w.resolve(line), false));
  }

  /** The first line (seen or to come) that matches, within `timeoutMs`. */
  async wait(pattern: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.all.find((l) => pattern.test(l));
    if (seen) return seen;
    const found = Promise.withResolvers<string>();
    this.#waiters.push({ pattern, resolve: found.resolve });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `No line matching ${pattern} within ${timeoutMs} ms:\n${
                this.all.slice(-40).join("\n")
              }`,
            ),
          ),
        timeoutMs,
      );
    });
    const ended = this.done.then(() => {
      throw new Error(
        `The output ended without a line matching ${pattern}:\n${this.all.slice(-40).join("\n")}`,
      );
    });
    try {
      return await Promise.race([found.promise, timeout, ended]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Process ids and start times of every descendant of `pid`, from /proc. */
async function descendants(pid: number): Promise<Map<number, string>> {
  const parents = new Map<number, number>();
  const starts = new Map<number, string>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // After "(comm)": state ppid ... field 22 is the start time.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry.name), Number(fields[1]));
      starts.set(Number(entry.name), fields[19]!);
    } catch {
      // Gone meanwhile.
    }
  }
  const found = new Map<number, string>();
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [child, ppid] of parents) {
      if (ppid === parent && !found.has(child)) {
        found.set(child, starts.get(child)!);
        queue.push(child);
      }
    }
  }
  return found;
}

/** Whether the process that had this start time still runs (a zombie does not). */
async function stillRuns(pid: number, start: string): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] === start && fields[0] !== "Z";
  } catch {
    return false;
  }
}

interface Stack {
  child: Deno.ChildProcess;
  stdout: Lines;
  stderr: Lines;
  natsUrl: string;
  dir: string;
}

let stack: Stack | undefined;

function running(): Stack {
  if (!stack) throw new Error("The stack did not start (see the first test)");
  return stack;
}

interface CliRun {
  code: number;
  events: Record<string, unknown>[];
  stderr: string;
}

/** `deno task cli <args> --nats <url> --json`, bounded; its JSON events. */
async function cli(args: string[], timeoutSeconds = 60): Promise<CliRun> {
  const { natsUrl } = running();
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "--quiet",
      "cli",
      ...args,
      "--nats",
      natsUrl,
      "--timeout",
      String(timeoutSeconds),
      "--json",
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    // The CLI bounds itself by --timeout; this only guards against a hang of the task runner.
    signal: AbortSignal.timeout((timeoutSeconds + 30) * 1000),
  }).output();
  const text = new TextDecoder().decode(stdout);
  const events = text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { code, events, stderr: new TextDecoder().decode(stderr) + text };
}

function result(run: CliRun): Record<string, unknown> {
  const last = run.events.at(-1);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(last?.type, "result", run.stderr);
  return last!;
}

async function validWav(path: string): Promise<{ sampleRate: number; samples: number }> {
  const { format, data } = parseWav(await Deno.readFile(path));
  assert.ok(format.sampleRate >= 8000, `sample rate ${format.sampleRate}`);
  const samples = data.length / (format.bitDepth / 8) / format.channels;
  assert.ok(samples > format.sampleRate / 4, `only ${samples} samples`);
  // Speech, not silence: some samples are loud.
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let peak = 0;
  for (let i = 0; i + 1 < data.length; i += 2) {
    peak = Math.max(peak, Math.abs(view.getInt16(i, true)));
  }
  assert.ok(peak > 1000, `peak ${peak}: silence`);
  return { sampleRate: format.sampleRate, samples };
}

Deno.test({
  name:
    "deno task stack: NATS, the backends, the engines and every service of the table, then a readiness summary",
  ...ACROSS_TESTS,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "stack-test-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [...await stackCommand(), "--nats-port=0"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Lines(child.stdout);
    const stderr = new Lines(child.stderr);
    stack = { child, stdout, stderr, natsUrl: "", dir };
    // The first run compiles every service: minutes on a slow machine, bounded.
    const ready = await stdout.wait(/Stack ready: NATS nats:\/\/127\.0\.0\.1:\d+/, 240_000);
    stack.natsUrl = /nats:\/\/127\.0\.0\.1:\d+/.exec(ready)![0];
    const text = stdout.all.join("\n");
    for (const service of SERVICES) {
      assert.match(
        text,
        new RegExp(`stack +\\| +${service.name} +http://127\\.0\\.0\\.1:\\d+/ready`),
      );
    }
    for (
      const backend of [
        "llm",
        "embeddings",
        "reranker",
        "milvus",
        "tts",
        "stt",
        "kubernetes",
        "kubeflow",
      ]
    ) {
      assert.match(
        text,
        new RegExp(`\\| +${backend} +http://127\\.0\\.0\\.1:\\d+ +(stand-in|FALLBACK): `),
      );
    }
    if (findProgram("flite")) assert.match(text, /tts +\S+ +stand-in: real speech: flite-slt/);
    if (findProgram("pocketsphinx_continuous")) {
      assert.match(text, /stt +\S+ +stand-in: real recognition: pocketsphinx/);
    }
    // Each service runs with its permission set, and pipeline-bridge may also read the kubeconfig.
    assert.match(text, /chat-handler: deno run -P=chat-handler services\/chat\.ts/);
    assert.match(
      text,
      /pipeline-bridge: deno run -P=pipeline-bridge --allow-read=\S*\/kubeconfig /,
    );
    // JSON logs made readable, prefixed with the service.
    assert.match(text, /tts-module +\| \d\d:\d\d:\d\d\.\d{3} INFO {2}Serving /);
  },
});

Deno.test({
  name: "deno task cli chat --rag against the stack answers from the project's docs and cites them",
  ...ACROSS_TESTS,
  async fn() {
    const answer = result(
      await cli(["chat", "How does deno task stack start the services?", "--rag"]),
    );
    assert.equal(answer.usedRag, true);
    assert.ok((answer.ragSources as string[]).length > 0);
    assert.match(String(answer.response), /Sources: .*(README\.md|docs\/[A-Z]+\.md)/s);
  },
});

Deno.test({
  name: "deno task cli chat --stream against the stack prints tokens as they arrive",
  ...ACROSS_TESTS,
  async fn() {
    const run = await cli(["chat", "What does pipeline-bridge do?", "--rag", "--stream"]);
    const answer = result(run);
    const tokens = run.events.filter((e) => e.type === "token");
    assert.ok(tokens.length >= 3, `${tokens.length} tokens`);
    assert.ok(Number(answer.chunks) >= 3);
    assert.ok(String(answer.response).length > 0);
  },
});

Deno.test({
  name: "deno task cli tts against the stack writes a valid WAV file of speech",
  ...ACROSS_TESTS,
  async fn() {
    const output = `${running().dir}/hello.wav`;
    const speech = result(await cli(["tts", "Hello from the local stack.", "-o", output]));
    const wav = await validWav(output);
    assert.equal(speech.sampleRate, wav.sampleRate);
    assert.equal(speech.bytes, (await Deno.stat(output)).size);
  },
});

/** flite's speech of the sentence, made now: 16 kHz mono 16-bit. */
async function fliteSpeech(path: string): Promise<void> {
  const { code, stderr } = await new Deno.Command("flite", {
    args: ["-voice", "slt", "-t", SENTENCE, "-o", path],
    stdout: "null",
    signal: AbortSignal.timeout(30_000),
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

Deno.test({
  name:
    "deno task cli stt against the stack: flite speech streamed through stt-module comes back with the same words",
  ...ACROSS_TESTS,
  async fn() {
    const input = `${running().dir}/lights.wav`;
    await fliteSpeech(input);
    const run = await cli(["stt", input]);
    const heard = result(run);
    assert.equal(heard.transcript, SENTENCE);
    assert.ok(run.events.some((e) => e.type === "transcription" && e.isFinal === true));
  },
});

Deno.test({
  name:
    "deno task cli voice against the stack: speech in, the transcription right, a valid WAV out",
  ignore: !HAS_VOICE,
  ...ACROSS_TESTS,
  async fn() {
    const input = `${running().dir}/question.wav`;
    const output = `${running().dir}/answer.wav`;
    await fliteSpeech(input);
    const run = await cli(["voice", input, "-o", output], 90);
    const answer = result(run);
    assert.equal(answer.transcription, SENTENCE);
    assert.ok(String(answer.response).length > 0);
    await validWav(output);
  },
});

Deno.test({
  name: "deno task cli pipeline against the stack follows an Argo and a Kubeflow run to succeeded",
  ...ACROSS_TESTS,
  async fn() {
    const argo = result(await cli(["pipeline", "document-ingestion", "source=s3://docs"]));
    assert.deepEqual([argo.status, argo.engine], ["succeeded", "argo"]);
    const statuses = argo.statuses as string[];
    assert.ok(statuses.includes("running"), String(statuses));
    assert.equal(new Set(statuses).size, statuses.length, `a status shown twice: ${statuses}`);
    const kfp = result(await cli(["pipeline", "rag-query", "query=What is JetStream?"]));
    assert.deepEqual([kfp.status, kfp.engine], ["succeeded", "kubeflow"]);
  },
});

Deno.test({
  name: "deno task cli services against the stack lists every service of the table",
  ...ACROSS_TESTS,
  async fn() {
    const listed = result(await cli(["services"], 20));
    const names = new Set((listed.instances as { name: string }[]).map((i) => i.name));
    for (const service of SERVICES) {
      assert.ok(names.has(service.name), `${service.name} is not listed`);
    }
  },
});

/** The `deno task cli` lines of the README's tour, as argument lists. */
async function tourCommands(): Promise<string[][]> {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const tour = readme.slice(readme.indexOf("## A five-minute tour"));
  const block = /```sh\n([\s\S]*?)```/.exec(tour)?.[1] ?? "";
  return block.split("\n").filter((l) => l.startsWith("deno task cli ")).map((line) =>
    [...line.slice("deno task cli ".length).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!)
  );
}

Deno.test({
  name: "README: every command of the five-minute tour works against the stack, as written",
  ...ACROSS_TESTS,
  async fn() {
    const { natsUrl, dir } = running();
    const commands = await tourCommands();
    assert.ok(commands.length >= 8, `only ${commands.length} commands in the tour`);
    for (const command of commands) {
      if (command[0] === "voice" && !HAS_VOICE) continue;
      // The tour's files go to /tmp; the test's to its own directory.
      const args = command.map((a) => a.startsWith("/tmp/") ? `${dir}/tour-${a.slice(5)}` : a);
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--quiet", "cli", ...args],
        cwd: ROOT,
        env: { NO_COLOR: "1", NATS_URL: natsUrl },
        stdin: "null",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const out = new TextDecoder().decode(stdout);
      assert.equal(
        code,
        0,
        `deno task cli ${command.join(" ")}:\n${out}${new TextDecoder().decode(stderr)}`,
      );
      if (command[0] === "stt") assert.match(out, /^transcript: turn on the kitchen lights$/m);
    }
  },
});

Deno.test({
  name: "Ctrl-C (SIGINT) stops the stack cleanly and leaves no process it started",
  ...ACROSS_TESTS,
  async fn() {
    const { child, stdout, stderr, dir } = running();
    const started = await descendants(child.pid);
    // nats-server and one process per service at least (deno task may add a shell in between).
    assert.ok(started.size >= SERVICES.length + 1, `only ${started.size} processes started`);
    try {
      child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const status = await child.status.finally(() => clearTimeout(timer));
      await Promise.all([stdout.done, stderr.done]);
      assert.equal(status.code, 0, stdout.all.slice(-30).join("\n") + stderr.all.join("\n"));
      assert.match(stdout.all.at(-1) ?? "", /stack +\| stopped$/);
      const left = [];
      for (const [pid, start] of started) if (await stillRuns(pid, start)) left.push(pid);
      assert.deepEqual(left, [], `still running: ${left.join(", ")}`);
    } finally {
      stack = undefined;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("deno task stack without nats-server says in one line what to install", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [...await stackCommand()],
    cwd: ROOT,
    env: { NO_COLOR: "1", PATH: "/nonexistent" },
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assert.equal(code, 1);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.deepEqual(lines, [
    "Cannot start the stack: nats-server is not installed (apt-get install nats-server)",
  ]);
});

Deno.test("deno task stack --smoke without flite and pocketsphinx: one line each on what to install, the stand-ins named, every service still answers", async () => {
  const nats = findProgram("nats-server");
  assert.ok(nats, "nats-server is not installed");
  const bin = await Deno.makeTempDir({ prefix: "stack-path-" });
  try {
    // A PATH with nats-server only: no flite, espeak-ng, sox or pocketsphinx.
    await Deno.symlink(nats, `${bin}/nats-server`);
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: [...await stackCommand(), "--smoke"],
      cwd: ROOT,
      env: { NO_COLOR: "1", PATH: bin },
      stdin: "null",
      signal: AbortSignal.timeout(300_000),
    }).output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, text);
    const missing = text.split("\n").filter((l) => /^stack +\| (tts|stt): missing/.test(l));
    assert.deepEqual(missing.map((l) => l.replace(/^stack +\| /, "").split(" (")[0]), [
      "tts: missing",
      "stt: missing",
    ]);
    assert.match(missing[0]!, /apt-get install flite/);
    assert.match(missing[1]!, /apt-get install pocketsphinx/);
    assert.match(text, /tts +\S+ +FALLBACK: a tone per word/);
    assert.match(text, /stt +\S+ +FALLBACK: a placeholder text/);
    assert.match(text, new RegExp(`smoke: ${SERVICES.length} of ${SERVICES.length} services ok`));
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
