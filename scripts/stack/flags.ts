/**
 * The permission flags of a service in the local stack: exactly its
 * permission set (`-P=<name>`, the set named after it in the root
 * `deno.json`), plus only what the stack's local addresses and temporary
 * files need beyond it, derived from the environment the service is given.
 *
 * - A variable the service reads whose value is a URL (`VLLM_URL`,
 *   `KUBEFLOW_HOST`, ...) or a host (`*_HOST` with its `*_PORT`), and every
 *   URL the stack knows the service reaches through a file (the Kubernetes
 *   API of a kubeconfig), must be allowed by the set's `net` list (a host
 *   alone allows every port); what is not becomes `--allow-net`.
 * - A variable whose value is an absolute path (`KUBECONFIG`,
 *   `PIPELINES_CONFIG`, `TTS_VOICES_DIR`) must be under an entry of the set's
 *   `read` list; what is not becomes `--allow-read`.
 *
 * An `--allow-net` or `--allow-read` flag given with `-P` replaces the set's
 * list of that kind (Deno 2.9), so a flag repeats the set's own entries
 * before the extra ones: the service keeps everything its set allows.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serviceFlags } from "./flags.ts";
 *
 * const flags = serviceFlags({
 *   name: "pipeline-bridge",
 *   set: { net: ["127.0.0.1"], read: ["/etc/pipeline-bridge"] },
 *   env: { KUBECONFIG: "/tmp/stack/kubeconfig", KUBEFLOW_HOST: "http://127.0.0.1:9000" },
 * });
 * assert.deepEqual(flags, [
 *   "-P=pipeline-bridge",
 *   "--allow-read=/etc/pipeline-bridge,/tmp/stack/kubeconfig",
 * ]);
 * ```
 *
 * @module
 */

/** The part of a permission set of `deno.json` the stack checks. */
export interface PermissionSet {
  /** Hosts (`host` or `host:port`), or true for any. */
  readonly net?: readonly string[] | boolean;
  /** Paths, or true for any. */
  readonly read?: readonly string[] | boolean;
}

/** Input of {@linkcode serviceFlags}. */
export interface ServiceFlagsInput {
  /** The service (its permission set's name). */
  readonly name: string;
  /** Its permission set. */
  readonly set: PermissionSet;
  /** The environment it is given (only the variables it reads). */
  readonly env: Readonly<Record<string, string>>;
  /** More URLs it reaches, named in files it reads (a kubeconfig's server). @default [] */
  readonly reaches?: readonly string[];
}

const DEFAULT_PORTS: Record<string, string> = { "http:": "80", "https:": "443", "nats:": "4222" };

/** The `host:port` (or `host`) a variable's value names, when it names one. */
function hostOf(
  name: string,
  value: string,
  env: Readonly<Record<string, string>>,
): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    try {
      const url = new URL(value);
      // The URL parser leaves the scheme's default port out: the connection still uses it.
      const port = url.port || DEFAULT_PORTS[url.protocol];
      return port ? `${url.hostname}:${port}` : url.hostname;
    } catch {
      return undefined;
    }
  }
  if (name.endsWith("_HOST") && /^[\w.-]+$/.test(value)) {
    const port = env[`${name.slice(0, -"_HOST".length)}_PORT`];
    return port ? `${value}:${port}` : value;
  }
  return undefined;
}

/** Whether a net list allows `host:port` (a bare host entry allows every port). */
function netAllows(list: readonly string[] | boolean | undefined, host: string): boolean {
  if (list === true) return true;
  if (!Array.isArray(list)) return false;
  const bare = host.replace(/:\d+$/, "");
  return list.includes(host) || list.includes(bare);
}

/** Whether a read list allows a path (an entry allows everything under it). */
function readAllows(list: readonly string[] | boolean | undefined, path: string): boolean {
  if (list === true) return true;
  if (!Array.isArray(list)) return false;
  return list.some((entry) =>
    path === entry || path.startsWith(entry.endsWith("/") ? entry : `${entry}/`)
  );
}

/**
 * The flags that run a service with its permission set and what the stack's
 * environment needs beyond it.
 *
 * @param input The service, its set, its environment, and URLs it reaches through files.
 * @returns `["-P=<name>"]`, then `--allow-net=...` and `--allow-read=...` when needed.
 *
 * @example Loopback backends need nothing beyond a set that allows 127.0.0.1
 * ```ts
 * import assert from "node:assert/strict";
 * import { serviceFlags } from "./flags.ts";
 *
 * const flags = serviceFlags({
 *   name: "chat-handler",
 *   set: { net: ["127.0.0.1", "localhost"] },
 *   env: { VLLM_URL: "http://127.0.0.1:8000", MILVUS_HOST: "127.0.0.1", MILVUS_PORT: "19530" },
 * });
 * assert.deepEqual(flags, ["-P=chat-handler"]);
 * ```
 */
export function serviceFlags(input: ServiceFlagsInput): string[] {
  const { name, set, env } = input;
  const net = new Set<string>();
  const read = new Set<string>();
  const hosts = Object.entries(env).map(([key, value]) => hostOf(key, value, env));
  for (const url of input.reaches ?? []) hosts.push(hostOf("", url, env));
  for (const host of hosts) {
    if (host && !netAllows(set.net, host)) net.add(host);
  }
  for (const value of Object.values(env)) {
    if (value.startsWith("/") && !readAllows(set.read, value)) read.add(value);
  }
  const flags = [`-P=${name}`];
  const merged = (own: readonly string[] | boolean | undefined, extra: Set<string>) =>
    [...(Array.isArray(own) ? own : []), ...extra].join(",");
  if (net.size > 0) flags.push(`--allow-net=${merged(set.net, net)}`);
  if (read.size > 0) flags.push(`--allow-read=${merged(set.read, read)}`);
  return flags;
}
