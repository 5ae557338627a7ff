/**
 * Typed NATS endpoints and the service that serves them, in one import:
 * this entry point re-exports `endpoint.ts` (the endpoint definition and the
 * handler contract, stated there once), `service.ts` (the service: slots,
 * deadlines, a stop bounded by its grace) and the consume modes of
 * `consume_config.ts`. Import those directly to take only what you use.
 *
 * Requires what `natsutil` requires (`--allow-net=<nats>`) to serve.
 *
 * @example Define an endpoint and call it in-process
 * ```ts
 * import { CONSUME_MODES, defineEndpoint } from "@homelab/handler-base/handler";
 * import { TTSRequestSchema, TTSStatusSchema } from "@homelab/handler-base/messages";
 * import { callEndpoint } from "@homelab/handler-base/testing";
 *
 * const echo = defineEndpoint({
 *   subject: "demo.echo",
 *   request: TTSRequestSchema,
 *   response: TTSStatusSchema,
 *   handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
 * });
 * console.log((await callEndpoint(echo, { text: "hi" })).reply?.message); // "hi"
 * console.log(CONSUME_MODES); // ["core", "jetstream"]
 * ```
 *
 * @module
 */
export { CONSUME_MODES, type ConsumeMode } from "./consume_config.ts";
export {
  defineEndpoint,
  type Endpoint,
  type EndpointOptions,
  type HandlerContext,
  type TypedEndpoint,
} from "./endpoint.ts";
export {
  createService,
  type EndpointStats,
  GRACE_OVERRUN_MS,
  type Service,
  type ServiceOptions,
  type StopOptions,
} from "./service.ts";
