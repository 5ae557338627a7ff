/**
 * Creates or updates the platform's JetStream streams (`STREAMS` in
 * `handler_base/jetstream.ts`) on the NATS server that `NATS_URL` names, and
 * prints what it did per stream. It never deletes a stream or a message: a
 * storage change is refused and a shorter `max_age` left alone, both reported.
 * Running it again changes nothing.
 *
 * `JETSTREAM_REPLICAS` (default 1) sets how many servers hold each stream: 3
 * on a three-node cluster. Raising it on existing streams updates them in
 * place and keeps their messages (the servers copy them to the new replicas).
 *
 * Run: `deno run -P=ensure-streams scripts/ensure_streams.ts [--dry-run]
 * [STREAM ...]` (add `--allow-read=<file>` for `NATS_CREDS` or `NATS_TLS_CA`). With stream names, only those are
 * ensured; `--dry-run` reports without changing anything.
 *
 * Exit codes: 0 done, 1 a stream could not be ensured, 2 bad arguments,
 * 78 bad configuration.
 *
 * @module
 */
import { ConfigError, loadConfig, natsConfigSpec } from "../handler_base/config.ts";
import { consumeConfigSpec } from "../handler_base/consume_config.ts";
import {
  ensureStreams,
  type StreamResult,
  STREAMS,
  StreamSetupError,
} from "../handler_base/jetstream.ts";
import { connectNats, natsOptionsFromConfig } from "../handler_base/natsutil.ts";

function printResults(results: readonly StreamResult[], dryRun: boolean): void {
  const width = Math.max(...results.map((r) => r.name.length));
  for (const r of results) {
    const action = dryRun && r.action !== "failed" && r.action !== "unchanged"
      ? `would be ${r.action}`
      : r.action;
    const details = [...r.changes, ...r.kept.map((k) => `kept ${k}`), r.error ?? ""]
      .filter(Boolean).join("; ");
    console.log(`${r.name.padEnd(width)}  ${action}${details ? `: ${details}` : ""}`);
  }
}

async function main(args: string[]): Promise<number> {
  const dryRun = args.includes("--dry-run");
  const names = args.filter((a) => a !== "--dry-run");
  const unknown = names.filter((n) => !(n in STREAMS));
  if (unknown.length > 0 || names.some((n) => n.startsWith("-"))) {
    console.error(
      `Cannot ensure streams: unknown ${unknown.join(", ")}; known: ${
        Object.keys(STREAMS).join(", ")
      }`,
    );
    return 2;
  }
  let config;
  try {
    config = loadConfig(
      { ...natsConfigSpec, jetstreamReplicas: consumeConfigSpec.jetstreamReplicas },
      Deno.env,
    );
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 78;
  }
  const nc = await connectNats({ ...natsOptionsFromConfig(config), name: "ensure-streams" });
  try {
    printResults(
      await ensureStreams(nc, {
        ...(names.length ? { only: names } : {}),
        replicas: config.jetstreamReplicas,
        dryRun,
      }),
      dryRun,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof StreamSetupError)) throw error;
    printResults(error.results, dryRun);
    return 1;
  } finally {
    await nc.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
