/**
 * The one table of the project's services: name, entry file and definition.
 * The permission set of each service in the root `deno.json` is named after
 * it. Everything that lists the services (the local stack, the compile
 * script, the manifests and permission tests) reads this table, so a new
 * service is one row here, its definition and entry file, its permission set
 * (`deno task permissions` writes the variables) and a manifest in `k8s/`.
 *
 * @example
 * ```ts
 * import { SERVICES } from "./table.ts";
 *
 * console.log(SERVICES.map((s) => s.name).includes("tts-module")); // true
 * ```
 *
 * @module
 */
import type { ServiceDefinition } from "@homelab/handler-base/main";

/** One service of the project. */
export interface ServiceEntry {
  /** The service name: its permission set, queue group, durable consumer and manifest. */
  readonly name: string;
  /** The entry file, relative to the repository root. */
  readonly entry: string;
  /** Loads the service's definition (lazily, so that reading the table loads no service). */
  load(): Promise<ServiceDefinition>;
}

/** Every service, in the order the stack starts them. */
export const SERVICES: readonly ServiceEntry[] = [
  {
    name: "chat-handler",
    entry: "services/chat.ts",
    load: async () => (await import("./chat/service.ts")).chatService,
  },
  {
    name: "tts-module",
    entry: "services/tts.ts",
    load: async () => (await import("./tts/service.ts")).ttsService,
  },
  {
    name: "stt-module",
    entry: "services/stt.ts",
    load: async () => (await import("./stt/service.ts")).sttService,
  },
];

/**
 * The `-P=<set>` flag that runs a service with exactly its permission set.
 *
 * @param entry The service.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { permissionFlag, SERVICES } from "./table.ts";
 *
 * console.log(permissionFlag(SERVICES[0]!)); // "-P=chat-handler"
 * ```
 */
export function permissionFlag(entry: ServiceEntry): string {
  return `-P=${entry.name}`;
}

if (import.meta.main) {
  // `deno run services/table.ts` prints "name entry" lines for shell scripts.
  for (const service of SERVICES) console.log(`${service.name} ${service.entry}`);
}
