import assert from "node:assert/strict";
import {
  type Context,
  type Span,
  type SpanAttributeValue,
  type SpanStatus,
  SpanStatusCode,
  trace,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { BackendUnavailableError, InvalidArgumentError } from "../errors.ts";
import { startFakeEmbeddings, startFakeMilvus, startFakeReranker } from "../testing/mod.ts";
import { createEmbeddingsClient } from "./embeddings.ts";
import { createMilvusClient } from "./milvus.ts";
import { createLogger } from "../log.ts";
import { type RagClients, retrieve, retrieveOrDegrade } from "./rag.ts";
import { createRerankerClient } from "./reranker.ts";
import { deadline } from "../async.ts";

interface FinishedSpan {
  name: string;
  parent: string | undefined;
  tracer: string;
  attributes: Record<string, SpanAttributeValue>;
  status: SpanStatus | undefined;
  exceptions: number;
}

/** A tracer provider that keeps finished spans in memory, with their parent's name. */
function recordingProvider(finished: FinishedSpan[]): TracerProvider {
  let nextId = 1;
  return {
    getTracer(tracerName: string): Tracer {
      const startSpan = (name: string, _options?: unknown, context?: Context): Span => {
        const parentSpan = context ? trace.getSpan(context) : undefined;
        const record: FinishedSpan = {
          name,
          parent: (parentSpan as unknown as { spanName?: string } | undefined)?.spanName,
          tracer: tracerName,
          attributes: {},
          status: undefined,
          exceptions: 0,
        };
        const spanId = (nextId++).toString(16).padStart(16, "0");
        const span = {
          spanName: name,
          spanContext: () => ({ traceId: "1".repeat(32), spanId, traceFlags: 1 }),
          setAttribute(key: string, value: SpanAttributeValue) {
            record.attributes[key] = value;
            return span;
          },
          setAttributes(attributes: Record<string, SpanAttributeValue>) {
            Object.assign(record.attributes, attributes);
            return span;
          },
          addEvent: () => span,
          addLink: () => span,
          addLinks: () => span,
          setStatus(status: SpanStatus) {
            record.status = status;
            return span;
          },
          updateName: () => span,
          end: () => void finished.push(record),
          isRecording: () => true,
          recordException: () => void record.exceptions++,
        };
        return span as unknown as Span;
      };
      return { startSpan, startActiveSpan: () => assert.fail("not used") } as unknown as Tracer;
    },
  };
}

async function withTracing(fn: (spans: FinishedSpan[]) => Promise<void>): Promise<void> {
  const spans: FinishedSpan[] = [];
  assert.ok(trace.setGlobalTracerProvider(recordingProvider(spans)));
  try {
    await fn(spans);
  } finally {
    trace.disable();
  }
}

const noWait = { sleep: () => Promise.resolve() };

function clients(urls: { embeddings: string; milvus: string; reranker?: string }): RagClients {
  return {
    embeddings: createEmbeddingsClient({ baseUrl: urls.embeddings, ...noWait }),
    milvus: createMilvusClient({ baseUrl: urls.milvus, ...noWait }),
    reranker: urls.reranker
      ? createRerankerClient({ baseUrl: urls.reranker, ...noWait })
      : undefined,
  };
}

const HITS = [
  { id: 1, text: "Cakes are sweet.", distance: 0.9 },
  { id: 2, text: "NATS is a message bus.", distance: 0.8 },
  { id: 3, text: "   ", distance: 0.75 },
  { id: 4, text: "JetStream stores NATS messages.", distance: 0.7 },
];

Deno.test("retrieve() embeds, searches and formats the context, with one span per step", async () => {
  await using embeddings = startFakeEmbeddings({ dimensions: 4 });
  await using milvus = startFakeMilvus({ hits: HITS });
  await withTracing(async (spans) => {
    const result = await retrieve(
      "What is NATS?",
      clients({ embeddings: embeddings.url, milvus: milvus.url }),
      {
        topK: 4,
        collection: "docs",
      },
    );
    assert.deepEqual(result.sources, [
      { text: "Cakes are sweet.", score: 0.9 },
      { text: "NATS is a message bus.", score: 0.8 },
      { text: "JetStream stores NATS messages.", score: 0.7 },
    ]);
    assert.equal(
      result.context,
      "[1] Cakes are sweet.\n\n[2] NATS is a message bus.\n\n[3] JetStream stores NATS messages.",
    );
    const search = milvus.requests[0]?.json as {
      data: number[][];
      limit: number;
      collectionName: string;
    };
    assert.deepEqual(search.data[0], embeddings.vectorOf("What is NATS?"));
    assert.equal(search.limit, 4);
    assert.equal(search.collectionName, "docs");

    assert.deepEqual(spans.map((s) => [s.name, s.parent]), [
      ["rag.embed", "rag.retrieve"],
      ["rag.search", "rag.retrieve"],
      ["rag.retrieve", undefined],
    ]);
    assert.ok(spans.every((s) => s.tracer === "@homelab/handler-base"));
    assert.ok(spans.every((s) => typeof s.attributes["rag.duration_ms"] === "number"));
    assert.equal(spans[0]?.attributes["rag.dimensions"], 4);
    assert.equal(spans[1]?.attributes["rag.hits"], 3);
    assert.deepEqual(spans[2]?.attributes["rag.sources"], 3);
  });
});

Deno.test("retrieve() reranks against the query and keeps the best", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus({ hits: HITS });
  await using reranker = startFakeReranker();
  await withTracing(async (spans) => {
    const urls = { embeddings: embeddings.url, milvus: milvus.url, reranker: reranker.url };
    const result = await retrieve("NATS messages", clients(urls), { rerank: true, keep: 2 });
    assert.deepEqual(result.sources, [
      { text: "JetStream stores NATS messages.", score: 1 },
      { text: "NATS is a message bus.", score: 0.5 },
    ]);
    assert.equal(
      result.context,
      "[1] JetStream stores NATS messages.\n\n[2] NATS is a message bus.",
    );
    assert.deepEqual(reranker.requests[0]?.json, {
      query: "NATS messages",
      documents: ["Cakes are sweet.", "NATS is a message bus.", "JetStream stores NATS messages."],
      top_n: 2,
    });
    const rerank = spans.find((s) => s.name === "rag.rerank");
    assert.equal(rerank?.parent, "rag.retrieve");
    assert.deepEqual([rerank?.attributes["rag.candidates"], rerank?.attributes["rag.kept"]], [
      3,
      2,
    ]);
  });
});

Deno.test("retrieve() with no hits gives an empty context and skips the reranker", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus({ hits: [] });
  await using reranker = startFakeReranker();
  const urls = { embeddings: embeddings.url, milvus: milvus.url, reranker: reranker.url };
  assert.deepEqual(await retrieve("q", clients(urls), { rerank: true }), {
    context: "",
    sources: [],
  });
  assert.equal(reranker.requests.length, 0);
});

Deno.test("retrieve() throws the step's typed error and marks the spans as failed", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  milvus.failNext(503, { times: 5 });
  await withTracing(async (spans) => {
    const error = await retrieve("q", clients({ embeddings: embeddings.url, milvus: milvus.url }))
      .catch((e) => e);
    assert.ok(error instanceof BackendUnavailableError);
    assert.equal(error.backend, "milvus");
    const byName = Object.fromEntries(spans.map((s) => [s.name, s]));
    assert.equal(byName["rag.embed"]?.status, undefined);
    assert.equal(byName["rag.search"]?.status?.code, SpanStatusCode.ERROR);
    assert.equal(byName["rag.search"]?.exceptions, 1);
    assert.equal(byName["rag.retrieve"]?.status?.code, SpanStatusCode.ERROR);
  });
});

Deno.test("retrieve() passes the caller's abort to every step", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  milvus.hangNext();
  const controller = new AbortController();
  const call = retrieve("q", clients({ embeddings: embeddings.url, milvus: milvus.url }), {
    signal: controller.signal,
  });
  const request = await deadline(milvus.nextRequest(), 10_000, { what: "the request" });
  const reason = new Error("stop");
  controller.abort(reason);
  assert.equal(await call.catch((e) => e), reason);
  await deadline(request.disconnected, 10_000, { what: "the client to close the request" });
});

Deno.test("retrieve() rejects bad arguments before any request", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  const ragClients = clients({ embeddings: embeddings.url, milvus: milvus.url });
  await assert.rejects(retrieve("  ", ragClients), InvalidArgumentError);
  await assert.rejects(retrieve("q", ragClients, { topK: 0 }), /topK 0 is not a positive integer/);
  await assert.rejects(retrieve("q", ragClients, { keep: 1.5 }), InvalidArgumentError);
  await assert.rejects(retrieve("q", ragClients, { rerank: true }), /needs a reranker client/);
  assert.equal(embeddings.requests.length + milvus.requests.length, 0);
});

/** A span that records its events and attributes. */
function eventSpan() {
  const events: { name: string; attributes: unknown }[] = [];
  const attributes: Record<string, unknown> = {};
  const span = {
    addEvent(name: string, attrs: unknown) {
      events.push({ name, attributes: attrs });
      return span;
    },
    setAttribute(key: string, value: unknown) {
      attributes[key] = value;
      return span;
    },
  };
  return { span: span as unknown as Span, events, attributes };
}

Deno.test("retrieveOrDegrade() returns the retrieval when every step works", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus({ hits: HITS });
  const { span, events } = eventSpan();
  const retrieval = await retrieveOrDegrade(
    "NATS",
    clients({ embeddings: embeddings.url, milvus: milvus.url }),
    { topK: 2, span, eventPrefix: "voice" },
  );
  assert.deepEqual(retrieval?.sources.map((s) => s.text), [HITS[0]!.text, HITS[1]!.text]);
  assert.deepEqual(events, []);
});

Deno.test("retrieveOrDegrade() degrades a failing step to undefined, with a warning and a span event", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  milvus.config.collections = ["elsewhere"];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ service: "t", write: (line) => lines.push(JSON.parse(line)) });
  const { span, events, attributes } = eventSpan();
  const retrieval = await retrieveOrDegrade(
    "q",
    clients({ embeddings: embeddings.url, milvus: milvus.url }),
    { logger, span, eventPrefix: "voice" },
  );
  assert.equal(retrieval, undefined);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, "Answering without RAG: retrieval failed");
  assert.equal(lines[0]!.error_type, "BackendError");
  assert.equal(events[0]?.name, "voice.rag_degraded");
  assert.equal(
    (events[0]?.attributes as Record<string, unknown>)["error.type"],
    "BackendError",
  );
  assert.equal(attributes["voice.rag_degraded"], true);
});

Deno.test("retrieveOrDegrade() throws when its signal fired instead of degrading", async () => {
  await using embeddings = startFakeEmbeddings();
  await using milvus = startFakeMilvus();
  embeddings.hangNext();
  const controller = new AbortController();
  const { span, events } = eventSpan();
  const call = retrieveOrDegrade(
    "q",
    clients({ embeddings: embeddings.url, milvus: milvus.url }),
    { signal: controller.signal, span },
  );
  const request = await embeddings.nextRequest();
  const reason = new Error("shutting down");
  controller.abort(reason);
  assert.equal(await call.catch((e) => e), reason);
  assert.deepEqual(events, []);
  await request.disconnected;
});
