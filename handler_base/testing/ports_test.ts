import assert from "node:assert/strict";
import { closedPortUrl, freePort } from "./ports.ts";

Deno.test("freePort: below the ephemeral range, and free to listen on", () => {
  const ports = Array.from({ length: 20 }, () => freePort());
  for (const port of ports) {
    // Linux hands out source ports of outgoing connections from 32768 up.
    assert.ok(port >= 20_000 && port < 32_768, String(port));
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  }
  assert.ok(new Set(ports).size > 1, "random, not one fixed port");
});

Deno.test("closedPortUrl: nothing listens there", async () => {
  await assert.rejects(fetch(closedPortUrl()));
});
