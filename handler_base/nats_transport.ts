/**
 * A Deno-native socket transport for nats-core (internal: `natsutil.ts` installs it; not an
 * export of the package).
 *
 * Why: `@nats-io/transport-node`, the transport nats.js ships on npm, talks through `node:net`,
 * `node:tls` and `node:dns`, so every service booted Deno's Node socket layer for it (about 60 ms
 * of start-up and 2 MB of memory, docs/PERFORMANCE.md, issue 17), and it could leak a socket error
 * with no listener after it had let go of a socket, which the process-wide `guardTransportErrors`
 * used to contain. `@nats-io/transport-deno` is published on JSR only, which this project cannot
 * reach. This module is the small part of it the project needs, written against `Deno.connect` and
 * `Deno.startTls`: it implements nats-core's `Transport` interface
 * (`@nats-io/nats-core/internal`), as `transport-node` does:
 *
 * - reads the server's `INFO` line before nats-core sees the connection, checks it against the
 *   options (`checkOptions`), upgrades to TLS when the server requires it, or offers it and the
 *   options do not refuse it (`tls: null`), or first of all when `tls.handshakeFirst` is set; the
 *   server name verified is the one nats-core gives (`tlsName`, `localhost` for `127.0.0.1`),
 *   against the system roots plus `tls.caFile` or `tls.ca` (client certificates are not supported:
 *   `Deno.startTls` cannot present one, so asking for one is refused);
 * - yields the bytes it reads, the `INFO` line first, one read per chunk, each chunk its own copy
 *   (nats-core's parser keeps views of a chunk in the messages it delivers); it reads only when
 *   nats-core asks for the next chunk, so a busy parser slows the socket instead of piling up
 *   buffers;
 * - writes what `send` queues one write at a time, frames queued meanwhile joined into the next
 *   write, so a slow socket holds frames in the queue, not in overlapping writes;
 * - reports the end of a connection it had established through `closed()` (with the read or write
 *   error, if any, as `closeError`) so nats-core reconnects; `discard()` drops a transport nats-core
 *   has replaced without reporting anything, and every socket error stays inside the transport.
 *
 * Host names are resolved by `Deno.connect` (the system resolver, so `/etc/hosts` applies); no
 * `dnsResolveFn` is given, so nats-core dials each configured server by name.
 *
 * Requires `--allow-net=<host:port>` of the servers, and `--allow-read` of a CA file.
 *
 * @example Connect with the Deno transport
 * ```ts ignore
 * import { NatsConnectionImpl, setTransportFactory } from "@nats-io/nats-core/internal";
 * import { denoTransportFactory } from "./nats_transport.ts";
 *
 * setTransportFactory(denoTransportFactory);
 * const nc = await NatsConnectionImpl.connect({ servers: "127.0.0.1:4222" });
 * await nc.close();
 * ```
 *
 * @module
 */
import {
  checkOptions,
  type ConnectionOptions,
  type Deferred,
  deferred,
  errors,
  extractProtocolMessage,
  INFO,
  type Server,
  type ServerInfo,
  type Transport,
  type TransportFactory,
} from "@nats-io/nats-core/internal";

/** The client version this transport reports in `CONNECT` (that of the nats-core it serves). */
const VERSION = "3.4.0";
/** The `lang` this transport reports in `CONNECT`. */
const LANG = "nats.js-deno";
/** Bytes asked of the socket per read. */
const READ_SIZE = 64 * 1024;
/** How long `close()` waits for queued frames to be written before closing the socket. */
const CLOSE_FLUSH_MS = 2000;

type Conn = Deno.TcpConn | Deno.TlsConn;

/**
 * nats-core's `Transport` over a Deno TCP or TLS connection (see the module doc).
 *
 * @example
 * ```ts ignore
 * const transport = new DenoTransport();
 * ```
 */
export class DenoTransport implements Transport {
  /** The client library version sent in `CONNECT`. */
  readonly version: string = VERSION;
  /** The client language sent in `CONNECT`. */
  readonly lang: string = LANG;
  /** The error that ended the connection, if one did. */
  closeError?: Error;

  #conn: Conn | undefined;
  #options: ConnectionOptions = {};
  #encrypted = false;
  /** Connected: `connect()` succeeded, so the end of the connection is reported. */
  #connected = false;
  /** Closed, disconnected or discarded: nothing more is read, written or reported. */
  #done = false;
  /** Bytes read with the `INFO` line, yielded first. */
  #head: Uint8Array | undefined;
  #queue: Uint8Array[] = [];
  #writing: Promise<void> | undefined;
  readonly #closed: Deferred<void | Error> = deferred();

  /** True once the transport is closed, disconnected or discarded. */
  get isClosed(): boolean {
    return this.#done;
  }

  /**
   * Dials the server, reads its `INFO`, and upgrades to TLS as the options and the server ask.
   *
   * @param server The server to dial (host, port and the name TLS verifies).
   * @param options The connection options (`tls`, `noEcho`).
   * @returns When the connection is ready for nats-core's `CONNECT`.
   * @throws {Error} When the server cannot be reached, is not a NATS server, or TLS fails.
   */
  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    this.#options = options;
    const tlsName = server.tlsName || server.hostname;
    const handshakeFirst = options.tls?.handshakeFirst === true;
    try {
      const caCerts = await this.#caCerts();
      this.#conn = await dial(server);
      this.#abandonIfDone();
      if (handshakeFirst) await this.#startTls(tlsName, caCerts);
      const info = await this.#readInfo();
      checkOptions(info, options);
      const { tls_required: required, tls_available: available } = info;
      if (!handshakeFirst && (required || (available === true && options.tls !== null))) {
        await this.#startTls(tlsName, caCerts);
      }
      this.#connected = true;
    } catch (error) {
      this.#closeConn();
      throw error instanceof Deno.errors.ConnectionRefused
        ? new errors.ConnectionError("connection refused", { cause: error })
        : error;
    }
  }

  /** Throws (and lets `connect` close the socket) when nats-core gave up during `connect`. */
  #abandonIfDone(): void {
    if (this.#done) throw new errors.ConnectionError("connection abandoned while connecting");
  }

  async #caCerts(): Promise<string[] | undefined> {
    const tls = this.#options.tls;
    if (!tls) return undefined;
    for (const option of ["cert", "certFile", "key", "keyFile"] as const) {
      if (tls[option]) {
        throw errors.InvalidArgumentError.format(
          `tls.${option}`,
          "is not supported by the Deno transport (no client certificates)",
        );
      }
    }
    if (tls.caFile) return [await Deno.readTextFile(tls.caFile)];
    return tls.ca ? [tls.ca] : undefined;
  }

  async #startTls(hostname: string, caCerts: string[] | undefined): Promise<void> {
    const tcp = this.#conn as Deno.TcpConn;
    const conn = await Deno.startTls(tcp, caCerts ? { hostname, caCerts } : { hostname });
    this.#conn = conn;
    this.#abandonIfDone();
    // startTls returns before the handshake; run it here so a certificate the CA does not sign
    // fails the connect, not the first read.
    await conn.handshake();
    this.#abandonIfDone();
    this.#encrypted = true;
  }

  async #readInfo(): Promise<ServerInfo> {
    const conn = this.#conn!;
    let head: Uint8Array = new Uint8Array(0);
    while (true) {
      const chunk = new Uint8Array(READ_SIZE);
      const n = await conn.read(chunk);
      this.#abandonIfDone();
      if (n === null) {
        throw new errors.ConnectionError("the server closed the connection before INFO");
      }
      head = concat([head, chunk.subarray(0, n)]);
      const line = extractProtocolMessage(head);
      if (line === "") {
        if (head.length > READ_SIZE) throw new Error("unexpected response from server");
        continue;
      }
      const match = INFO.exec(line);
      if (!match) throw new Error("unexpected response from server");
      this.#head = head;
      return JSON.parse(match[1]!) as ServerInfo;
    }
  }

  /**
   * The bytes read from the server, the `INFO` line first; ends when the connection ends.
   *
   * @returns An iterator of chunks, each its own copy.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    return this.#read();
  }

  async *#read(): AsyncGenerator<Uint8Array> {
    if (this.#head) {
      const head = this.#head;
      this.#head = undefined;
      yield head;
    }
    const buffer = new Uint8Array(READ_SIZE);
    while (!this.#done && this.#conn) {
      let n: number | null;
      try {
        n = await this.#conn.read(buffer);
      } catch (error) {
        this.#end(asError(error));
        return;
      }
      if (n === null) {
        this.#end(undefined);
        return;
      }
      if (this.#done) return;
      yield buffer.slice(0, n);
    }
  }

  /** True when the connection was upgraded to TLS. */
  isEncrypted(): boolean {
    return this.#encrypted;
  }

  /**
   * Queues a frame to write; frames are written in order, one write at a time.
   *
   * @param frame The bytes.
   */
  send(frame: Uint8Array): void {
    if (this.#done || !this.#conn) return;
    this.#queue.push(frame);
    this.#writing ??= this.#write();
  }

  async #write(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#done && this.#conn) {
        const frames = this.#queue;
        this.#queue = [];
        let data = frames.length === 1 ? frames[0]! : concat(frames);
        while (data.length > 0) data = data.subarray(await this.#conn.write(data));
      }
    } catch (error) {
      // The socket is broken: end the connection so nats-core reconnects (the read fails too).
      this.#end(asError(error));
    } finally {
      this.#writing = undefined;
    }
  }

  /**
   * Closes the connection, writing what is queued first unless `error` is given.
   *
   * @param error Why nats-core closes it.
   * @returns When the socket is closed.
   */
  async close(error?: Error): Promise<void> {
    if (this.#done) return;
    if (!error && this.#writing) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#writing,
        new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_FLUSH_MS)),
      ]);
      clearTimeout(timer);
    }
    this.#end(error);
  }

  /** Drops the connection at once (a stale connection, a forced reconnect); reported as closed. */
  disconnect(): void {
    this.#end(undefined);
  }

  /**
   * Resolves when a connection `connect()` established has ended, with the error that ended it.
   *
   * @returns The promise.
   */
  closed(): Promise<void | Error> {
    return this.#closed;
  }

  /** Drops the transport without reporting it (nats-core has replaced it with a new one). */
  discard(): void {
    this.#done = true;
    this.#queue = [];
    this.#closeConn();
  }

  #end(error: Error | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.closeError = error;
    this.#queue = [];
    this.#closeConn();
    if (this.#connected) this.#closed.resolve(error);
  }

  #closeConn(): void {
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
  }
}

async function dial(server: Server): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: server.hostname, port: server.port });
  conn.setNoDelay(true);
  return conn;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * The factory to give nats-core's `setTransportFactory`: a {@linkcode DenoTransport} per
 * connection attempt, NATS's default port, and no resolver of its own (see the module doc).
 *
 * @example
 * ```ts ignore
 * setTransportFactory(denoTransportFactory);
 * ```
 */
export const denoTransportFactory: TransportFactory = {
  factory: (): Transport => new DenoTransport(),
  defaultPort: 4222,
};
