/**
 * TTS_MAX_CHARS counts characters as code points (issue #11.3): astral
 * characters count once, and every code point of a combining sequence counts.
 */
import assert from "node:assert/strict";
import { createTtsClient } from "@homelab/handler-base/clients/tts";
import type { TypedEndpoint } from "@homelab/handler-base/handler";
import { createLogger } from "@homelab/handler-base/log";
import { TTSFullResponseSchema, TTSRequestSchema } from "@homelab/handler-base/messages";
import { callEndpoint, startFakeXtts } from "@homelab/handler-base/testing";
import { createTtsEndpoints } from "./handler.ts";
import { startVoiceRegistry } from "./voices.ts";

type RequestEndpoint = TypedEndpoint<typeof TTSRequestSchema, typeof TTSFullResponseSchema>;

const LIMIT = "Cannot synthesize speech: the text is longer than 40 characters";

Deno.test("TTS_MAX_CHARS counts code points over astral characters and combining sequences", async () => {
  await using xtts = startFakeXtts();
  const dir = await Deno.makeTempDir();
  const tts = createTtsClient({ baseUrl: xtts.url, retries: 0, timeoutMs: 10_000 });
  const logger = createLogger({ service: "test", level: "error", write: () => {} });
  using voices = await startVoiceRegistry({ dir, tts, logger, refreshMs: 0 });
  const endpoint = createTtsEndpoints({ tts, voices, maxChars: 40, maxReferenceBytes: 1000 })
    .find((e) => e.subject === "ai.voice.tts.request.>") as RequestEndpoint;
  const cases: [string, string, boolean][] = [
    ["40 emoji (80 UTF-16 units)", "\u{1F600}".repeat(40), true],
    ["41 emoji", "\u{1F600}".repeat(41), false],
    ["20 flags (40 code points, 20 clusters)", "\u{1F1EB}\u{1F1F7}".repeat(20), true],
    ["20 accented letters", "e\u0301".repeat(20), true],
    ["20 accented letters and one more mark", "e\u0301".repeat(20) + "\u0301", false],
    ["a 41-code-point cluster (a letter and 40 marks)", "Z" + "\u0336".repeat(40), false],
  ];
  try {
    for (const [what, text, accepted] of cases) {
      // Streamed: a full answer would ask ctx.nc for the max payload, which an
      // in-process call has not.
      const { published, errorResponse, error } = await callEndpoint(endpoint, {
        text,
        stream: true,
      }, {
        subject: "ai.voice.tts.request.s1",
      });
      if (accepted) {
        assert.equal(errorResponse, undefined, `${what}: ${error}`);
        assert.ok(published.some((m) => m.subject === "ai.voice.tts.audio.s1"), what);
      } else {
        assert.equal(errorResponse?.type, "InvalidArgument", what);
        assert.equal(errorResponse?.message, LIMIT, what);
      }
    }
    assert.equal(xtts.requests.filter((r) => r.path === "/tts_stream").length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
