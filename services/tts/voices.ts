/**
 * The registry of custom voices: one folder per voice under a directory,
 * holding the voice's reference recording and, optionally, a small
 * `metadata.json` (`{"language": "de", "model_type": "xtts_v2",
 * "created_at": "2026-11-02T11:30:00Z"}`).
 *
 * - The voice's name is the folder's name. Its reference is `reference.wav`,
 *   or else the folder's only `.wav` file.
 * - A folder that cannot be used (no WAV, several WAVs and none named
 *   `reference.wav`, a WAV that does not parse or is too large, a
 *   `metadata.json` that is not a JSON object of strings, an unreadable
 *   file) is skipped with a log line; it never fails a scan.
 * - Without `metadata.json` the language and model type are empty and
 *   `created_at` is the WAV's modification time.
 * - The conditioning latents of a voice are computed by the backend
 *   (`cloneSpeaker`) on first use and cached; the cache entry is dropped when
 *   the WAV's modification time or size changes (checked on every use and on
 *   every scan), so an updated voice is cloned again.
 *
 * Requires `--allow-read=<voices dir>`.
 *
 * @example Scan a directory and speak with a voice
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTtsClient } from "@homelab/handler-base/clients/tts";
 * import { wrapPcmAsWav } from "@homelab/handler-base/clients/wav";
 * import { createLogger } from "@homelab/handler-base/log";
 * import { startFakeXtts } from "@homelab/handler-base/testing";
 * import { startVoiceRegistry } from "./voices.ts";
 *
 * const dir = await Deno.makeTempDir(); // in the cluster: /voices
 * await Deno.mkdir(`${dir}/narrator`);
 * await Deno.writeFile(`${dir}/narrator/reference.wav`, wrapPcmAsWav(new Uint8Array(4800)));
 * await using xtts = startFakeXtts();
 * const tts = createTtsClient({ baseUrl: xtts.url });
 * using voices = await startVoiceRegistry({
 *   dir,
 *   tts,
 *   logger: createLogger({ service: "tts-module", write: () => {} }),
 * });
 * assert.deepEqual(voices.list().map((v) => v.name), ["narrator"]);
 * const speaker = await voices.latents("narrator");
 * const { format } = await tts.synthesize("Hello.", { speaker });
 * assert.equal(format.sampleRate, 24000);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { abortable } from "@homelab/handler-base/async";
import type { SpeakerLatents, TtsClient } from "@homelab/handler-base/clients/tts";
import { parseWav } from "@homelab/handler-base/clients/wav";
import { HandlerError, InvalidArgumentError } from "@homelab/handler-base/errors";
import type { Logger } from "@homelab/handler-base/log";
import { unixSeconds } from "@homelab/handler-base/messages";

/** A custom voice as `voices.list` describes it (the fields of `TTSVoiceInfo`). */
export interface VoiceInfo {
  /** The voice's name: its folder's name, and the `speaker` that selects it. */
  readonly name: string;
  /** The language from `metadata.json`, or "". */
  readonly language: string;
  /** The model type from `metadata.json`, or "". */
  readonly modelType: string;
  /** The creation time from `metadata.json`, or the WAV's modification time (RFC 3339). */
  readonly createdAt: string;
}

/** Options of {@linkcode startVoiceRegistry}. */
export interface VoiceRegistryOptions {
  /**
   * The directory with one folder per voice.
   *
   * @default undefined (no custom voices)
   */
  dir?: string | undefined;
  /** The client that computes a voice's latents. */
  tts: Pick<TtsClient, "cloneSpeaker">;
  /** Where skipped folders and failed scans are reported. */
  logger: Logger;
  /**
   * The largest reference WAV accepted, in bytes.
   *
   * @default 10485760 (10 MiB)
   */
  maxReferenceBytes?: number;
  /**
   * How often the directory is scanned again, in milliseconds; 0 disables
   * the periodic scan.
   *
   * @default 60000
   */
  refreshMs?: number;
  /**
   * Stops the periodic scan when it fires (the process's termination signal).
   *
   * @default none: dispose the registry instead
   */
  signal?: AbortSignal;
  /**
   * The timers of the periodic scan (a test drives the scans with its own).
   *
   * @default the global `setInterval` and `clearInterval`
   */
  timers?: IntervalTimers;
}

/** The interval timers the periodic scan runs on. */
export interface IntervalTimers {
  /** Calls `fn` every `ms` milliseconds; returns a handle for `clearInterval`. */
  setInterval(fn: () => void, ms: number): unknown;
  /** Stops an interval set with `setInterval`. */
  clearInterval(handle: unknown): void;
}

const SYSTEM_TIMERS: IntervalTimers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
};

/** Options of calls that wait. */
export interface VoiceCallOptions {
  /**
   * Gives up waiting (a shared latents computation goes on for other callers).
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** The registry of custom voices. Disposing it stops the periodic scan. */
export interface VoiceRegistry extends Disposable {
  /** When the last scan finished, in Unix seconds; 0 before the first one. */
  readonly lastRefresh: bigint;
  /**
   * The voices found by the last scan.
   *
   * @returns The voices, sorted by name.
   */
  list(): readonly VoiceInfo[];
  /**
   * Looks up a voice of the last scan.
   *
   * @param name The voice's name.
   * @returns The voice, or undefined when there is none of that name.
   */
  get(name: string): VoiceInfo | undefined;
  /**
   * Scans the directory now (after any scan already running).
   *
   * @param options The signal.
   * @returns The voices found, sorted by name.
   */
  refresh(options?: VoiceCallOptions): Promise<readonly VoiceInfo[]>;
  /**
   * The conditioning latents of a voice, computed by the backend on first
   * use and cached until the voice's WAV changes.
   *
   * @param name The voice's name.
   * @param options The signal.
   * @returns The latents.
   * @throws {InvalidArgumentError} When no voice has that name.
   * @throws {HandlerError} When the reference WAV can no longer be read or
   * parsed, or the backend fails (its errors as thrown by `cloneSpeaker`).
   */
  latents(name: string, options?: VoiceCallOptions): Promise<SpeakerLatents>;
}

interface Voice {
  readonly info: VoiceInfo;
  readonly wavPath: string;
  /** The WAV's modification time and size when it was checked. */
  readonly fingerprint: string;
}

const REFERENCE_WAV = "reference.wav";
const METADATA_JSON = "metadata.json";
const METADATA_FIELDS = [
  ["language", "language"],
  ["model_type", "modelType"],
  ["created_at", "createdAt"],
] as const;

function fingerprintOf(stat: Deno.FileInfo): string {
  return `${stat.mtime?.getTime() ?? 0}:${stat.size}`;
}

/** Why a folder is skipped: a message for the log, never for the wire. */
class SkipVoice extends Error {}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function readMetadata(path: string): Promise<Partial<Record<string, string>> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new SkipVoice(`Cannot read ${METADATA_JSON}: ${describe(error)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SkipVoice(`Cannot parse ${METADATA_JSON}: ${describe(error)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SkipVoice(`Cannot use ${METADATA_JSON}: it is not a JSON object`);
  }
  const metadata: Record<string, string> = {};
  for (const [key, field] of METADATA_FIELDS) {
    const item = (value as Record<string, unknown>)[key];
    if (item === undefined || item === null) continue;
    if (typeof item !== "string") {
      throw new SkipVoice(`Cannot use ${METADATA_JSON}: "${key}" is not a string`);
    }
    metadata[field] = item;
  }
  return metadata;
}

async function findReference(folder: string): Promise<string> {
  const wavs: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (entry.name.toLowerCase().endsWith(".wav") && !entry.isDirectory) wavs.push(entry.name);
  }
  if (wavs.includes(REFERENCE_WAV)) return REFERENCE_WAV;
  if (wavs.length === 1) return wavs[0]!;
  if (wavs.length === 0) throw new SkipVoice("Cannot find a reference WAV");
  throw new SkipVoice(`Cannot choose among ${wavs.length} WAV files: name one ${REFERENCE_WAV}`);
}

/** Reads a reference WAV, checking its size and that it parses. */
async function readReference(path: string, maxBytes: number): Promise<Uint8Array> {
  const file = await Deno.open(path);
  try {
    const { size } = await file.stat();
    if (size > maxBytes) {
      throw new SkipVoice(`Cannot use the reference WAV: ${size} bytes exceed ${maxBytes}`);
    }
    const bytes = new Uint8Array(size);
    let read = 0;
    while (read < size) {
      const n = await file.read(bytes.subarray(read));
      if (n === null) break;
      read += n;
    }
    const wav = bytes.subarray(0, read);
    try {
      parseWav(wav);
    } catch (error) {
      throw new SkipVoice(`Cannot use the reference WAV: ${describe(error)}`);
    }
    return wav;
  } finally {
    file.close();
  }
}

async function loadVoice(
  dir: string,
  name: string,
  previous: Voice | undefined,
  maxBytes: number,
): Promise<Voice> {
  const folder = `${dir}/${name}`;
  let wavPath: string;
  let stat: Deno.FileInfo;
  let metadata: Partial<Record<string, string>> | undefined;
  try {
    wavPath = `${folder}/${await findReference(folder)}`;
    stat = await Deno.stat(wavPath);
    metadata = await readMetadata(`${folder}/${METADATA_JSON}`);
  } catch (error) {
    if (error instanceof SkipVoice) throw error;
    throw new SkipVoice(`Cannot read the voice folder: ${describe(error)}`);
  }
  const fingerprint = fingerprintOf(stat);
  // An unchanged WAV was validated by an earlier scan; only changed ones are read.
  if (previous?.wavPath !== wavPath || previous.fingerprint !== fingerprint) {
    try {
      await readReference(wavPath, maxBytes);
    } catch (error) {
      if (error instanceof SkipVoice) throw error;
      throw new SkipVoice(`Cannot read the reference WAV: ${describe(error)}`);
    }
  }
  return {
    wavPath,
    fingerprint,
    info: {
      name,
      language: metadata?.language ?? "",
      modelType: metadata?.modelType ?? "",
      createdAt: metadata?.createdAt ?? stat.mtime?.toISOString() ?? "",
    },
  };
}

/**
 * Creates the registry, scans the directory once and starts the periodic
 * scan. A directory that does not exist or cannot be read gives an empty
 * registry and a log line, never an error.
 *
 * @param options The directory, the client, the logger, limits and the stop signal.
 * @returns The registry; dispose it (or fire `signal`) to stop the periodic scan.
 *
 * @example A registry without a directory has no voices
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLogger } from "@homelab/handler-base/log";
 * import { startVoiceRegistry } from "./voices.ts";
 *
 * using voices = await startVoiceRegistry({
 *   tts: { cloneSpeaker: () => Promise.reject(new Error("unused")) },
 *   logger: createLogger({ service: "demo", write: () => {} }),
 * });
 * assert.equal(voices.list().length, 0);
 * ```
 */
export async function startVoiceRegistry(options: VoiceRegistryOptions): Promise<VoiceRegistry> {
  const { dir, tts, logger, signal } = options;
  const maxBytes = options.maxReferenceBytes ?? 10 * 1024 * 1024;
  const refreshMs = options.refreshMs ?? 60_000;
  let voices = new Map<string, Voice>();
  let sorted: readonly VoiceInfo[] = [];
  let lastRefresh = 0n;
  let scanning: Promise<unknown> = Promise.resolve();
  const cache = new Map<string, { fingerprint: string; latents: Promise<SpeakerLatents> }>();

  async function scan(): Promise<readonly VoiceInfo[]> {
    if (dir === undefined) {
      lastRefresh = unixSeconds();
      return sorted;
    }
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        // Hidden entries include the `..data` links of mounted ConfigMaps.
        if (!entry.isFile && !entry.name.startsWith(".")) names.push(entry.name);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        logger.error("Cannot scan the voices directory: keeping the voices found before", {
          dir,
          error,
        });
        return sorted;
      }
      logger.warn("Cannot find the voices directory: no custom voices", { dir });
    }
    const found = new Map<string, Voice>();
    for (const name of names.sort()) {
      try {
        found.set(name, await loadVoice(dir, name, voices.get(name), maxBytes));
      } catch (error) {
        if (!(error instanceof SkipVoice)) throw error;
        logger.warn("Skipping voice folder", { voice: name, reason: error.message });
      }
    }
    for (const [name, cached] of cache) {
      if (found.get(name)?.fingerprint !== cached.fingerprint) cache.delete(name);
    }
    voices = found;
    sorted = Object.freeze([...found.values()].map((voice) => voice.info));
    lastRefresh = unixSeconds();
    logger.debug("Scanned the voices directory", { dir, voices: sorted.length });
    return sorted;
  }

  function refresh(call: VoiceCallOptions = {}): Promise<readonly VoiceInfo[]> {
    const next = scanning.then(scan);
    scanning = next.catch(() => {});
    return abortable(next, call.signal);
  }

  async function computeLatents(voice: Voice): Promise<SpeakerLatents> {
    let wav: Uint8Array;
    try {
      wav = await readReference(voice.wavPath, maxBytes);
    } catch (error) {
      logger.error("Cannot read a voice's reference WAV", { voice: voice.info.name, error });
      throw new HandlerError(
        "Internal",
        `Cannot use voice "${voice.info.name}": its reference WAV cannot be read`,
        { cause: error },
      );
    }
    return await tts.cloneSpeaker(wav);
  }

  async function latents(name: string, call: VoiceCallOptions = {}): Promise<SpeakerLatents> {
    const voice = voices.get(name);
    if (!voice) {
      throw new InvalidArgumentError(`Cannot use voice "${name}": there is no such voice`);
    }
    let fingerprint: string;
    try {
      fingerprint = fingerprintOf(await Deno.stat(voice.wavPath));
    } catch (error) {
      throw new HandlerError(
        "Internal",
        `Cannot use voice "${name}": its reference WAV is gone`,
        { cause: error },
      );
    }
    let cached = cache.get(name);
    if (cached?.fingerprint !== fingerprint) {
      // Computed without the caller's signal: other requests may share it.
      const computing = computeLatents(voice);
      cached = { fingerprint, latents: computing };
      cache.set(name, cached);
      computing.catch(() => {
        if (cache.get(name)?.latents === computing) cache.delete(name);
      });
    }
    return await abortable(cached.latents, call.signal);
  }

  await refresh();
  const timers = options.timers ?? SYSTEM_TIMERS;
  let timer: unknown;
  function stop(): void {
    if (timer !== undefined) timers.clearInterval(timer);
    timer = undefined;
    signal?.removeEventListener("abort", stop);
  }
  if (dir !== undefined && refreshMs > 0 && !signal?.aborted) {
    timer = timers.setInterval(() => {
      refresh().catch((error) => logger.error("Cannot rescan the voices", { error }));
    }, refreshMs);
    signal?.addEventListener("abort", stop, { once: true });
  }

  return {
    get lastRefresh() {
      return lastRefresh;
    },
    list: () => sorted,
    get: (name) => voices.get(name)?.info,
    refresh,
    latents,
    [Symbol.dispose]: stop,
  };
}
