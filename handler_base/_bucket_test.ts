import assert from "node:assert/strict";
import { jetstream, JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { openBucket } from "./_bucket.ts";
import { connectNats } from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";

/** A client whose creates answer in turn from `answers` (an error is thrown). */
function scriptedKvm(answers: (KV | Error)[]): Pick<Kvm, "create"> & { calls: number } {
  return {
    calls: 0,
    create(): Promise<KV> {
      const answer = answers[this.calls++];
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer!);
    },
  };
}

const raced = (code: number) =>
  new JetStreamApiError({ err_code: code, code: 400, description: "lost the race" });

Deno.test("openBucket: a create refused because another replica made the stream meanwhile is tried once more", async () => {
  const bucket = {} as KV;
  for (const code of [10065, 10058]) {
    const kvm = scriptedKvm([raced(code), bucket]);
    assert.equal(await openBucket(kvm, "b", { history: 1 }), bucket);
    assert.equal(kvm.calls, 2);
  }
  // Refused twice: the second refusal is the answer.
  const twice = scriptedKvm([raced(10065), raced(10065), bucket]);
  await assert.rejects(openBucket(twice, "b", {}), JetStreamApiError);
  assert.equal(twice.calls, 2);
  // Any other refusal or failure is the answer at once.
  for (const error of [raced(10039), new Error("no responders")]) {
    const kvm = scriptedKvm([error, bucket]);
    await assert.rejects(openBucket(kvm, "b", {}), (e) => e === error);
    assert.equal(kvm.calls, 1);
  }
});

Deno.test("openBucket: on a real server, a stream that owns the bucket's subjects is still refused", async () => {
  await using server = await startNatsServer();
  const nc = await connectNats({ servers: server.url, name: "t" });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "OTHER", subjects: ["$KV.taken.>"] });
    const kvm = new Kvm(jetstream(nc));
    await assert.rejects(
      openBucket(kvm, "taken", { history: 1 }),
      (e) => e instanceof JetStreamApiError && e.code === 10065,
    );
    const free = await openBucket(kvm, "free", { history: 1 });
    await free.put("k", "v");
    assert.equal((await free.get("k"))?.string(), "v");
  } finally {
    await nc.close();
  }
});
