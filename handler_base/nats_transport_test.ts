import assert from "node:assert/strict";
import type { Server } from "@nats-io/nats-core/internal";
import { deadline } from "./async.ts";
import { DenoTransport } from "./nats_transport.ts";
import { connectNats } from "./natsutil.ts";
import { startNatsServer } from "./testing/nats_server.ts";
import { closedPortUrl } from "./testing/ports.ts";
import { makeTlsFiles } from "./testdata/tls_files.ts";

const text = new TextEncoder();

/** The `Server` nats-core gives a transport, for a `nats://host:port` URL. */
function serverOf(url: string, tlsName = ""): Server {
  const { hostname, port } = new URL(url);
  return { hostname, port: Number(port), tlsName } as Server;
}

/** Reads from the transport until what it read contains `wanted` (bounded). */
async function readUntil(
  iterator: AsyncIterator<Uint8Array>,
  wanted: string,
  received = { text: "" },
): Promise<string> {
  const decoder = new TextDecoder();
  while (!received.text.includes(wanted)) {
    const next = await deadline(iterator.next(), 10_000, { what: `"${wanted}" from the server` });
    if (next.done) throw new Error(`The connection ended before "${wanted}": ${received.text}`);
    received.text += decoder.decode(next.value);
  }
  return received.text;
}

/** A TCP listener on 127.0.0.1 that runs `serve` on each connection it accepts. */
function fakeServer(serve: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) served.push(serve(conn).finally(() => conn.close()));
  })().catch(() => {});
  return {
    url: `nats://127.0.0.1:${listener.addr.port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.allSettled(served);
    },
  };
}

Deno.test("DenoTransport: INFO first, the protocol both ways, and closed() when the broker goes away", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const transport = new DenoTransport();
  await transport.connect(serverOf(server.url), {});
  assert.equal(transport.isEncrypted(), false);
  const reader = transport[Symbol.asyncIterator]();
  const first = await reader.next();
  assert.match(new TextDecoder().decode(first.value), /^INFO \{/);
  transport.send(text.encode("CONNECT {}\r\n"));
  transport.send(text.encode("PING\r\n"));
  await readUntil(reader, "PONG\r\n");
  // nats-core reads all the time; the end of the connection shows on a read.
  const drained = (async () => {
    while (!(await reader.next()).done);
  })();
  await server.kill();
  const reason = await deadline(transport.closed(), 10_000, { what: "closed()" });
  await drained;
  assert.equal(transport.isClosed, true);
  assert.equal(reason, transport.closeError);
  assert.equal((await reader.next()).done, true);
});

Deno.test("DenoTransport: close() writes what is queued first; discard() reports nothing", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  const sub = nc.subscribe("queued", { max: 1 });
  await nc.flush();
  const transport = new DenoTransport();
  await transport.connect(serverOf(server.url), {});
  transport.send(text.encode("CONNECT {}\r\n"));
  transport.send(text.encode("PUB queued 5\r\nhello\r\n"));
  await transport.close();
  for await (const msg of sub) assert.equal(new TextDecoder().decode(msg.data), "hello");
  assert.equal(await transport.closed(), undefined);

  const discarded = new DenoTransport();
  await discarded.connect(serverOf(server.url), {});
  discarded.discard();
  assert.equal(discarded.isClosed, true);
  const reported = await Promise.race([discarded.closed(), nc.flush().then(() => "nothing")]);
  assert.equal(reported, "nothing");
  await nc.close();
});

Deno.test("DenoTransport: a refused port, a server that is not NATS, and a server that hangs up", async () => {
  await assert.rejects(
    new DenoTransport().connect(serverOf(closedPortUrl("nats")), {}),
    (e: unknown) => e instanceof Error && e.name === "ConnectionError" && /refused/.test(e.message),
  );
  {
    await using http = fakeServer(async (conn) => {
      await conn.write(text.encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
    });
    await assert.rejects(
      new DenoTransport().connect(serverOf(http.url), {}),
      /unexpected response from server/,
    );
  }
  {
    await using silent = fakeServer(() => Promise.resolve());
    await assert.rejects(
      new DenoTransport().connect(serverOf(silent.url), {}),
      /closed the connection before INFO/,
    );
  }
});

Deno.test("connectNats() gives up on a server that never says INFO, and lets go of the socket", async () => {
  const ended: Promise<number | null>[] = [];
  await using mute = fakeServer((conn) => {
    const read = conn.read(new Uint8Array(16));
    ended.push(read);
    return read.then(() => {});
  });
  await assert.rejects(
    connectNats({ servers: mute.url, name: "t", connectTimeoutMs: 200 }),
    (e: unknown) => e instanceof Error && /timeout/i.test(`${e.name} ${e.message}`),
  );
  assert.equal(ended.length, 1);
  // The client closed its socket: the server's read ends (EOF) instead of waiting forever.
  assert.equal(await deadline(ended[0]!, 10_000, { what: "the socket to close" }), null);
});

Deno.test("DenoTransport: TLS first when asked, verified against the CA file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "nats-tls-first-" });
  try {
    const tls = await makeTlsFiles(dir);
    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(tls.cert),
      key: await Deno.readTextFile(tls.key),
    });
    const serving = (async () => {
      for await (const conn of listener) {
        // A TLS-first server says INFO only once the handshake is done.
        await conn.handshake().then(() =>
          conn.write(text.encode('INFO {"proto":1,"tls_required":true}\r\n'))
        )
          .catch(() => {});
        conn.close();
      }
    })();
    const url = `nats://127.0.0.1:${listener.addr.port}`;
    try {
      const transport = new DenoTransport();
      await transport.connect(serverOf(url, "localhost"), {
        tls: { handshakeFirst: true, caFile: tls.ca },
      });
      assert.equal(transport.isEncrypted(), true);
      await transport.close();
      await assert.rejects(
        new DenoTransport().connect(serverOf(url, "localhost"), {
          tls: { handshakeFirst: true, caFile: tls.otherCa },
        }),
        /certificate|UnknownIssuer/i,
      );
    } finally {
      listener.close();
      await serving;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connectNats() carries small and large messages whole, in order", async () => {
  await using server = await startNatsServer({ jetstream: false });
  const nc = await connectNats({ servers: server.url, name: "t" });
  // Small ones arrive many to a read (the parser keeps views of it), large ones across reads.
  const sizes = [...Array(400).fill(100), ...Array(20).fill(512 * 1024)];
  const payload = (i: number) => new Uint8Array(sizes[i]!).fill(i % 251);
  const received: Uint8Array[] = [];
  const sub = nc.subscribe("sizes", {
    max: sizes.length,
    callback: (_e, msg) => void received.push(msg.data),
  });
  await nc.flush();
  for (let i = 0; i < sizes.length; i++) nc.publish("sizes", payload(i));
  await deadline(sub.closed, 30_000, { what: "every message" });
  assert.equal(received.length, sizes.length);
  received.forEach((data, i) => assert.deepEqual(data, payload(i), `message ${i}`));
  await nc.close();
});

Deno.test("refused credentials leave no uncaught error behind (the socket reset stays in the transport)", async () => {
  await using server = await startNatsServer({
    jetstream: false,
    args: ["--user", "svc", "--pass", "right"],
  });
  const uncaught: unknown[] = [];
  const onError = (event: ErrorEvent) => uncaught.push(event.error);
  const onRejection = (event: PromiseRejectionEvent) => uncaught.push(event.reason);
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        connectNats({ servers: server.url, name: "t", user: "svc", password: "wrong" }),
        (e: unknown) => e instanceof Error && e.name === "AuthorizationError",
      );
    }
    // A round trip on a good connection: the server has long reset the refused sockets.
    const good = await connectNats({
      servers: server.url,
      name: "t",
      user: "svc",
      password: "right",
    });
    await good.flush();
    await good.close();
    assert.deepEqual(uncaught, []);
  } finally {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
});
