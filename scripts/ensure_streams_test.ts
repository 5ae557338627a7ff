import assert from "node:assert/strict";
import { jetstream } from "@nats-io/jetstream";
import { connectNats } from "../handler_base/natsutil.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";

const SCRIPT = new URL("./ensure_streams.ts", import.meta.url).pathname;

/** Runs the script with the permissions its doc names. */
async function run(url: string, ...args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net",
      "--allow-env=NATS_URL,NATS_USER,NATS_PASSWORD,NATS_TOKEN,NATS_CREDS,NATS_TLS_CA",
      SCRIPT,
      ...args,
    ],
    env: { NATS_URL: url },
  }).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

Deno.test("ensure_streams.ts plans, creates, then finds nothing to change", async () => {
  await using server = await startNatsServer({ jetstream: true });
  const dry = await run(server.url, "--dry-run", "AI_PIPELINE");
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^AI_PIPELINE {2}would be created: subjects ai\.pipeline\.trigger/);

  const nc = await connectNats({ servers: server.url, name: "check" });
  const jsm = await jetstream(nc).jetstreamManager();
  assert.deepEqual(await jsm.streams.names().next(), [], "a dry run creates nothing");

  const first = await run(server.url);
  assert.equal(first.code, 0, first.err);
  assert.equal(first.out.match(/ created: /g)?.length, 6, first.out);
  const second = await run(server.url);
  assert.equal(second.out.match(/ unchanged/g)?.length, 6, second.out);

  const bad = await run(server.url, "NO_SUCH_STREAM");
  assert.equal(bad.code, 2);
  assert.match(bad.err, /unknown NO_SUCH_STREAM/);
  await nc.close();
});
