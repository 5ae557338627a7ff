import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "@homelab/handler-base/config";
import { voiceModuleConfigSpec, voiceOptionsFromConfig } from "./config.ts";
import { DEFAULT_VOICE_SYSTEM_PROMPT } from "./pipeline.ts";

/** What a call throws (fails when it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  assert.fail("it did not throw");
}

Deno.test("voiceOptionsFromConfig() passes the VOICE_* settings to the handler", () => {
  const options = voiceOptionsFromConfig(loadConfig(voiceModuleConfigSpec, {
    VOICE_ENABLE_RAG: "false",
    VOICE_TTS_SPEAKER: "Ana Florence",
    VOICE_LANGUAGE: "de-DE",
    COLLECTION_NAME: "docs",
  }));
  assert.equal(options.enableRag, false);
  assert.equal(options.speaker, "Ana Florence");
  assert.equal(options.defaultLanguage, "de");
  assert.equal(options.collection, "docs");
  assert.equal(options.systemPrompt, DEFAULT_VOICE_SYSTEM_PROMPT);
  assert.deepEqual(
    [options.maxAudioBytes, options.minSentenceChars, options.maxSentenceChars],
    [4 * 1024 * 1024, 20, 220],
  );
});

Deno.test("voiceOptionsFromConfig() names every contradictory or unusable variable", () => {
  const config = loadConfig(voiceModuleConfigSpec, {
    VOICE_MIN_SENTENCE_CHARS: "50",
    VOICE_MAX_SENTENCE_CHARS: "50",
    VOICE_LANGUAGE: "English",
  });
  const error = thrown(() => voiceOptionsFromConfig(config));
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(
    (error as ConfigError).problems.map((p) => p.name),
    ["VOICE_MAX_SENTENCE_CHARS", "VOICE_LANGUAGE"],
  );
});
