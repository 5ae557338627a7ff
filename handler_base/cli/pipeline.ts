/**
 * `pipeline`: pipeline-bridge over its contract (SYSTEM.md sections 4 and 5).
 * Sends a PipelineTrigger on `ai.pipeline.trigger` (with `Nats-Msg-Id` set to
 * the request id, so the `AI_PIPELINE` stream drops a repeated trigger) and
 * follows the PipelineStatus messages of `ai.pipeline.status.{request_id}`
 * (and the reply) until a terminal status: `succeeded`, `failed` or `error`.
 *
 * @example
 * ```ts ignore
 * import { pipeline } from "./pipeline.ts";
 *
 * const result = await pipeline(ctx, { name: "document-ingestion", parameters: { source: "s3://docs" } });
 * console.log(result.status);
 * ```
 *
 * @module
 */
import { headers as createHeaders } from "@nats-io/nats-core";
import { abortable } from "../async.ts";
import { type PipelineStatus, PipelineStatusSchema, PipelineTriggerSchema } from "../messages.ts";
import { decodeMsg } from "../natsutil.ts";
import { callService } from "./call.ts";
import type { CommandContext } from "./context.ts";
import { CliError, EXIT_CODES } from "./exit_codes.ts";

/**
 * The statuses after which a run changes no more.
 *
 * @example
 * ```ts
 * import { TERMINAL_STATUSES } from "./pipeline.ts";
 *
 * console.log(TERMINAL_STATUSES.has("succeeded")); // true
 * ```
 */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "error"]);

/** Options of {@linkcode pipeline}. */
export interface PipelineOptions {
  /** The pipeline's name in pipeline-bridge's registry. */
  name: string;
  /** Its parameters. @default {} */
  parameters?: Readonly<Record<string, string>>;
  /** The request id (a repeated id starts no second run). @default a new UUID */
  requestId?: string;
  /**
   * How long to wait for the first status, in milliseconds; the context's
   * timeout bounds the whole run.
   *
   * @default 15000, or the context's timeout when shorter
   */
  firstStatusTimeoutMs?: number;
}

/** What {@linkcode pipeline} returns. */
export interface PipelineResult {
  /** The request id. */
  readonly requestId: string;
  /** The terminal status. */
  readonly status: string;
  /** The run's id. */
  readonly runId: string;
  /** `argo` or `kubeflow`. */
  readonly engine: string;
  /** Every status seen, in order. */
  readonly statuses: readonly string[];
}

/**
 * The human line of one status.
 *
 * @param status The status.
 * @returns One line.
 *
 * @example
 * ```ts
 * import { create, PipelineStatusSchema } from "../messages.ts";
 * import { formatPipelineStatus } from "./pipeline.ts";
 *
 * const line = formatPipelineStatus(create(PipelineStatusSchema, {
 *   status: "submitted", pipeline: "batch-inference", engine: "argo", runId: "wf-1",
 * }));
 * console.log(line); // "submitted  batch-inference on argo, run wf-1"
 * ```
 */
export function formatPipelineStatus(status: PipelineStatus): string {
  const where = [
    status.pipeline,
    status.engine ? `on ${status.engine}` : "",
  ].filter(Boolean).join(" ");
  const run = status.runId ? `, run ${status.runId}` : "";
  const error = status.error ? `: ${status.error}` : "";
  const available = status.availablePipelines.length > 0
    ? ` (available: ${status.availablePipelines.join(", ")})`
    : "";
  return `${status.status.padEnd(10)} ${where}${run}${error}${available}`;
}

/**
 * Triggers a pipeline and follows its status to the end.
 *
 * @param ctx Connection, output, and the timeout of the whole run.
 * @param options The pipeline and its parameters.
 * @returns The terminal status.
 * @throws {CliError} With exit code 1 when the run ends `failed` or `error`, 4 when no status comes in time.
 *
 * @example
 * ```ts ignore
 * await pipeline(ctx, { name: "batch-inference" });
 * ```
 */
export async function pipeline(
  ctx: CommandContext,
  options: PipelineOptions,
): Promise<PipelineResult> {
  const { nc, ui } = ctx;
  const requestId = options.requestId ?? crypto.randomUUID();
  const statusSubject = `ai.pipeline.status.${requestId}`;
  const seen: PipelineStatus[] = [];
  let resolveEnd: (status: PipelineStatus) => void = () => {};
  const ended = new Promise<PipelineStatus>((resolve) => resolveEnd = resolve);
  const take = (status: PipelineStatus) => {
    // The reply to the trigger can arrive after statuses of the subject (pipeline-bridge
    // publishes `submitted` there too, and its follower may already have said `pending`):
    // a status of the same run seen before is not news.
    if (seen.some((s) => s.status === status.status && s.runId === status.runId)) return;
    seen.push(status);
    ui.line(formatPipelineStatus(status));
    ui.event("status", {
      status: status.status,
      runId: status.runId,
      engine: status.engine,
      pipeline: status.pipeline,
      submittedAt: status.submittedAt,
      error: status.error,
      availablePipelines: [...status.availablePipelines],
    });
    if (TERMINAL_STATUSES.has(status.status)) resolveEnd(status);
  };
  const sub = nc.subscribe(statusSubject, {
    callback: (_error, msg) => {
      try {
        take(decodeMsg(PipelineStatusSchema, msg));
      } catch {
        // Not a PipelineStatus: ignore.
      }
    },
  });
  const deadline = AbortSignal.timeout(ctx.timeoutMs);
  try {
    ui.progress(`Triggering ${options.name} (request ${requestId})...`);
    const msgId = createHeaders();
    msgId.set("Nats-Msg-Id", requestId);
    const first = await callService(nc, {
      subject: "ai.pipeline.trigger",
      requestSchema: PipelineTriggerSchema,
      message: { requestId, pipeline: options.name, parameters: { ...options.parameters } },
      responseSchema: PipelineStatusSchema,
      resultSubject: statusSubject,
      timeoutMs: Math.min(options.firstStatusTimeoutMs ?? 15_000, ctx.timeoutMs),
      headers: msgId,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    take(first);
    const signal = AbortSignal.any([deadline, ...(ctx.signal ? [ctx.signal] : [])]);
    const last = await abortable(ended, signal).catch((error) => {
      if (!deadline.aborted) throw error;
      throw new CliError(
        EXIT_CODES.noService,
        `Cannot follow ${options.name}: no terminal status within ${ctx.timeoutMs} ms ` +
          `(last: ${seen.at(-1)?.status ?? "none"})`,
      );
    });
    const result: PipelineResult = {
      requestId,
      status: last.status,
      runId: seen.findLast((s) => s.runId)?.runId ?? "",
      engine: seen.findLast((s) => s.engine)?.engine ?? "",
      statuses: seen.map((s) => s.status),
    };
    if (last.status !== "succeeded") {
      throw new CliError(
        EXIT_CODES.remoteError,
        `Pipeline ${options.name} ended ${last.status}${last.error ? `: ${last.error}` : ""}`,
      );
    }
    return result;
  } finally {
    sub.unsubscribe();
  }
}
