/**
 * One reply queued on a live connection: nats.js's `publish` (what `Msg.respond` does) against
 * `respondFast` (`handler_base/fast_reply.ts`), with the same headers (encoded once, as an
 * endpoint's are) and a TTSStatus-sized payload. Both flush to a real nats-server.
 *
 * Run: `deno bench --allow-all bench/reply_bench.ts`
 *
 * @module
 */
import { connectNats, messageHeaders, type MsgHdrs } from "../handler_base/natsutil.ts";
import { startNatsServer } from "../handler_base/testing/nats_server.ts";
import { respondFast } from "../handler_base/fast_reply.ts";

const server = await startNatsServer();
const nc = await connectNats({ servers: server.url, name: "reply-bench" });
const encoded = messageHeaders("homelab.v1.TTSStatus");
const bytes = (encoded as MsgHdrs & { encode(): Uint8Array }).encode();
const headers = Object.assign(encoded, { encode: () => bytes });
const data = new Uint8Array(36).fill(65);
const reply = "_INBOX.JX3YQ0QCJ6Q4BP5Y2VDT9K.4821";

Deno.bench("nats.js publish (Msg.respond)", { group: "reply", baseline: true }, () => {
  nc.publish(reply, data, { headers });
});

Deno.bench("respondFast", { group: "reply" }, () => {
  respondFast(nc, reply, headers, data);
});

globalThis.addEventListener("unload", () => {
  void nc.close();
  void server[Symbol.asyncDispose]();
});
