import { describe, expect, it } from "vitest";
import { accountLabel, check, create, diff } from "../../../../providers/credential/handlers.ts";
import type { TotpCredentialInputs } from "../../../../providers/credential/types.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

describe("check", () => {
  it("normalises a supplied secret and defaults the domain", () => {
    const r = check({ userName: "alice", issuer: "ACME", secret: "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp" });
    expect(r.failures).toEqual([]);
    expect(r.inputs).toMatchObject({ userName: "alice", userDomain: "Default", secret: SECRET });
  });

  it.each([
    ["lower-case non-base32", "qwertyuiop0189asdfghjkl0189zx"],
    ["under 128 bits", "JBSWY3DPEHPK3PXP"],
    ["non-base32", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX1"],
  ])("refuses a %s secret, naming the property and not the secret", (_w, secret) => {
    const r = check({ userName: "alice", issuer: "ACME", secret });
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]?.property).toBe("secret");
    expect(r.failures[0]?.reason).toMatch(/invalid supplied secret/);
    expect(r.failures[0]?.reason).not.toContain(secret.slice(0, 10));
  });

  it("reports every problem at once", () => {
    const r = check({ issuer: "a:b", account: "" });
    expect(r.failures.map((f) => f.property).sort()).toEqual(["account", "issuer", "userId"]);
  });
});

describe("diff", () => {
  const olds = {
    userName: "alice",
    userDomain: "Default",
    issuer: "ACME",
    rotationTrigger: "1",
    secret: SECRET,
    credentialId: "c1",
    mfa: { posture: "staged" },
    __provider: "old code",
  };
  const news = {
    userName: "alice",
    userDomain: "Default",
    issuer: "ACME",
    rotationTrigger: "1",
    __provider: "new code",
  };

  it("re-applies the posture for a state without one (0.1, 0.2), new posture settings, or a user found open", () => {
    const { mfa: _none, ...earlier } = olds;
    expect(diff(earlier, news).changes).toBe(true);
    expect(diff(olds, { ...news, authMethods: "password,token,totp" }).changes).toBe(true);
    expect(diff(olds, { ...news, allowTotpOnlyLogin: true }).changes).toBe(true);
    expect(diff({ ...olds, mfa: { posture: "open" } }, news).changes).toBe(true);
    // Opted in to TOTP-only logins, an open user is what was asked for.
    expect(
      diff({ ...olds, mfa: { posture: "open" }, allowTotpOnlyLogin: true }, { ...news, allowTotpOnlyLogin: true })
        .changes,
    ).toBe(false);
    // What the program observed of the user is never compared.
    expect(diff(olds, { ...news, previousMfa: { enabled: false, rules: [["password"]] } }).changes).toBe(false);
  });

  it("a state create wrote, the same inputs checked again and new provider code: no replacement, no update", async () => {
    // What the engine hands diff: the outputs create returned plus the provider it stored, and
    // the inputs as check returns them plus the provider of this run. A diff that compared the
    // provider, or every stored key, would update (or replace) every credential on each release.
    const ks = fakeKeystone();
    const at = Date.parse("2027-01-01T00:00:00Z");
    const args = { userId: "u1", userChecked: true, issuer: "ACME", rotationTrigger: "1", rotationDays: 30 };
    const { outs } = await create(check(args).inputs as unknown as TotpCredentialInputs, {
      client: () => ks.client,
      now: () => new Date(at),
      existing: async () => [],
    });
    const stored = { ...outs, __provider: "provider as 0.2 serialised it" };
    const rerun = { ...check(args).inputs, __provider: "provider as this version serialises it" };
    const day = new Date(at + 86_400_000);
    expect(diff(stored, rerun, day)).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
    // The same pair is not blind: a real input change beside the provider's still counts.
    expect(diff(stored, { ...rerun, issuer: "ACME 2" }, day)).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
    expect(diff(stored, { ...rerun, userId: "u2" }, day).replaces).toEqual(["userId"]);
  });

  it("replaces when the user changes", () => {
    expect(diff(olds, { ...news, userName: "bob" }).replaces).toEqual(["userName"]);
    expect(diff(olds, { ...news, userDomain: "eng" }).replaces).toEqual(["userDomain"]);
  });

  it("updates when the trigger, a supplied secret or a label changes", () => {
    expect(diff(olds, { ...news, rotationTrigger: "2" })).toMatchObject({ changes: true, replaces: [] });
    expect(diff(olds, { ...news, rotationTrigger: { n: 1 } })).toMatchObject({ changes: true });
    expect(diff(olds, { ...news, secret: "A".repeat(32) })).toMatchObject({ changes: true, replaces: [] });
    expect(diff(olds, { ...news, secret: SECRET }).changes).toBe(false);
    expect(diff(olds, { ...news, issuer: "Other" }).changes).toBe(true);
  });
});

describe("accountLabel", () => {
  it("defaults to name@domain, then the ID", () => {
    expect(accountLabel({ userName: "a", userDomain: "eng", issuer: "x" })).toBe("a@eng");
    expect(accountLabel({ userId: "123", issuer: "x" })).toBe("123");
    expect(accountLabel({ userId: "123", issuer: "x", account: "a@example.com" })).toBe("a@example.com");
  });
});
