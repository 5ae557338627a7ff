/**
 * What the benchmarks start every service of `services/table.ts` against: a
 * nats-server with JetStream and the fake backends a service calls at start
 * (XTTS, Whisper, the Kubernetes and Kubeflow APIs), and the command line of
 * each service (its entry file, exactly its permission set, its environment).
 *
 * @module
 */
import { ensureStreams } from "../../handler_base/streams.ts";
import { connectNats } from "../../handler_base/natsutil.ts";
import { startFakeWhisper } from "../../handler_base/testing/fake_whisper.ts";
import { startFakeXtts } from "../../handler_base/testing/fake_xtts.ts";
import { type NatsServer, startNatsServer } from "../../handler_base/testing/nats_server.ts";
import { SERVICES } from "../../services/table.ts";
import { startEngines } from "../../services/pipeline_bridge/test_helpers.ts";

/** The broker and the fakes. */
export interface Backends extends AsyncDisposable {
  readonly nats: NatsServer;
  readonly env: Record<string, string>;
  readonly voicesDir: string;
  readonly kubeconfigPath: string;
}

/** Starts the broker (with the streams) and the fakes. */
export async function startBackends(): Promise<Backends> {
  const nats = await startNatsServer({ jetstream: true });
  const nc = await connectNats({ servers: nats.url, name: "bench-setup" });
  await ensureStreams(nc);
  await nc.close();
  const xtts = startFakeXtts();
  const whisper = startFakeWhisper();
  const engines = await startEngines();
  const voicesDir = await Deno.makeTempDir({ prefix: "bench-voices-" });
  return {
    nats,
    voicesDir,
    kubeconfigPath: engines.kubeconfigPath,
    env: {
      ...engines.env,
      NATS_URL: nats.url,
      TTS_URL: xtts.url,
      TTS_VOICES_DIR: voicesDir,
      WHISPER_URL: whisper.url,
    },
    async [Symbol.asyncDispose]() {
      await Promise.all([xtts.close(), whisper.close(), engines[Symbol.asyncDispose]()]);
      await Deno.remove(voicesDir, { recursive: true });
      await nats[Symbol.asyncDispose]();
    },
  };
}

/** How to run one service of the table. */
export interface ServiceRun {
  readonly name: string;
  readonly entry: string;
  readonly flags: readonly string[];
  readonly env: Record<string, string>;
}

/** Every service of the table with exactly its permission set (plus reading its test files). */
export function serviceRuns(backends: Backends): ServiceRun[] {
  const reads: Record<string, string> = {
    "tts-module": backends.voicesDir,
    "pipeline-bridge": backends.kubeconfigPath,
  };
  return SERVICES.map((s) => serviceRun(s.name, backends.env, reads[s.name]));
}

/**
 * One service of the table as `deno run` starts it: exactly its permission
 * set (plus reading `extraRead`), `PATH`, `HOME`, `DENO_DIR` and `env`.
 *
 * @param name The service's name in the table.
 * @param env Its environment (the broker, the backends).
 * @param extraRead A path it may read beyond its set (a test voices directory).
 * @returns How to run it.
 */
export function serviceRun(
  name: string,
  env: Record<string, string>,
  extraRead?: string,
): ServiceRun {
  const root = new URL("../../", import.meta.url).pathname;
  const service = SERVICES.find((s) => s.name === name);
  if (!service) throw new Error(`Cannot run "${name}": it is not in services/table.ts`);
  const base: Record<string, string> = {};
  for (const key of ["PATH", "HOME", "DENO_DIR"]) {
    const value = Deno.env.get(key);
    if (value) base[key] = value;
  }
  return {
    name,
    entry: `${root}${service.entry}`,
    flags: ["--no-prompt", `-P=${name}`, ...(extraRead ? [`--allow-read=${extraRead}`] : [])],
    env: { ...base, ...env },
  };
}
