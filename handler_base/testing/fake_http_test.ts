import assert from "node:assert/strict";
import { startFakeHttpServer } from "./fake_http.ts";

Deno.test("a fake records when a request arrived and, once answered, its own time", async () => {
  const gate = Promise.withResolvers<void>();
  await using fake = startFakeHttpServer(async () => {
    await gate.promise;
    return Response.json({ ok: true });
  });
  const call = fetch(`${fake.url}/x`).then((r) => r.json());
  const request = await fake.nextRequest();
  assert.equal(typeof request.receivedAt, "number");
  assert.equal(request.handledMs, undefined);
  gate.resolve();
  assert.deepEqual(await call, { ok: true });
  assert.equal(typeof request.handledMs, "number");
  assert.ok(request.handledMs! >= 0);
});
