/**
 * A TTS backend that is down looks like a backend that is down, not like
 * overload (issue #11.4): tts-module runs from its entry file with its
 * permission set, the fake XTTS stops under a steady stream of requests, and
 * the circuit breaker makes the callers learn `BackendUnavailable` at once
 * instead of queueing behind retries. Its state shows on `/ready` (which
 * stays 200: readiness follows NATS) and in `$SRV.STATS`, and it closes again
 * once the backend is back on the same port.
 */
import assert from "node:assert/strict";
import { delay } from "@homelab/handler-base/async";
import type { CircuitSnapshot } from "@homelab/handler-base/clients/circuit-breaker";
import type { StatsResponse } from "@homelab/handler-base/discovery";
import { RemoteError } from "@homelab/handler-base/errors";
import { TTSFullResponseSchema, TTSRequestSchema } from "@homelab/handler-base/messages";
import { connectNats, type NatsConnection, request } from "@homelab/handler-base/natsutil";
import {
  type FakeXtts,
  startFakeXtts,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";

const ROOT = new URL("../../", import.meta.url).pathname;
const ENTRY = new URL("../tts.ts", import.meta.url).pathname;

function synthesize(nc: NatsConnection, i: number) {
  return request(
    nc,
    `ai.voice.tts.request.load${i}`,
    TTSRequestSchema,
    {
      text: `Sentence number ${i}.`,
    },
    TTSFullResponseSchema,
    { timeout: 15_000 },
  );
}

/** The error type a request ended with, or "ok". */
async function outcome(nc: NatsConnection, i: number): Promise<string> {
  try {
    await synthesize(nc, i);
    return "ok";
  } catch (error) {
    return error instanceof RemoteError ? error.type : `other: ${error}`;
  }
}

async function ttsBreakerInStats(nc: NatsConnection): Promise<CircuitSnapshot | undefined> {
  const reply = await nc.request("$SRV.STATS.tts-module", "", { timeout: 5000 });
  const stats = reply.json<StatsResponse>();
  const endpoint = stats.endpoints.find((e) => e.name === "synthesize");
  return (endpoint?.data.backends as Record<string, CircuitSnapshot> | undefined)?.tts;
}

Deno.test("tts-module with its backend stopped under load answers BackendUnavailable, not Overloaded, and recovers", async () => {
  await using server = await startNatsServer({ jetstream: false });
  let xtts: FakeXtts = startFakeXtts();
  const port = Number(new URL(xtts.url).port);
  const dir = await Deno.makeTempDir();
  await using tts = await startServiceProcess({
    entry: ENTRY,
    flags: ["-P=tts-module", `--allow-read=${dir}`],
    cwd: ROOT,
    env: { NATS_URL: server.url, TTS_URL: xtts.url, TTS_VOICES_DIR: dir },
  });
  const nc = await connectNats({ servers: server.url, name: "load" });
  try {
    assert.equal(await outcome(nc, 0), "ok");
    const before = await tts.readiness();
    assert.equal(before?.status, 200);
    const details = before?.body.details as { backends: Record<string, CircuitSnapshot> };
    assert.equal(details.backends.tts?.state, "closed");

    await xtts.close();
    // An open stream of requests, about 100 a second, as a caller with no idea of the outage.
    const outcomes: Promise<string>[] = [];
    for (let i = 1; i <= 150; i++) {
      outcomes.push(outcome(nc, i));
      await delay(10);
    }
    const results = await Promise.all(outcomes);
    const count = (type: string) => results.filter((r) => r === type).length;
    const summary = JSON.stringify(Object.fromEntries(results.map((r) => [r, count(r)])));
    assert.ok(count("BackendUnavailable") >= 140, summary);
    assert.ok(count("Overloaded") <= 5, summary);

    // The outage shows, without taking the replica out of its Service.
    const during = await tts.readiness();
    assert.equal(during?.status, 200);
    const open = (during?.body.details as { backends: Record<string, CircuitSnapshot> }).backends;
    assert.equal(open.tts?.state, "open");
    assert.ok((open.tts?.consecutive_failures ?? 0) >= 5);
    assert.equal((await ttsBreakerInStats(nc))?.state, "open");
    assert.ok(tts.lines.some((line) => line.includes("Backend unreachable: circuit opened")));

    // The backend comes back on the same port; a probe closes the circuit.
    xtts = startFakeXtts({}, { port });
    let recovered = "";
    for (let i = 0; i < 300 && recovered !== "ok"; i++) {
      recovered = await outcome(nc, 1000 + i);
      if (recovered !== "ok") await delay(50);
    }
    assert.equal(recovered, "ok");
    const after = await tts.readiness();
    assert.equal(after?.status, 200);
    const closed = (after?.body.details as { backends: Record<string, CircuitSnapshot> }).backends;
    assert.equal(closed.tts?.state, "closed");
    assert.equal((await ttsBreakerInStats(nc))?.state, "closed");
  } finally {
    await nc.close();
    await tts.stop();
    await xtts.close();
    await Deno.remove(dir, { recursive: true });
  }
});
