/**
 * Test helpers for services built on handler-base, for users too: a real
 * `nats-server` on a free port (kill and restart it), in-process fake ML
 * backends that speak the exact HTTP shapes of the contract, a fake
 * Kubernetes API for Argo Workflows and a fake Kubeflow Pipelines API, an OTLP
 * receiver that collects the spans and metrics a subprocess exports, and a
 * runner for a service's entry file as a subprocess with exact permissions.
 *
 * Requires `--allow-run=nats-server`, `--allow-net=127.0.0.1`, and
 * `--allow-read`/`--allow-write` for the temporary store.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineEndpoint } from "@homelab/handler-base/handler";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { callEndpoint, startTestService } from "@homelab/handler-base/testing";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo.*",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle(req, ctx) {
 *     ctx.publish(`demo.heard.${ctx.tokens.at(-1)}`, TTSStatusSchema, { status: req.text });
 *     return Promise.resolve({ status: "ok", message: req.text });
 *   },
 * });
 *
 * // Service logic: in-process, no server.
 * const result = await callEndpoint(echo, { text: "hi" }, { subject: "demo.echo.s1" });
 * assert.equal(result.reply?.message, "hi");
 * assert.deepEqual(result.messages(TTSStatusSchema).map((m) => m.subject), ["demo.heard.s1"]);
 *
 * // Over a real nats-server, with bounded waits.
 * await using t = await startTestService({ endpoints: [echo] });
 * using heard = t.collect("demo.heard.*", TTSStatusSchema);
 * const reply = await t.request("demo.echo.s2", TTSRequestSchema, { text: "yo" }, TTSStatusSchema);
 * assert.equal(reply.message, "yo");
 * await heard.until((all) => all.length === 1, { timeoutMs: 5000 });
 * ```
 *
 * @module
 */
export * from "./call_endpoint.ts";
export * from "./collect.ts";
export * from "./eventually.ts";
export * from "./fake_embeddings.ts";
export * from "./fake_http.ts";
export * from "./fake_kubeflow.ts";
export * from "./fake_kubernetes.ts";
export * from "./fake_llm.ts";
export * from "./fake_milvus.ts";
export * from "./fake_reranker.ts";
export * from "./fake_whisper.ts";
export * from "./fake_xtts.ts";
export * from "./nats_cluster.ts";
export * from "./nats_server.ts";
export * from "./otlp_receiver.ts";
export * from "./ports.ts";
export * from "./recording_tracer.ts";
export * from "./service_process.ts";
export * from "./test_service.ts";
