import assert from "node:assert/strict";

Deno.test("deno task stack --smoke starts every service and answers a chat and a TTS request", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "scripts/stack.ts", "--smoke"],
    cwd: new URL("../", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, out + new TextDecoder().decode(stderr));
  assert.match(out, /all services are ready/);
  assert.match(
    out,
    /chat answer: This is the local stack's fake LLM.*used_rag=true, [1-9]\d* chunks/s,
  );
  assert.match(out, /tts audio: \d+ bytes at 24000 Hz/);
});
