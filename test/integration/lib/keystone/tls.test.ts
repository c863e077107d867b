/**
 * TLS to Keystone: a self-signed HTTPS endpoint (a TLS-terminating proxy in front of the real
 * Keystone) is refused by default and accepted once its CA is given, as OS_CACERT would.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeystoneError } from "../../../../lib/errors.ts";
import { resolveKeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { adminEnv, keystoneInstance } from "../../../support/keystone.ts";
import { makeSelfSignedCertificate, type TestCertificate } from "../../../support/smtp.ts";
import { startTlsTerminator, type TlsTerminator } from "../../../support/tls.ts";

let dir: string;
let cert: TestCertificate;
let terminator: TlsTerminator;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kt-tls-"));
  const c = makeSelfSignedCertificate(dir);
  if (!c) throw new Error("openssl is needed for the TLS test (apt-get install openssl)");
  cert = c;
  terminator = await startTlsTerminator(cert, keystoneInstance().port);
  port = terminator.port;
});

afterAll(async () => {
  await terminator.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS to Keystone", () => {
  it("refuses a self-signed endpoint by default, with advice to give the CA", async () => {
    const env = { ...adminEnv(), OS_AUTH_URL: `https://127.0.0.1:${port}/v3` };
    const client = new KeystoneClient(resolveKeystoneAuth({ env, cloudsYamlPaths: [] }));
    const err = await client.whoami().catch((e: unknown) => e);
    client.close();
    expect(err).toBeInstanceOf(KeystoneError);
    expect((err as KeystoneError).code).toBe("E_KEYSTONE_NETWORK");
    expect((err as Error).message).toMatch(/TLS verification failed.*OS_CACERT/);
  });

  it("accepts it once its CA is given with OS_CACERT", async () => {
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, cert.certPem);
    const env = { ...adminEnv(), OS_AUTH_URL: `https://127.0.0.1:${port}/v3`, OS_CACERT: caFile };
    const client = new KeystoneClient(resolveKeystoneAuth({ env, cloudsYamlPaths: [] }));
    const me = await client.whoami();
    client.close();
    expect(me.roles).toContain("admin");
  });

  it("OS_INSECURE skips verification (off unless asked for)", async () => {
    const env = { ...adminEnv(), OS_AUTH_URL: `https://127.0.0.1:${port}/v3`, OS_INSECURE: "true" };
    const client = new KeystoneClient(resolveKeystoneAuth({ env, cloudsYamlPaths: [] }));
    expect((await client.whoami()).roles).toContain("admin");
    client.close();
  });
});
