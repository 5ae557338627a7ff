/**
 * The start-up baseline: the least a Deno service does before `/ready` answers, a
 * `Deno.serve` on `HEALTH_PORT`. Run: `HEALTH_PORT=8080 deno run -A bench/perf/bare_ready.ts`.
 *
 * @module
 */
Deno.serve(
  { port: Number(Deno.env.get("HEALTH_PORT") ?? 8080), hostname: "0.0.0.0", onListen: () => {} },
  () => new Response("ok"),
);
