/**
 * Test TLS files made with `openssl` in a directory: a CA (`ca.pem`), a server certificate it
 * signs for `127.0.0.1` and `localhost` (`server.pem`, `server.key`), and a second, unrelated CA
 * (`other.pem`) that must not be trusted for that server.
 *
 * @module
 */
import assert from "node:assert/strict";

/** The paths {@linkcode makeTlsFiles} writes. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly otherCa: string;
}

/** Writes the files into `dir` (which must exist) and returns their paths. */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  const openssl = (...args: string[]) =>
    new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "null" }).output();
  const subject = (cn: string) => ["-subj", `/CN=${cn}`];
  // nats.js names the server "localhost" when it dials 127.0.0.1.
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  for (
    const args of [
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key"]
        .concat(["-out", "ca.pem"], subject("test-ca")),
      ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"]
        .concat(subject("127.0.0.1")),
      ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
        .concat(["-CAcreateserial", "-days", "1", "-out", "server.pem", "-extfile", "san.ext"]),
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "other.key"]
        .concat(["-out", "other.pem"], subject("other-ca")),
    ]
  ) {
    const { code } = await openssl(...args);
    assert.equal(code, 0, `openssl ${args.join(" ")}`);
  }
  return {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/server.pem`,
    key: `${dir}/server.key`,
    otherCa: `${dir}/other.pem`,
  };
}
