/**
 * The responders the throughput benchmarks compare, in one process on one
 * nats-server: a raw nats.js **echo** (`bench.raw`), a raw nats.js responder
 * doing the **same protobuf work** as the endpoint the way a user without
 * handler-base would (`bench.proto`: decode the TTSRequest and encode a
 * TTSStatus with protobuf-es, set `Msg-Type`), and a **handler-base
 * endpoint** (`bench.handler`: the whole runtime, concurrency 64). Each has its
 * own connection. Telemetry is whatever the process was started with
 * (`OTEL_DENO=true` turns it on).
 *
 * Run as a subprocess: `deno run -A bench/perf/responders.ts <nats-url> [subject-prefix]`; it
 * prints `READY` once subscribed and stops on SIGTERM.
 *
 * @module
 */
import { createService, defineEndpoint } from "../../handler_base/handler.ts";
import { createLogger } from "../../handler_base/log.ts";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { encode, TTSRequestSchema, TTSStatusSchema } from "../../handler_base/messages.ts";
import { connectNats, messageHeaders } from "../../handler_base/natsutil.ts";

/** The subjects of the three responders of one process, under `prefix`. */
export function subjectsOf(prefix: string): { echo: string; proto: string; handler: string } {
  return { echo: `${prefix}.raw`, proto: `${prefix}.proto`, handler: `${prefix}.handler` };
}

/**
 * The subjects of the three responders of a process started without a prefix. A second process
 * (telemetry on) takes a prefix of its own, so that no request is answered twice.
 */
export const SUBJECTS: { echo: string; proto: string; handler: string } = subjectsOf("bench");

/** One of the three responders. */
export type Path = keyof typeof SUBJECTS;

/** The request every load generator sends (a TTSRequest). */
export const PAYLOAD: Uint8Array = encode(TTSRequestSchema, {
  text: "How fast is the handler layer?",
  speaker: "x",
});

/** Serves the three responders until SIGTERM. */
export async function serveResponders(url: string, prefix = "bench"): Promise<void> {
  const subjects = subjectsOf(prefix);
  const serviceConn = await connectNats({ servers: url, name: "bench-service" });
  const rawConn = await connectNats({ servers: url, name: "bench-raw" });
  rawConn.subscribe(subjects.echo, {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  const protoHeaders = messageHeaders(TTSStatusSchema.typeName);
  rawConn.subscribe(subjects.proto, {
    callback: (_err, msg) => {
      const req = fromBinary(TTSRequestSchema, msg.data);
      const reply = toBinary(
        TTSStatusSchema,
        create(TTSStatusSchema, { status: "ok", message: req.text }),
      );
      msg.respond(reply, { headers: protoHeaders });
    },
  });
  const service = createService(serviceConn, {
    name: "bench",
    logger: createLogger({ service: "bench", level: "error" }),
    concurrency: 64,
    endpoints: [defineEndpoint({
      subject: subjects.handler,
      request: TTSRequestSchema,
      response: TTSStatusSchema,
      handle: (req) => Promise.resolve({ status: "ok", message: req.text }),
    })],
  });
  await service.start();
  await rawConn.flush();
  console.log("READY");
  await new Promise((resolve) => Deno.addSignalListener("SIGTERM", () => resolve(undefined)));
  await service.stop();
  await Promise.all([serviceConn.close(), rawConn.close()]);
}

if (import.meta.main) {
  await serveResponders(Deno.args[0]!, Deno.args[1]);
  Deno.exit(0);
}
