/**
 * The cost handler-base adds to one message, without the network: a
 * delivery dispatched through an endpoint (span, metrics, deadline, error
 * boundary, decode, encode) against decode and encode alone.
 *
 * Run: `deno bench bench/dispatch_bench.ts`
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { createService, defineEndpoint } from "../handler_base/handler.ts";
import { type Delivery, internalsOf } from "../handler_base/internal.ts";
import { createLogger } from "../handler_base/log.ts";
import { decode, encode, TTSRequestSchema, TTSStatusSchema } from "../handler_base/messages.ts";

const payload = encode(TTSRequestSchema, { text: "How fast is the handler layer?", speaker: "x" });
const endpoint = defineEndpoint({
  subject: "bench.handler",
  request: TTSRequestSchema,
  response: TTSStatusSchema,
  handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
});
const service = createService({} as NatsConnection, {
  name: "bench",
  logger: createLogger({ service: "bench", level: "error" }),
  endpoints: [endpoint],
});
const internals = internalsOf(service);
let replies = 0;
const delivery: Delivery = {
  subject: "bench.handler",
  data: payload,
  headers: undefined,
  attempt: 1,
  wantsReply: true,
  respond: () => replies++,
};

Deno.bench("decode, handle, encode (baseline)", { group: "message", baseline: true }, async () => {
  const req = decode(TTSRequestSchema, payload);
  encode(TTSStatusSchema, await Promise.resolve({ status: "ok", message: req.text }));
});

Deno.bench("dispatch() (the full runtime)", { group: "message" }, async () => {
  await internals.dispatch(endpoint, delivery);
});
