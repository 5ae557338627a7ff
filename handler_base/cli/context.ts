/**
 * What every command gets: the connection, where to write, and its bounds.
 *
 * @example
 * ```ts ignore
 * import { createUi, denoOutput } from "./output.ts";
 * import type { CommandContext } from "./context.ts";
 *
 * const ctx: CommandContext = { nc, ui: createUi(denoOutput()), timeoutMs: 60_000 };
 * ```
 *
 * @module
 */
import type { NatsConnection } from "../natsutil.ts";
import type { Ui } from "./output.ts";

/** What every command function takes first. */
export interface CommandContext {
  /** The NATS connection. */
  readonly nc: NatsConnection;
  /** Where to write. */
  readonly ui: Ui;
  /** How long to wait for a service, in milliseconds. */
  readonly timeoutMs: number;
  /** Aborted on Ctrl-C. @default undefined */
  readonly signal?: AbortSignal | undefined;
}
