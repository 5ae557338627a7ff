/**
 * A client of an OpenAI-compatible chat completions server (vLLM):
 * `POST /v1/chat/completions`, whole answers and streamed deltas.
 *
 * Both calls are stateless, so both are retried on connection errors and
 * 429/502/503/504, but a stream only until its response head arrived: once
 * the first byte is in, a failure is reported, never retried or hidden. A
 * stream that ends without a `finish_reason` and without `data: [DONE]` has
 * been cut and fails with {@linkcode BackendUnavailableError}; one that ends
 * with a `finish_reason` but no `[DONE]` is complete.
 *
 * When no model is configured, requests carry no `model` field and the
 * server answers with the model it serves (vLLM does); set `model` for
 * servers that require one.
 *
 * Requires `--allow-net` to the LLM host.
 *
 * @example Stream an answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeLlm({ reply: "Hello there!" }); // stands in for vLLM
 * const llm = createLlmClient({ baseUrl: server.url, model: "qwen" });
 * const stream = llm.stream([{ role: "user", content: "Hi" }]);
 * const deltas: string[] = [];
 * for await (const delta of stream) deltas.push(delta);
 * assert.deepEqual(deltas, ["Hello ", "there!"]);
 * assert.equal(stream.finishReason, "stop");
 * ```
 *
 * @module
 */
import { type Config, envVar, type VarSpec } from "../config.ts";
import {
  BackendError,
  BackendUnavailableError,
  InvalidArgumentError,
  InvalidResponseError,
} from "../errors.ts";
import {
  backendUrlVar,
  type ClientFromConfigOptions,
  type ClientOptions,
  createHttpClient,
  type HttpClient,
} from "./http.ts";
import { truncateText } from "../text.ts";
import { parseSse } from "./sse.ts";
import { isRecord } from "./_json.ts";

/** Options of {@linkcode createLlmClient}. */
export interface LlmClientOptions extends ClientOptions {
  /**
   * The model requests ask for.
   *
   * @default unset: no `model` field is sent and the server picks its model
   */
  model?: string;
  /**
   * The model of calls made with `premium: true`.
   *
   * @default unset: premium calls use `model`
   */
  premiumModel?: string;
  /**
   * The most tokens an answer may have (`max_tokens`).
   *
   * @default 1024
   */
  maxTokens?: number;
  /**
   * The sampling temperature.
   *
   * @default 0.7
   */
  temperature?: number;
}

/** One chat turn. */
export interface ChatMessage {
  /** Who speaks. */
  role: "system" | "user" | "assistant";
  /** What is said. */
  content: string;
}

/** Options of one LLM call. */
export interface GenerateOptions {
  /**
   * Use the premium model (when the client has one).
   *
   * @default false
   */
  premium?: boolean;
  /**
   * The model of this call, overriding `premium` and the client's model.
   *
   * @default the client's model (or premium model)
   */
  model?: string;
  /**
   * The most tokens of the answer.
   *
   * @default the client's `maxTokens`
   */
  maxTokens?: number;
  /**
   * The sampling temperature.
   *
   * @default the client's `temperature`
   */
  temperature?: number;
  /**
   * Cancels the call (the request is closed).
   *
   * @default none
   */
  signal?: AbortSignal;
}

/** A whole answer. */
export interface Generation {
  /** The answer text (`choices[0].message.content`). */
  text: string;
  /** Why generation stopped (`"stop"`, `"length"`, ...), or null when the server did not say. */
  finishReason: string | null;
  /** The model that answered (as the server reports it, else the one asked for, else ""). */
  model: string;
}

/**
 * A streamed answer: iterate it for the text deltas (empty deltas are
 * skipped); when the loop has ended normally, `finishReason` and `model` are
 * set. It can be iterated once. Leaving the loop early or disposing it closes
 * the request.
 */
export interface LlmStream extends AsyncIterable<string>, AsyncDisposable {
  /**
   * Why generation stopped: undefined while the stream runs, then the last
   * `finish_reason` received, or null when it ended with `[DONE]` and none.
   */
  readonly finishReason: string | null | undefined;
  /** The model the chunks named, once one did. */
  readonly model: string | undefined;
}

/** A chat completions client. */
export interface LlmClient {
  /**
   * Generates a whole answer.
   *
   * @param messages The conversation, at least one message.
   * @param options Model, limits and signal.
   * @returns The answer.
   * @throws {InvalidArgumentError} When `messages` is empty.
   * @throws {BackendUnavailableError | BackendError | InvalidResponseError | TimeoutError} When the call fails.
   */
  generate(messages: readonly ChatMessage[], options?: GenerateOptions): Promise<Generation>;
  /**
   * Streams an answer. The request starts when iteration starts.
   *
   * @param messages The conversation, at least one message.
   * @param options Model, limits and signal.
   * @returns The stream of deltas; its iteration throws the typed errors of
   *   {@linkcode LlmClient.generate}, and {@linkcode BackendUnavailableError}
   *   when the stream is cut before it finished.
   * @throws {InvalidArgumentError} When `messages` is empty.
   */
  stream(messages: readonly ChatMessage[], options?: GenerateOptions): LlmStream;
}

const BACKEND = "llm";
const PATH = "/v1/chat/completions";

/**
 * Creates a chat completions client.
 *
 * @param options The base URL, models, defaults and HTTP options.
 * @returns The client.
 * @throws {TypeError} When `baseUrl` is not an absolute URL.
 *
 * @example Generate a greeting with the premium model
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLlmClient } from "@homelab/handler-base/clients/llm";
 * import { startFakeLlm } from "@homelab/handler-base/testing";
 *
 * await using server = startFakeLlm({ reply: "Hello, Ada!" });
 * const llm = createLlmClient({ baseUrl: server.url, model: "small", premiumModel: "large" });
 * const { text, finishReason, model } = await llm.generate(
 *   [{ role: "user", content: "Greet Ada in one sentence." }],
 *   { premium: true, maxTokens: 60 },
 * );
 * assert.deepEqual([text, finishReason, model], ["Hello, Ada!", "stop", "large"]);
 * ```
 */
export function createLlmClient(options: LlmClientOptions): LlmClient {
  const http = createHttpClient(BACKEND, options);
  const defaults = {
    model: options.model,
    premiumModel: options.premiumModel,
    maxTokens: options.maxTokens ?? 1024,
    temperature: options.temperature ?? 0.7,
  };

  function requestBody(
    messages: readonly ChatMessage[],
    call: GenerateOptions,
    stream: boolean,
  ): { body: Record<string, unknown>; model: string | undefined } {
    if (messages.length === 0) {
      throw new InvalidArgumentError("Cannot call the LLM: the conversation is empty");
    }
    const model = call.model ??
      (call.premium && defaults.premiumModel ? defaults.premiumModel : defaults.model);
    const body: Record<string, unknown> = {
      messages: messages.map(({ role, content }) => ({ role, content })),
      max_tokens: call.maxTokens ?? defaults.maxTokens,
      temperature: call.temperature ?? defaults.temperature,
      stream,
    };
    if (model) body.model = model;
    return { body, model };
  }

  return {
    async generate(messages, call = {}) {
      const { body, model } = requestBody(messages, call, false);
      const answer = await http.json(PATH, { json: body, idempotent: true, signal: call.signal });
      const choice = isRecord(answer) && Array.isArray(answer.choices)
        ? answer.choices[0]
        : undefined;
      const message = isRecord(choice) ? choice.message : undefined;
      const content = isRecord(message) ? message.content : undefined;
      if (!isRecord(choice) || (typeof content !== "string" && content !== null)) {
        throw new InvalidResponseError(BACKEND, "choices[0].message.content is missing");
      }
      return {
        text: content ?? "",
        finishReason: typeof choice.finish_reason === "string" ? choice.finish_reason : null,
        model: isRecord(answer) && typeof answer.model === "string" ? answer.model : model ?? "",
      };
    },

    stream(messages, call = {}) {
      const { body } = requestBody(messages, call, true);
      return new ChatStream(http, body, call.signal);
    },
  };
}

class ChatStream implements LlmStream {
  finishReason: string | null | undefined;
  model: string | undefined;
  readonly #http: HttpClient;
  readonly #body: Record<string, unknown>;
  readonly #signal: AbortSignal | undefined;
  #iterator: AsyncGenerator<string, void, undefined> | undefined;

  constructor(http: HttpClient, body: Record<string, unknown>, signal: AbortSignal | undefined) {
    this.#http = http;
    this.#body = body;
    this.#signal = signal;
  }

  [Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.#iterator) throw new TypeError("Cannot iterate an LLM stream twice");
    this.#iterator = this.#run();
    return this.#iterator;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#iterator?.return();
  }

  async *#run(): AsyncGenerator<string, void, undefined> {
    await using body = await this.#http.stream(PATH, {
      json: this.#body,
      idempotent: true,
      signal: this.#signal,
      headers: { accept: "text/event-stream" },
    });
    const type = body.headers.get("content-type");
    if (type && !type.includes("text/event-stream")) {
      throw new InvalidResponseError(BACKEND, `the stream has content type ${type}`);
    }
    let finishReason: string | null | undefined;
    try {
      for await (const event of parseSse(body)) {
        if (event.data === "[DONE]") {
          this.finishReason = finishReason ?? null;
          return;
        }
        const chunk = parseChunk(event.data);
        if (typeof chunk.model === "string") this.model = chunk.model;
        if (chunk.finishReason !== undefined) finishReason = chunk.finishReason;
        if (chunk.delta) yield chunk.delta;
      }
    } catch (error) {
      if (error instanceof RangeError) {
        throw new InvalidResponseError(BACKEND, error.message, { cause: error });
      }
      throw error;
    }
    if (finishReason === undefined) {
      throw new BackendUnavailableError(BACKEND, {
        detail: "the stream ended before the answer was complete",
      });
    }
    this.finishReason = finishReason;
  }
}

function parseChunk(data: string): { delta: string; finishReason?: string; model?: string } {
  let chunk: unknown;
  try {
    chunk = JSON.parse(data);
  } catch (error) {
    throw new InvalidResponseError(BACKEND, "a stream event is not JSON", { cause: error });
  }
  if (!isRecord(chunk)) throw new InvalidResponseError(BACKEND, "a stream event is not an object");
  // vLLM reports failures inside the stream as an error object.
  const error = isRecord(chunk.error) ? chunk.error : chunk.object === "error" ? chunk : undefined;
  if (error) {
    const status = typeof error.code === "number" ? error.code : 0;
    const message = typeof error.message === "string" ? truncateText(error.message, 200) : "";
    throw new BackendError(BACKEND, { status, excerpt: message });
  }
  if (!Array.isArray(chunk.choices)) {
    throw new InvalidResponseError(BACKEND, "a stream event has no choices");
  }
  const result: { delta: string; finishReason?: string; model?: string } = { delta: "" };
  if (typeof chunk.model === "string") result.model = chunk.model;
  const choice = chunk.choices[0];
  // A usage-only chunk has no choices.
  if (!isRecord(choice)) return result;
  const delta = isRecord(choice.delta) ? choice.delta.content : undefined;
  if (typeof delta === "string") result.delta = delta;
  if (typeof choice.finish_reason === "string") result.finishReason = choice.finish_reason;
  return result;
}

/** The type of {@linkcode llmConfigSpec}. */
export type LlmConfigSpec = {
  /** `VLLM_URL`: the OpenAI-compatible LLM server. */
  readonly vllmUrl: VarSpec<string>;
  /** `LLM_MODEL`: the model requests ask for; unset lets the server pick. */
  readonly llmModel: VarSpec<string | undefined>;
  /** `LLM_PREMIUM_MODEL`: the model of premium users; unset uses `LLM_MODEL`. */
  readonly llmPremiumModel: VarSpec<string | undefined>;
  /** `LLM_MAX_TOKENS`: the longest answer in tokens. */
  readonly llmMaxTokens: VarSpec<number>;
  /** `LLM_TIMEOUT_MS`: one call (for streams: the head and each wait for a chunk). */
  readonly llmTimeoutMs: VarSpec<number>;
};

/**
 * The LLM's variables, declared once for every service that uses it:
 * `VLLM_URL` (SYSTEM.md section 6), `LLM_MODEL`, `LLM_PREMIUM_MODEL`,
 * `LLM_MAX_TOKENS` (1024) and `LLM_TIMEOUT_MS` (60 s).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { llmClientFromConfig, llmConfigSpec } from "@homelab/handler-base/clients/llm";
 *
 * const config = loadConfig(llmConfigSpec, { LLM_MODEL: "qwen" });
 * assert.deepEqual([config.vllmUrl, config.llmMaxTokens], ["http://llm-draft.ai-ml.svc.cluster.local:8000", 1024]);
 * const llm = llmClientFromConfig(config);
 * assert.equal(typeof llm.generate, "function");
 * ```
 */
export const llmConfigSpec: LlmConfigSpec = Object.freeze({
  vllmUrl: backendUrlVar("VLLM_URL", "http://llm-draft.ai-ml.svc.cluster.local:8000"),
  llmModel: envVar.string("LLM_MODEL"),
  llmPremiumModel: envVar.string("LLM_PREMIUM_MODEL"),
  llmMaxTokens: envVar.int("LLM_MAX_TOKENS", { default: 1024, min: 1 }),
  llmTimeoutMs: envVar.duration("LLM_TIMEOUT_MS", { default: 60_000 }),
});

/**
 * The LLM client a loaded {@linkcode llmConfigSpec} describes.
 *
 * @param config The loaded variables (a service's config that includes the spec).
 * @param options The logger.
 * @returns The client.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadConfig } from "@homelab/handler-base/config";
 * import { llmClientFromConfig, llmConfigSpec } from "@homelab/handler-base/clients/llm";
 *
 * const llm = llmClientFromConfig(loadConfig(llmConfigSpec, {}));
 * assert.equal(typeof llm.stream, "function");
 * ```
 */
export function llmClientFromConfig(
  config: Config<LlmConfigSpec>,
  options: ClientFromConfigOptions = {},
): LlmClient {
  return createLlmClient({
    ...options,
    baseUrl: config.vllmUrl,
    timeoutMs: config.llmTimeoutMs,
    maxTokens: config.llmMaxTokens,
    ...(config.llmModel ? { model: config.llmModel } : {}),
    ...(config.llmPremiumModel ? { premiumModel: config.llmPremiumModel } : {}),
  });
}
