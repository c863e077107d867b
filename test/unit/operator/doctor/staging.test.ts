/**
 * The staging round trip against a scripted Keystone: a WARN saying what was not checked when
 * users may not be created; otherwise a throwaway user, one TOTP login, and the user deleted
 * last; a TOTP code alone that logs in fails. Never a request on the operator's user. Against
 * the real Keystone: test/integration/operator/doctor.
 */
import { describe, expect, it } from "vitest";
import { checkStaging } from "../../../../operator/doctor/staging.ts";
import { json, scriptedKeystone } from "../../../support/doctor.ts";

describe("checkStaging (scripted Keystone)", () => {
  it("skips the staging round trip with a WARN saying what was not checked when users may not be created", async () => {
    const k = scriptedKeystone((req, path) => (req.method === "POST" && path === "/users" ? json(403, {}) : undefined));
    const r = await checkStaging(k.session);
    expect(r.status).toBe("warning");
    expect(r.message).toMatch(/may not create users.*not checked: that the account may write MFA rules/);
    expect(k.seen.some((q) => q.method === "PATCH")).toBe(false);
  });

  it("stages a throwaway user, logs in once with the code, and deletes the user; a code alone that logs in fails", async () => {
    for (const totpAlone of [401, 201]) {
      let made: { name: string; password: string } | undefined;
      const k = scriptedKeystone((req, path) => {
        if (req.method === "POST" && path === "/users") {
          made = (req.json as { user: { name: string; password: string } }).user;
          return json(201, { user: { id: "tmp-id" } });
        }
        if (req.method === "PATCH" && path === "/users/tmp-id") return json(200, { user: { id: "tmp-id" } });
        if (req.method === "POST" && path === "/credentials")
          return json(201, { credential: { id: "c2", user_id: "tmp-id" } });
        if (req.method === "DELETE" && path === "/users/tmp-id") return json(204, undefined);
        const m = (req.json as { auth?: { identity: { methods: string[] } } } | undefined)?.auth?.identity.methods;
        if (path.startsWith("/auth/tokens") && m?.[0] === "totp") {
          return json(
            totpAlone,
            {},
            totpAlone === 401 ? { "openstack-auth-receipt": "rcpt" } : { "x-subject-token": "t2" },
          );
        }
        if (path.startsWith("/auth/tokens") && req.headers?.["openstack-auth-receipt"] === "rcpt") return json(201, {});
        return undefined;
      });
      const r = await checkStaging(k.session);
      expect(r.status, r.message).toBe(totpAlone === 401 ? "ok" : "failure");
      expect(made?.name).toMatch(/^keystone-totp-doctor-/);
      // One TOTP login only: a code is never used twice (Keystone 30 spends codes).
      const totpLogins = k.seen.filter((q) => JSON.stringify(q.json ?? {}).includes('"passcode"'));
      expect(totpLogins).toHaveLength(1);
      expect(k.seen.at(-1)).toMatchObject({ method: "DELETE" });
      expect(k.seen.at(-1)?.url).toMatch(/\/users\/tmp-id$/);
      expect(k.seen.some((q) => q.url.includes("/users/op-id"))).toBe(false);
      expect(JSON.stringify(r)).not.toContain(made?.password ?? "never");
    }
  });
});
