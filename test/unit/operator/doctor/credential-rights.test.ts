/**
 * The credential-management check against a scripted Keystone: the probe credential is a
 * valid one for a made-up user ID, deleted at once; the operator is never written to; a 400 is
 * not taken for the right to create; Keystone 30's passcode refusal is named. Against the real
 * Keystone: test/integration/operator/doctor/keystone.test.ts.
 */
import { describe, expect, it } from "vitest";
import { normaliseSecret } from "../../../../lib/totp/secret.ts";
import { checkCredentialAccess } from "../../../../operator/doctor/credential-rights.ts";
import { json, PASSCODE_403, scriptedKeystone } from "../../../support/doctor.ts";

describe("checkCredentialAccess (scripted Keystone)", () => {
  it("creates a VALID credential for a made-up user ID, deletes it at once, and never touches the operator", async () => {
    const k = scriptedKeystone((req, path) => {
      if (req.method === "GET" && path.startsWith("/credentials?")) return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return json(201, { credential: { id: "c1" } });
      if (req.method === "DELETE" && path === "/credentials/c1") return json(204, undefined);
      if (req.method === "DELETE" && path.startsWith("/credentials/")) return json(404, undefined);
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r.status, r.message).toBe("ok");
    const post = k.seen.find((q) => q.method === "POST" && q.url.endsWith("/credentials"));
    const cred = (post?.json as { credential: { user_id: string; blob: unknown } } | undefined)?.credential ?? {
      user_id: "",
      blob: "",
    };
    expect(cred.user_id).toMatch(/^[0-9a-f]{32}$/);
    expect(cred.user_id).not.toBe("op-id");
    expect(normaliseSecret(String(cred.blob))).toBe(cred.blob);
    expect(k.seen.filter((q) => q.method === "DELETE").map((q) => q.url.split("/").pop())).toContain("c1");
    expect(r.message).not.toContain(String(cred.blob));
    expect(k.seen.some((q) => q.url.includes("/users/op-id") && q.method !== "GET")).toBe(false);
  });

  it("does not take a 400 (schema before policy, Keystone 27+) for the right to create", async () => {
    const k = scriptedKeystone((req, path) => {
      if (req.method === "GET") return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return json(400, { error: { message: "Invalid input" } });
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r.status).toBe("failure");
    const noWrite = await checkCredentialAccess(
      scriptedKeystone((req, path) => {
        if (req.method === "GET") return json(200, { credentials: [] });
        if (req.method === "POST" && path === "/credentials") return json(400, {});
        if (req.method === "DELETE") return json(404, undefined);
        return undefined;
      }).session,
      false,
    );
    expect(noWrite.status).toBe("ok");
    expect(noWrite.message).toMatch(/the right to create was not proven/);
  });

  it("names the operator's MFA rules (E_KEYSTONE_MFA) when Keystone 30 asks for a passcode", async () => {
    const k = scriptedKeystone((req, path) => {
      if (req.method === "GET") return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return PASSCODE_403;
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r).toMatchObject({ status: "failure", code: "E_KEYSTONE_MFA" });
    expect(r.message).toMatch(/operator's own account has MFA rules/);
    expect(r.fix).toMatch(
      /another administrator account that has no MFA rules.*require_mfa_for_sensitive_account_actions = false/,
    );
  });
});
