// Reads a slow stream through the HTTP client, collects garbage after the first chunk and
// aborts the caller's signal after the third; prints how many chunks were read. Run with
// --v8-flags=--expose-gc by http_test.ts.
import { createHttpClient } from "../http.ts";

const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
  let sent = 0;
  return new Response(
    new ReadableStream({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (sent++ > 20) controller.close();
        else controller.enqueue(new TextEncoder().encode("x"));
      },
    }),
  );
});
const http = createHttpClient("slow", { baseUrl: `http://127.0.0.1:${server.addr.port}` });
const caller = new AbortController();
let read = 0;
let outcome = "not aborted";
try {
  await using body = await http.stream("/", { signal: caller.signal });
  for await (const _ of body) {
    read++;
    if (read === 1) (globalThis as unknown as { gc(): void }).gc();
    if (read === 3) caller.abort(new Error("enough"));
  }
} catch (error) {
  outcome = `aborted: ${(error as Error).message}`;
}
console.log(JSON.stringify({ read, outcome }));
await server.shutdown();
