/**
 * A TLS terminator in front of the plain-HTTP Keystone on loopback: each TLS connection is
 * decrypted and piped to Keystone, so that TLS checks run against the real Keystone.
 */
import https from "node:https";
import net from "node:net";
import type { TestCertificate } from "./smtp.ts";

/** A running terminator. */
export interface TlsTerminator {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts one on 127.0.0.1 and a free port, serving `cert`, forwarding to `upstreamPort`. */
export async function startTlsTerminator(cert: TestCertificate, upstreamPort: number): Promise<TlsTerminator> {
  const server = https.createServer({ key: cert.keyPem, cert: cert.certPem });
  server.removeAllListeners("request");
  server.on("secureConnection", (tls) => {
    const up = net.connect(upstreamPort, "127.0.0.1");
    tls.pipe(up).pipe(tls);
    tls.on("error", () => up.destroy());
    up.on("error", () => tls.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}
