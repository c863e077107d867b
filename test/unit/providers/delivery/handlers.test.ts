import { describe, expect, it } from "vitest";
import { check, diff } from "../../../../providers/delivery/handlers.ts";

const olds = {
  userKey: "alice@Default",
  email: "alice@example.com",
  displayName: "Alice",
  issuer: "ACME",
  account: "alice@Default",
  credentialId: "c1",
  fingerprint: "sha256:1111",
  deliveredTo: "alice@example.com",
  __provider: "old",
};
const news = { ...olds, secret: "S", otpauthUri: "U", __provider: "new" };

describe("delivery diff", () => {
  it("sends nothing when only the provider's code changed", () => {
    expect(diff(olds, news)).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
  });

  it("sends a new message for a new secret, credential, address or resend trigger", () => {
    expect(diff(olds, { ...news, fingerprint: "sha256:2222" }).replaces).toEqual(["fingerprint"]);
    expect(diff(olds, { ...news, credentialId: "c2" }).replaces).toEqual(["credentialId"]);
    expect(diff(olds, { ...news, email: "new@example.com" }).replaces).toEqual(["email"]);
    expect(diff(olds, { ...news, resendTrigger: "x" }).replaces).toEqual(["resendTrigger"]);
  });

  it("records label changes without sending", () => {
    for (const change of [
      { issuer: "Other" },
      { displayName: "Al" },
      { account: "al" },
      { email: "ALICE@example.com" },
    ]) {
      const d = diff(olds, { ...news, ...change });
      expect(d.changes).toBe(true);
      expect(d.replaces).toEqual([]);
    }
  });
});

describe("delivery check", () => {
  it("refuses a bad address", () => {
    expect(check({ email: "not an address" }).failures[0]?.property).toBe("email");
    expect(check({ email: " bob@example.org " })).toEqual({ inputs: { email: "bob@example.org" }, failures: [] });
  });
});

describe("packed credential input", () => {
  it("spreads into the flat view and rebuilds the same URI the credential made", async () => {
    const { flatInputs } = await import("../../../../providers/delivery/handlers.ts");
    const { otpauthUri } = await import("../../../../lib/totp/uri.ts");
    const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const flat = flatInputs({
      ...olds,
      issuer: "ACME Cloud",
      account: "zoë@Default",
      credential: { id: "c9", fingerprint: "sha256:9", secret, reason: "rotation", retiring: ["c1"] },
    });
    expect(flat).toMatchObject({
      credentialId: "c9",
      fingerprint: "sha256:9",
      secret,
      reason: "rotation",
      retiring: ["c1"],
    });
    expect(flat.otpauthUri).toBe(otpauthUri({ issuer: "ACME Cloud", account: "zoë@Default", secret }));
  });

  it("a packed credential not yet known (preview) counts as a new message", () => {
    expect(diff(olds, { ...news, credential: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" }).replaces).toContain(
      "credential",
    );
    const known = { id: "c1", fingerprint: "sha256:1111", secret: "S", reason: "new", retiring: [] };
    expect(diff(olds, { ...olds, credential: known })).toEqual({
      changes: false,
      replaces: [],
      deleteBeforeReplace: false,
    });
  });
});
