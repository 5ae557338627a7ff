/**
 * Test helpers for services built on handler-base, for users too: a real
 * `nats-server` on a free port (kill and restart it), in-process fake ML
 * backends that speak the exact HTTP shapes of the contract, an OTLP
 * receiver that collects the spans and metrics a subprocess exports, and a
 * runner for a service's entry file as a subprocess with exact permissions.
 *
 * Requires `--allow-run=nats-server`, `--allow-net=127.0.0.1`, and
 * `--allow-read`/`--allow-write` for the temporary store.
 *
 * @example
 * ```ts ignore
 * import { startNatsServer } from "@homelab/handler-base/testing";
 *
 * Deno.test("my service answers", async () => {
 *   await using server = await startNatsServer();
 *   // connect the service and a client to server.url ...
 * });
 * ```
 *
 * @module
 */
export * from "./call_endpoint.ts";
export * from "./collect.ts";
export * from "./fake_embeddings.ts";
export * from "./fake_http.ts";
export * from "./fake_llm.ts";
export * from "./fake_milvus.ts";
export * from "./fake_reranker.ts";
export * from "./fake_whisper.ts";
export * from "./fake_xtts.ts";
export * from "./nats_server.ts";
export * from "./otlp_receiver.ts";
export * from "./ports.ts";
export * from "./service_process.ts";
export * from "./test_service.ts";
