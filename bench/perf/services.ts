/**
 * What the benchmarks start every service of `services/table.ts` against: a
 * nats-server with JetStream and the fake backends a service calls at start
 * (XTTS, Whisper, the Kubernetes and Kubeflow APIs), and the command line of
 * each service (its entry file or its bundle, exactly its permission set, its
 * environment). `scripts/bundle_test.ts` starts the bundles the same way.
 *
 * @module
 */
import { bundleAll, bundleTarget } from "../../scripts/bundle.ts";
import { ensureStreams } from "../../handler_base/streams.ts";
import { connectNats } from "../../handler_base/natsutil.ts";
import { startFakeWhisper } from "../../handler_base/testing/fake_whisper.ts";
import { startFakeXtts } from "../../handler_base/testing/fake_xtts.ts";
import { type NatsServer, startNatsServer } from "../../handler_base/testing/nats_server.ts";
import { SERVICES } from "../../services/table.ts";
import { startEngines } from "../../services/pipeline_bridge/test_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * Set for every process the start-up and memory benchmarks spawn: what `deno run` does and the
 * compiled binary the image runs does not. Deno's update check resolves a host and loads the TLS
 * roots in the background a moment after start, about 1.8 MiB of `VmRSS` and CPU during the window
 * measured.
 */
export const AS_SHIPPED_ENV: Readonly<Record<string, string>> = { DENO_NO_UPDATE_CHECK: "1" };

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

/** Every service's bundle (`scripts/bundle.ts`), in a temporary directory removed on dispose. */
export interface Bundles extends AsyncDisposable {
  /** The directory holding `<name>.js` per service, and {@linkcode NATS_READY_BUNDLE}. */
  readonly dir: string;
}

/** The file name of the floor baseline's bundle (`nats_ready.ts`) in a {@linkcode Bundles} directory. */
export const NATS_READY_BUNDLE = "nats-ready.js";

/** Builds every service's bundle, and the floor baseline's, into a temporary directory. */
export async function buildBundles(): Promise<Bundles> {
  const dir = await Deno.makeTempDir({ prefix: "bench-bundles-" });
  try {
    await bundleAll(dir, SERVICES.map((s) => s.name));
    await bundleTarget({ name: "nats-ready", entry: "bench/perf/nats_ready.ts" }, { outDir: dir });
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** How to run one service of the table. */
export interface ServiceRun {
  readonly name: string;
  /** The entry file (absolute). */
  readonly entry: string;
  /** The bundle (absolute), when a bundle directory was given. */
  readonly bundle?: string;
  /** `--no-prompt`, its permission set, the project's config (where `-P` reads the set). */
  readonly flags: readonly string[];
  /** For its bundle: what its compiled binary embeds, with no config read ({@linkcode binaryFlags}). */
  readonly binaryFlags: readonly string[];
  readonly env: Record<string, string>;
}

/**
 * Every service of the table with exactly its permission set (plus reading its test files),
 * and its bundle in `bundleDir` when given.
 */
export function serviceRuns(backends: Backends, bundleDir?: string): ServiceRun[] {
  const reads: Record<string, string> = {
    "tts-module": backends.voicesDir,
    "pipeline-bridge": backends.kubeconfigPath,
  };
  return SERVICES.map((s) => ({
    ...serviceRun(s.name, backends.env, reads[s.name]),
    ...(bundleDir ? { bundle: `${bundleDir}/${s.name}.js` } : {}),
  }));
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
  const service = SERVICES.find((s) => s.name === name);
  if (!service) throw new Error(`Cannot run "${name}": it is not in services/table.ts`);
  const base: Record<string, string> = {};
  for (const key of ["PATH", "HOME", "DENO_DIR"]) {
    const value = Deno.env.get(key);
    if (value) base[key] = value;
  }
  return {
    name,
    entry: `${ROOT}${service.entry}`,
    flags: [
      "--no-prompt",
      `-P=${name}`,
      `--config=${ROOT}deno.json`,
      ...(extraRead ? [`--allow-read=${extraRead}`] : []),
    ],
    binaryFlags: binaryFlags(name, extraRead),
    env: { ...base, ...env },
  };
}

/**
 * The flags that make `deno run <bundle>` start as the service's compiled binary does.
 * `deno compile --config deno.json -P=<name> --v8-flags=...` (the Dockerfile) embeds the
 * permission set, the config's unstable features and the V8 flags, and the binary reads no
 * config or lock file at start; `deno run -P --config` reads both (3 MiB and about 10 ms more).
 * So: `--no-config --no-lock`, the set as explicit `--allow-*` flags (plus reading `extraRead`),
 * `--unstable-*` per the config's `unstable` list, and the Dockerfile's `V8_FLAGS` default.
 *
 * @param name A permission set of `deno.json` (a service's name).
 * @param extraRead A path it may read beyond its set (a test voices directory).
 * @returns The flags, to put before the bundle's path.
 */
export function binaryFlags(name: string, extraRead?: string): string[] {
  const permissions = permissionSet(name);
  if (extraRead && permissions.read !== true) {
    permissions.read = [...(permissions.read ?? []), extraRead];
  }
  return asBinaryFlags(permissions);
}

/**
 * The flags that start the floor baseline's bundle (`nats_ready.ts`) as a compiled binary of
 * it would start, as {@linkcode binaryFlags} does for a service: only the network, and the
 * two variables it reads.
 *
 * @returns The flags, to put before the bundle's path.
 */
export function natsReadyFlags(): string[] {
  return asBinaryFlags({ net: true, env: ["NATS_URL", "HEALTH_PORT"] });
}

/**
 * The environment the image gives its binary: the `ENV` instructions of the Dockerfile's final
 * stage, but `TMPDIR` (where the image keeps the code cache; `deno run` keeps its own). Start a
 * bundle with it to start it as the image does.
 *
 * @returns The variables.
 */
export function imageEnv(): Record<string, string> {
  const dockerfile = Deno.readTextFileSync(`${ROOT}Dockerfile`);
  const final = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  const env: Record<string, string> = {};
  for (const [, assignments] of final.matchAll(/^ENV (.+)$/gm)) {
    for (const assignment of assignments!.trim().split(/\s+/)) {
      const equals = assignment.indexOf("=");
      if (equals < 1) throw new Error(`Cannot read the Dockerfile's "ENV ${assignments}"`);
      const key = assignment.slice(0, equals);
      if (key !== "TMPDIR") env[key] = assignment.slice(equals + 1);
    }
  }
  return env;
}

function permissionSet(name: string): Record<string, true | string[]> {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const set: Record<string, true | string[]> | undefined = config.permissions?.[name];
  if (!set) {
    throw new Error(`Cannot run "${name}" as its binary: deno.json has no such permission set`);
  }
  return { ...set };
}

function asBinaryFlags(permissions: Record<string, true | string[]>): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const v8Flags = Deno.readTextFileSync(`${ROOT}Dockerfile`).match(/^ARG V8_FLAGS=(\S+)$/m)?.[1];
  if (!v8Flags) throw new Error("Cannot read the default of ARG V8_FLAGS in the Dockerfile");
  return [
    "--no-prompt",
    "--no-config",
    "--no-lock",
    ...(config.unstable ?? []).map((feature: string) => `--unstable-${feature}`),
    `--v8-flags=${v8Flags}`,
    ...Object.entries(permissions).map(([kind, value]) =>
      value === true ? `--allow-${kind}` : `--allow-${kind}=${value.join(",")}`
    ),
  ];
}
