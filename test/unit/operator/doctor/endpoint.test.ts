/**
 * The checks before the token, against a scripted transport: endpoints that are not identity
 * v3, a refused connection, a TLS failure, plain HTTP on and off loopback. Against the real
 * Keystone (and a TLS terminator in front of it): test/integration/operator/doctor/keystone.test.ts.
 */
import { describe, expect, it } from "vitest";
import { TransportError } from "../../../../lib/keystone/http.ts";
import { checkReachable, checkTls } from "../../../../operator/doctor/endpoint.ts";
import { checkContext, operatorAuth, scriptedTransport, V3 } from "../../../support/doctor.ts";

describe("checkReachable and checkTls", () => {
  it("accepts an identity v3 version document, asked once without a token", async () => {
    const seen: unknown[] = [];
    const r = await checkReachable(
      checkContext(
        scriptedTransport((req) => {
          seen.push(req);
          return V3;
        }),
      ),
    );
    expect(r.reachable).toBe(true);
    expect(r.result.status).toBe("ok");
    expect(r.result.message).toContain("identity v3.14 (stable)");
    expect(seen).toEqual([
      { method: "GET", url: "http://keystone.test/v3", headers: { "user-agent": "keystone-totp-doctor" } },
    ]);
  });

  it("refuses an endpoint that is not identity v3", async () => {
    const r = await checkReachable(
      checkContext(scriptedTransport(() => ({ status: 404, headers: {}, body: undefined }))),
    );
    expect(r.reachable).toBe(false);
    expect(r.result).toMatchObject({ status: "failure", code: "E_KEYSTONE_HTTP" });
  });

  it("explains a refused connection and a TLS failure", async () => {
    const refused = await checkReachable(
      checkContext(scriptedTransport(() => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED"))),
    );
    expect(refused.result).toMatchObject({ status: "failure", code: "E_KEYSTONE_NETWORK" });
    expect(refused.result.fix).toMatch(/OS_AUTH_URL/);

    const httpsCtx = checkContext(
      scriptedTransport(() => new TransportError("tls", "SELF_SIGNED_CERT_IN_CHAIN", "SELF_SIGNED_CERT_IN_CHAIN")),
      operatorAuth("https://keystone.test/v3"),
    );
    const reach = await checkReachable(httpsCtx);
    const tls = await checkTls(httpsCtx, reach);
    expect(tls).toMatchObject({ status: "failure", code: "E_KEYSTONE_NETWORK" });
    expect(tls.fix).toMatch(/OS_CACERT/);
  });

  it("warns about plain HTTP off loopback only", async () => {
    const remote = checkContext(
      scriptedTransport(() => V3),
      operatorAuth("http://keystone.example.com:5000/v3"),
    );
    expect((await checkTls(remote, await checkReachable(remote))).status).toBe("warning");
    const local = checkContext(
      scriptedTransport(() => V3),
      operatorAuth("http://127.0.0.1:5000/v3"),
    );
    expect((await checkTls(local, await checkReachable(local))).status).toBe("ok");
  });
});
