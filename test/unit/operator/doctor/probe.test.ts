/**
 * The probe session against a scripted Keystone: one token request, with the doctor's
 * User-Agent, read for the checks (roles, project name, `issued_at` and `Date` for the clock);
 * the client's later calls use that token instead of asking for a second; Keystone's refusal is
 * worded for the operator. Against the real Keystone: test/integration/operator/doctor.
 */
import { describe, expect, it } from "vitest";
import { KeystoneError } from "../../../../lib/errors.ts";
import { TransportError } from "../../../../lib/keystone/http.ts";
import { openProbeSession } from "../../../../operator/doctor/probe.ts";
import { doctorClient, json, PASSWORD, scriptedKeystone, scriptedTransport } from "../../../support/doctor.ts";

const ISSUED_AT = "2030-01-01T00:00:10.000000Z";
const TOKEN_BODY = {
  token: {
    issued_at: ISSUED_AT,
    expires_at: "2030-01-01T01:00:10.000000Z",
    user: { id: "op-id", name: "admin", domain: { id: "default", name: "Default" } },
    project: { id: "p", name: "ops", domain: { id: "default", name: "Default" } },
    roles: [
      { id: "r1", name: "admin" },
      { id: "r2", name: "reader" },
    ],
  },
};

describe("openProbeSession", () => {
  it("issues one token, reads it for the checks, and the client uses it for its own calls", async () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    const k = scriptedKeystone((req, path) => {
      if (
        req.method === "POST" &&
        path === "/auth/tokens?nocatalog" &&
        req.headers?.["user-agent"] === "keystone-totp-doctor"
      ) {
        return json(201, TOKEN_BODY, { "x-subject-token": "probe-tok", date: "Wed, 01 Jan 2030 00:00:11 GMT" });
      }
      if (req.method === "GET" && path.startsWith("/credentials")) return json(200, { credentials: [] });
      return undefined;
    });
    const session = await openProbeSession({ client: k.client, now: () => now });
    expect(session.info).toMatchObject({
      userId: "op-id",
      projectName: "ops",
      projectDomainName: "Default",
      roles: ["admin", "reader"],
      issuedAt: { sentAtMs: now, receivedAtMs: now, serverMs: Date.parse(ISSUED_AT) },
      dateHeader: { serverMs: Date.parse("2030-01-01T00:00:11Z") },
    });
    expect(session.projectLabel).toBe("project ops in domain Default");
    await session.request("GET", "/credentials?type=totp");
    await k.client.listTotpCredentials("someone");
    expect(k.seen.filter((q) => q.url.includes("/auth/tokens"))).toHaveLength(1);
    expect(k.seen.slice(1).map((q) => q.headers?.["x-auth-token"])).toEqual(["probe-tok", "probe-tok"]);
    expect(k.seen[1]?.headers?.["user-agent"]).toBe("keystone-totp-doctor");
    expect(k.client.stats.tokensIssued).toBe(1);
  });

  it("words a refusal for the operator (never with the password), and sends it once", async () => {
    const seen: unknown[] = [];
    const client = doctorClient(
      scriptedTransport((req) => {
        seen.push(req);
        return json(401, { error: { message: "The request you have made requires authentication." } });
      }),
    );
    const e = await openProbeSession({ client, now: Date.now }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KeystoneError);
    expect(e).toMatchObject({ code: "E_KEYSTONE_AUTH" });
    expect(String((e as Error).message)).toMatch(/Keystone refused the operator's credentials \(test\)/);
    expect(String((e as Error).message)).not.toContain(PASSWORD);
    expect(seen).toHaveLength(1);
  });

  it("reports a connection that got no answer as a network error with advice", async () => {
    const client = doctorClient(scriptedTransport(() => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED")));
    const e = await openProbeSession({ client, now: Date.now }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "E_KEYSTONE_NETWORK" });
    expect(String((e as Error).message)).toMatch(/cannot connect to Keystone .*OS_AUTH_URL/);
  });
});
