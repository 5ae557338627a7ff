/**
 * The responder CPU per request of two versions of handler-base, measured in
 * one run: each version serves, in its own responder process, a handler-base
 * endpoint and the raw nats.js protobuf responder of `responders.ts` (decode
 * the TTSRequest, encode a TTSStatus, set `Msg-Type`), and load processes
 * (`load.ts`) drive each of the four in turn, round after round, the order of
 * the two versions alternating. CPU per request is the responder process's
 * `utime + stime` over the window divided by the requests answered, as in
 * `throughput.ts`; the ratio that issue 17 targets (handler-base over raw
 * protobuf) is taken per round within one process, so that the machine's
 * drift hits both sides of each ratio alike. Telemetry is off.
 *
 * `--before` is a directory holding the other version's `handler_base/`,
 * for instance `git archive main handler_base | tar -x -C /tmp/before`; it
 * resolves its dependencies through this checkout's `deno.json`.
 *
 * Run: `deno run -A bench/perf/compare.ts --before=/tmp/before [--seconds=2] [--rounds=9] [--loaders=2] [--in-flight=64]`
 *
 * @module
 */
import { startNatsServer } from "../../handler_base/testing/nats_server.ts";
import { cpuMs, loadAverage } from "./proc.ts";
import { runLoad, spawnReady } from "./spawn.ts";
import { median } from "./stats.ts";

const args = Object.fromEntries(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]),
);
const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const CONFIG = `${ROOT}/deno.json`;
const LOAD = new URL("./load.ts", import.meta.url).pathname;

/** The part of handler-base a responder uses, whichever version it comes from. */
interface Runtime {
  createService(nc: unknown, options: Record<string, unknown>): { start(): Promise<void> };
  defineEndpoint(options: Record<string, unknown>): unknown;
  createLogger(options: { service: string; level: string }): unknown;
  decode(schema: unknown, data: Uint8Array): { text: string };
  encode(schema: unknown, message: Record<string, unknown>): Uint8Array;
  TTSRequestSchema: unknown;
  TTSStatusSchema: { typeName: string };
  connectNats(options: { servers: string; name: string }): Promise<Connection>;
  messageHeaders(typeName: string): unknown;
}

interface Connection {
  subscribe(subject: string, options: { callback(error: unknown, msg: Message): void }): void;
  flush(): Promise<void>;
}

interface Message {
  readonly data: Uint8Array;
  respond(data: Uint8Array, options: { headers: unknown }): boolean;
}

/** Serves `<prefix>.proto` (raw nats.js) and `<prefix>.handler` (handler-base) from `base`. */
async function serve(base: string, prefix: string, url: string): Promise<void> {
  const modules = await Promise.all(
    ["handler.ts", "log.ts", "messages.ts", "natsutil.ts"].map((f) =>
      import(`${base}/handler_base/${f}`)
    ),
  );
  const hb = Object.assign({}, ...modules) as Runtime;
  const serviceConn = await hb.connectNats({ servers: url, name: "bench-service" });
  const rawConn = await hb.connectNats({ servers: url, name: "bench-raw" });
  const protoHeaders = hb.messageHeaders(hb.TTSStatusSchema.typeName);
  rawConn.subscribe(`${prefix}.proto`, {
    callback: (_error, msg) => {
      const req = hb.decode(hb.TTSRequestSchema, msg.data);
      const reply = hb.encode(hb.TTSStatusSchema, { status: "ok", message: req.text });
      msg.respond(reply, { headers: protoHeaders });
    },
  });
  const service = hb.createService(serviceConn, {
    name: "bench",
    logger: hb.createLogger({ service: "bench", level: "error" }),
    concurrency: 64,
    endpoints: [hb.defineEndpoint({
      subject: `${prefix}.handler`,
      request: hb.TTSRequestSchema,
      response: hb.TTSStatusSchema,
      handle: (req: { text: string }) => Promise.resolve({ status: "ok", message: req.text }),
    })],
  });
  await service.start();
  await rawConn.flush();
  console.log("READY");
  await new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve(undefined)));
  Deno.exit(0);
}

/** Drives one subject with the load processes; returns the responder's CPU per request in µs. */
async function measure(
  url: string,
  pid: number,
  subject: string,
  options: { inFlight: number; loaders: number; seconds: number },
): Promise<number> {
  const { inFlight, loaders, seconds } = options;
  const share = (i: number) => Math.floor(inFlight / loaders) + (i < inFlight % loaders ? 1 : 0);
  const procs = await Promise.all(
    Array.from({ length: loaders }, (_, i) =>
      spawnReady([
        "run",
        "-A",
        "--config",
        CONFIG,
        LOAD,
        `--url=${url}`,
        `--subject=${subject}`,
        `--in-flight=${share(i)}`,
        `--seconds=${seconds}`,
      ])),
  );
  const before = cpuMs(pid);
  const requests = (await runLoad(procs)).map((r) => r.requests);
  return ((cpuMs(pid) - before) * 1000) / requests.reduce((a, b) => a + b, 0);
}

if (import.meta.main) {
  if (args.serve) {
    await serve(args.serve, args.prefix!, args.url!);
  }
  if (!args.before) throw new Error("Cannot compare: give --before=<dir holding handler_base/>");
  const options = {
    seconds: Number(args.seconds ?? 2),
    inFlight: Number(args["in-flight"] ?? 64),
    loaders: Number(args.loaders ?? 2),
  };
  const rounds = Number(args.rounds ?? 9);
  const loadBefore = loadAverage();
  await using server = await startNatsServer({ jetstream: false });
  const sides = { before: args.before, after: args.after ?? ROOT };
  const self = new URL(import.meta.url).pathname;
  const responders = {
    before: await spawnReady(
      ["run", "-A", "--config", CONFIG, self, `--serve=${sides.before}`, "--prefix=before"]
        .concat(`--url=${server.url}`),
    ),
    after: await spawnReady(
      ["run", "-A", "--config", CONFIG, self, `--serve=${sides.after}`, "--prefix=after"]
        .concat(`--url=${server.url}`),
    ),
  };
  const samples: Record<string, number[]> = {};
  try {
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 ? ["after", "before"] as const : ["before", "after"] as const) {
        for (const kind of ["proto", "handler"]) {
          const pid = responders[side].child.pid;
          const us = await measure(server.url, pid, `${side}.${kind}`, options);
          (samples[`${side} ${kind}`] ??= []).push(us);
        }
      }
    }
  } finally {
    for (const r of Object.values(responders)) {
      r.child.kill("SIGTERM");
      await r.child.status;
    }
  }
  console.log(
    `\n${rounds} rounds of ${options.seconds} s, ${options.inFlight} in flight from ` +
      `${options.loaders} load processes; load average ${loadBefore} before, ` +
      `${loadAverage()} after. Responder CPU per request, µs (median, then every round):\n`,
  );
  for (const [name, values] of Object.entries(samples)) {
    console.log(
      `${name.padEnd(15)} ${median(values).toFixed(1).padStart(6)}   ` +
        values.map((v) => v.toFixed(1)).join(" "),
    );
  }
  for (const side of ["before", "after"]) {
    const ratios = samples[`${side} handler`]!.map((h, i) => h / samples[`${side} proto`]![i]!);
    console.log(
      `${side} handler / raw protobuf: median ${median(ratios).toFixed(2)}   ` +
        ratios.map((r) => r.toFixed(2)).join(" "),
    );
  }
}
