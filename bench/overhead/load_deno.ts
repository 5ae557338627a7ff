/**
 * The Deno version of `loadgen.c`, with the same arguments and output, so
 * that `bench/overhead.ts` can show what a Deno load client adds at a fixed
 * rate: one nats.js connection, one wildcard inbox subscription whose
 * callback stamps each reply, and a send loop that sleeps (`setTimeout`)
 * until the next request is due and then sends every request due by now
 * (latency counts from the scheduled time, so a late send is not hidden).
 *
 * Run: `deno run -A bench/overhead/load_deno.ts <host> <port> <subject> <rate> <count> <warmup>
 * <payload-hex> <seq-offset> <seq-subject:0|1> <timeout-ms>`
 *
 * @module
 */
import { connectNats } from "../../handler_base/natsutil.ts";
import { MSG_TYPE_HEADER } from "../../handler_base/messages.ts";
import { cpuMs } from "../perf/proc.ts";
import { dueBy, scheduledAt } from "./stats.ts";

const [host, port, subject, rateArg, countArg, warmupArg, hex, offsetArg, seqSubject, timeoutArg] =
  Deno.args;
const rate = Number(rateArg);
const total = Number(countArg) + Number(warmupArg);
const warmup = Number(warmupArg);
const seqOffset = Number(offsetArg);
const payload = new Uint8Array((hex ?? "").match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
const nc = await connectNats({ servers: `nats://${host}:${port}`, name: "overhead-load-deno" });
const sched = new Float64Array(total);
const sent = new Float64Array(total);
const recv = new Float64Array(total);
const errors = new Uint8Array(total);
let received = 0;
nc.subscribe("_INBOX.ovh.>", {
  callback: (_error, msg) => {
    const t = performance.now();
    const seq = Number(msg.subject.slice(msg.subject.lastIndexOf(".") + 1));
    if (seq >= 0 && seq < total && recv[seq] === 0) {
      recv[seq] = t;
      errors[seq] = msg.headers?.get(MSG_TYPE_HEADER)?.includes("ErrorResponse") ? 1 : 0;
      received++;
    }
  },
});
await nc.flush();
const encoder = new TextEncoder();
const start = performance.now() + 10;
let cpuStart = 0;
for (let i = 0; i < total;) {
  const wait = scheduledAt(start, i, rate) - performance.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const due = Math.min(total, dueBy(start, performance.now(), rate));
  for (; i < due; i++) {
    if (i === warmup) cpuStart = cpuMs(Deno.pid);
    if (seqOffset >= 0) payload.set(encoder.encode(String(i).padStart(10, "0")), seqOffset);
    sched[i] = scheduledAt(start, i, rate);
    sent[i] = performance.now();
    nc.publish(seqSubject === "1" ? `${subject}${i}` : subject!, payload, {
      reply: `_INBOX.ovh.${i}`,
    });
  }
}
const last = scheduledAt(start, total - 1, rate);
while (received < total && performance.now() < last + Number(timeoutArg)) {
  await new Promise((resolve) => setTimeout(resolve, 5));
}
const cpu = cpuMs(Deno.pid) - cpuStart;
const measuredStart = scheduledAt(start, warmup, rate);
const wall = performance.now() - measuredStart;
await nc.close();
const lines: string[] = [];
for (let i = warmup; i < total; i++) {
  lines.push(
    `${i - warmup} ${((sched[i]! - measuredStart) * 1000).toFixed(1)} ` +
      `${((sent[i]! - sched[i]!) * 1000).toFixed(1)} ` +
      `${recv[i] ? ((recv[i]! - sched[i]!) * 1000).toFixed(1) : -1} ${errors[i]}`,
  );
}
lines.push(`cpu_ms ${cpu.toFixed(1)} wall_ms ${wall.toFixed(1)}`);
console.log(lines.join("\n"));
