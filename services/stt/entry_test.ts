import assert from "node:assert/strict";
import { parseWav } from "@homelab/handler-base/clients/wav";
import {
  decode,
  ErrorResponseSchema,
  MSG_TYPE_HEADER,
  STTStreamMessageSchema,
  type STTTranscription,
  STTTranscriptionSchema,
} from "@homelab/handler-base/messages";
import { connectNats, publish } from "@homelab/handler-base/natsutil";
import {
  eventually,
  type FakeWhisper,
  type NatsServer,
  type ServiceProcess,
  startFakeWhisper,
  startNatsServer,
  startServiceProcess,
} from "@homelab/handler-base/testing";
import { Kvm } from "@nats-io/kv";
import { mixStream, speak } from "./test_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const ENTRY = new URL("../stt.ts", import.meta.url).pathname;
const CLAIM_TTL_MS = 5000;

/** A replica with its own fake Whisper, whose transcripts name the replica. */
async function startReplica(server: NatsServer, name: string) {
  const whisper = startFakeWhisper({
    transcript: ({ file }) => {
      const { data, format } = parseWav(file);
      return `${name}:${Math.round((data.length / 2 / format.sampleRate) * 1000)}`;
    },
  });
  const process = await startServiceProcess({
    entry: ENTRY,
    flags: ["-P=stt-module"],
    cwd: ROOT,
    env: {
      NATS_URL: server.url,
      WHISPER_URL: whisper.url,
      STT_CLAIM_TTL_MS: String(CLAIM_TTL_MS),
      STT_PARTIAL_MS: "0",
    },
  });
  await process.waitForReadiness(200);
  const started = process.logged("Session affinity on");
  return { name, whisper, process, replicaId: String(started?.replica_id) };
}

type Replica = { name: string; whisper: FakeWhisper; process: ServiceProcess; replicaId: string };

/** Waits until every replica's `/ready` details show `count` members of the affinity. */
async function waitForMembers(replicas: readonly Replica[], count: number): Promise<void> {
  await eventually(async () => {
    for (const replica of replicas) {
      const readiness = await replica.process.readiness();
      const details = readiness?.body.details as { affinity?: { members?: number } } | undefined;
      if (details?.affinity?.members !== count) return false;
    }
    return true;
  }, { timeoutMs: 3 * CLAIM_TTL_MS });
}

Deno.test("services/stt.ts with -P=stt-module: 30 sessions over 3 replicas land whole on one; a killed replica's sessions move, an added one takes none", async () => {
  await using server = await startNatsServer();
  const replicas: Replica[] = [];
  const client = await connectNats({ servers: server.url, name: "client" });
  try {
    for (const name of ["a", "b", "c"]) replicas.push(await startReplica(server, name));
    // Balancing ranks the replicas each one has seen: start once all three see each other.
    await waitForMembers(replicas, 3);
    const first = await speak("turn on the kitchen lights");
    const second = await speak("and close the blinds");
    const part1 = mixStream([400, first, 900]).pcm;
    const part2 = mixStream([300, second, 900]).pcm;
    const finals = new Map<string, STTTranscription[]>();
    const errors: string[] = [];
    const sub = client.subscribe("ai.voice.transcription.>", {
      callback: (_e, msg) => {
        if (msg.headers?.get(MSG_TYPE_HEADER) === ErrorResponseSchema.typeName) {
          errors.push(decode(ErrorResponseSchema, msg.data).message);
          return;
        }
        const t = decode(STTTranscriptionSchema, msg.data);
        if (t.isFinal) finals.set(t.sessionId, [...(finals.get(t.sessionId) ?? []), t]);
      },
    });
    const sessions = Array.from({ length: 30 }, (_, i) => `sess${i}`);
    const send = (pcm: Uint8Array) => {
      for (let offset = 0; offset < pcm.length; offset += 1280) {
        for (const sid of sessions) {
          publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, {
            type: "chunk",
            audio: pcm.subarray(offset, offset + 1280),
          });
        }
      }
    };
    const until = async (check: () => boolean, what: string, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > deadline) {
          throw new Error(`Timed out: ${what}; finals ${JSON.stringify([...finals.keys()])}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    for (const sid of sessions) {
      publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, { type: "start" });
    }
    send(part1);
    await client.flush();
    await until(() => sessions.every((s) => finals.get(s)?.length === 1), "first finals");
    const ownerOf = (sid: string) => finals.get(sid)![0]!.transcript.split(":")[0]!;
    const owners = new Set(sessions.map(ownerOf));
    assert.ok(owners.size >= 2, `sessions spread over ${[...owners]}`);

    // A replica joins: it takes none of the running sessions.
    const added = await startReplica(server, "d");
    replicas.push(added);
    // A replica dies without a word.
    const victim = replicas.find((r) => sessions.some((s) => ownerOf(s) === r.name))!;
    await victim.process.stop("SIGKILL");
    // Its claims expire after the TTL: wait for that (the bucket says when).
    const kv = await new Kvm(client).open("stt_sessions");
    const deadline = Date.now() + 10_000;
    for (;;) {
      const keys = await Array.fromAsync(await kv.keys());
      let held = 0;
      for (const key of keys) {
        const entry = await kv.get(key);
        if (entry?.operation === "PUT" && entry.string() === victim.replicaId) held++;
      }
      if (held === 0) break;
      if (Date.now() > deadline) {
        throw new Error(`${held} claims of the dead replica never expired`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    send(part2);
    for (const sid of sessions) {
      publish(client, `ai.voice.stream.${sid}`, STTStreamMessageSchema, { type: "end" });
    }
    await client.flush();
    await until(() => sessions.every((s) => (finals.get(s)?.length ?? 0) >= 2), "second finals");
    // Stop the live replicas (they flush), so any duplicate would have arrived.
    for (const r of replicas) if (r !== victim) await r.process.stop("SIGTERM");
    await client.flush();
    const calls = replicas.reduce((n, r) => n + r.whisper.requests.length, 0);
    const repeated = sessions.filter((s) => finals.get(s)!.length !== 2)
      .map((s) => `${s}: ${finals.get(s)!.map((t) => `${t.transcript}#${t.sequence}`)}`);
    assert.equal(
      calls,
      60,
      `each utterance of each session reached Whisper once; calls per replica ${
        replicas.map((r) => `${r.name} ${r.whisper.requests.length}`)
      }; sessions without exactly 2 finals: ${repeated.join("; ") || "none"}; handled unclaimed ${
        replicas.map((r) =>
          `${r.name} ${
            r.process.lines.filter((l) => l.includes("handling it here unclaimed")).length
          }`
        )
      }`,
    );
    for (const sid of sessions) {
      const list = finals.get(sid)!;
      assert.equal(list.length, 2, `${sid}: ${list.map((t) => t.transcript)}`);
      const [one, two] = list.map((t) => t.transcript.split(":")[0]);
      if (one === victim.name) {
        assert.notEqual(two, victim.name, `${sid} reopened on a live replica`);
        assert.deepEqual(list.map((t) => t.sequence), [0, 0]); // a new session there
      } else {
        assert.equal(two, one, `${sid} stayed whole on ${one}`);
        assert.deepEqual(list.map((t) => t.sequence), [0, 1]);
      }
      assert.notEqual(one, "d", "the added replica took no running session");
    }
    sub.unsubscribe();
    assert.deepEqual(errors, []);
    // Each replica's start ends with opening the claims bucket, which its readiness waits for.
    for (const r of replicas) {
      const phases = r.process.logged("Started")?.phases_ms ?? {};
      assert.equal(Object.keys(phases).at(-1), "on_start", r.name);
    }
  } finally {
    await client.close();
    for (const r of replicas) {
      await r.process.stop("SIGTERM");
      await r.whisper.close();
    }
  }
});
