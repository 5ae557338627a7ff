import assert from "node:assert/strict";
import { wrapPcmAsWav } from "../clients/wav.ts";
import { defineEndpoint } from "../handler.ts";
import {
  AudioEncoding,
  PipelineStatusSchema,
  PipelineTriggerSchema,
  TTSAudioChunkSchema,
  VoiceRequestSchema,
  VoiceResponseSchema,
} from "../messages.ts";
import { delay } from "../async.ts";
import { startTestService } from "../testing/mod.ts";
import { runIn, tempDir } from "./testdata/cli_helpers.ts";

/**
 * A voice-assistant stand-in: two audio chunks, then the VoiceResponse (without audio), with
 * an error beside the answer, or only an error.
 */
const voiceEndpointWith = (error?: { message: string; withAnswer: boolean }) =>
  defineEndpoint({
    subject: "ai.voice.request",
    request: VoiceRequestSchema,
    response: VoiceResponseSchema,
    handle(request, ctx) {
      const subject = `ai.voice.response.audio.${request.requestId}`;
      const format = {
        sampleRate: 16000,
        channels: 1,
        bitDepth: 16,
        audioEncoding: AudioEncoding.PCM_S16LE,
      };
      ctx.publish(subject, TTSAudioChunkSchema, {
        chunkIndex: 0,
        audio: new Uint8Array(320),
        ...format,
      });
      ctx.publish(subject, TTSAudioChunkSchema, {
        chunkIndex: 1,
        audio: new Uint8Array(160),
        isLast: true,
        totalChunks: 2,
        ...format,
      });
      return Promise.resolve({
        requestId: request.requestId,
        transcription: `heard ${request.audio.length} bytes`,
        response: error && !error.withAnswer ? "" : "The lights are on.",
        sources: [{ text: "Lights manual", score: 0.9 }],
        error: error?.message ?? "",
      });
    },
  });
const voiceEndpoint = voiceEndpointWith();

Deno.test("cli voice prints transcription, answer and time to first audio, and writes the chunks as WAV", async () => {
  await using service = await startTestService({
    name: "voice-assistant",
    endpoints: [voiceEndpoint],
  });
  await using dir = await tempDir();
  const input = `${dir.path}/q.wav`;
  const output = `${dir.path}/a.wav`;
  await Deno.writeFile(input, wrapPcmAsWav(new Uint8Array(1000)));
  const run = await runIn(service.url, ["voice", input, "-o", output]);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split("\n");
  assert.equal(lines[0], "transcription: heard 1044 bytes");
  assert.equal(lines[1], "answer: The lights are on.");
  assert.match(lines[2]!, /^time to first audio: \d+\.\d\d s \(answer complete after/);
  const wav = await Deno.readFile(output);
  assert.equal(wav.length, 44 + 480);

  const json = await runIn(service.url, ["voice", input, "-o", output, "--json"]);
  assert.deepEqual(json.events.map((e) => e.type), ["first_audio", "result"]);
  assert.equal(json.events[1]!.chunks, 2);
});

/** A pipeline-bridge stand-in: answers `submitted`, then publishes running and a terminal status. */
function pipelineEndpoint(terminal: string, options: { pendingBeforeReply?: boolean } = {}) {
  return defineEndpoint({
    subject: "ai.pipeline.trigger",
    request: PipelineTriggerSchema,
    response: PipelineStatusSchema,
    handle(trigger, ctx) {
      const subject = `ai.pipeline.status.${trigger.requestId}`;
      const base = {
        requestId: trigger.requestId,
        pipeline: trigger.pipeline,
        engine: "argo",
        runId: `wf-${trigger.parameters.batch ?? "x"}`,
      };
      if (trigger.pipeline === "nope") {
        return Promise.resolve({
          ...base,
          status: "error",
          error: "unknown pipeline",
          availablePipelines: ["document-ingestion"],
        });
      }
      // Published after the reply, as a watcher would, a little later.
      setTimeout(() => {
        ctx.publish(subject, PipelineStatusSchema, { ...base, status: "running" });
        ctx.publish(subject, PipelineStatusSchema, { ...base, status: terminal });
      }, options.pendingBeforeReply ? 300 : 50);
      const submitted = { ...base, status: "submitted" };
      ctx.publish(subject, PipelineStatusSchema, submitted);
      if (options.pendingBeforeReply) {
        // pipeline-bridge's follower can publish `pending` before the reply reaches the client.
        ctx.publish(subject, PipelineStatusSchema, { ...base, status: "pending" });
        return delay(100).then(() => submitted);
      }
      return Promise.resolve(submitted);
    },
  });
}

Deno.test("cli voice: an error fails the command with exit code 1, beside an answer or not", async () => {
  await using dir = await tempDir();
  const input = `${dir.path}/q.wav`;
  await Deno.writeFile(input, wrapPcmAsWav(new Uint8Array(1000)));
  for (const withAnswer of [true, false]) {
    await using service = await startTestService({
      name: "voice-assistant",
      endpoints: [voiceEndpointWith({ message: "Cannot synthesize: TTS is down", withAnswer })],
    });
    const run = await runIn(service.url, ["voice", input, "-o", `${dir.path}/none.wav`]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /^error: Cannot answer by voice: voice-assistant answered: Cannot synthesize/m,
    );
  }
});

Deno.test("cli pipeline follows the status to succeeded", async () => {
  await using service = await startTestService({
    name: "pipeline-bridge",
    endpoints: [pipelineEndpoint("succeeded")],
  });
  const run = await runIn(service.url, ["pipeline", "document-ingestion", "batch=8"]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split("\n").map((l) => l.split(/\s+/)[0]), [
    "submitted",
    "running",
    "succeeded",
  ]);
  assert.match(run.stdout, /document-ingestion on argo, run wf-8/);
  const json = await runIn(service.url, ["pipeline", "document-ingestion", "--json"]);
  const result = json.events.at(-1)!;
  assert.deepEqual(
    [result.type, result.status, result.statuses],
    ["result", "succeeded", ["submitted", "running", "succeeded"]],
  );
});

Deno.test("cli pipeline: the reply that comes after statuses of the subject is not shown twice", async () => {
  await using service = await startTestService({
    name: "pipeline-bridge",
    endpoints: [pipelineEndpoint("succeeded", { pendingBeforeReply: true })],
  });
  const json = await runIn(service.url, ["pipeline", "document-ingestion", "--json"]);
  const result = json.events.at(-1)!;
  assert.deepEqual(result.statuses, ["submitted", "pending", "running", "succeeded"]);
  assert.equal(json.events.filter((e) => e.type === "status").length, 4);
});

Deno.test("cli pipeline: failed and unknown pipelines are exit code 1; bad parameters exit code 2", async () => {
  await using service = await startTestService({
    name: "pipeline-bridge",
    endpoints: [pipelineEndpoint("failed")],
  });
  const failed = await runIn(service.url, ["pipeline", "batch-inference"]);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /^error: Pipeline batch-inference ended failed$/m);
  const unknown = await runIn(service.url, ["pipeline", "nope"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stdout, /available: document-ingestion/);
  const bad = await runIn(service.url, ["pipeline", "x", "novalue"]);
  assert.equal(bad.code, 2);
});
