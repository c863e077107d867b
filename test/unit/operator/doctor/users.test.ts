/**
 * Counting enrollment states from users' MFA options and credential counts, and the CSV check
 * on the shared fixtures. Against the real Keystone: test/integration/doctor/keystone.test.ts.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { KeystoneUser } from "../../../../lib/keystone/client.ts";
import type { ResolvedUser } from "../../../../lib/users/resolve.ts";
import {
  checkCsv,
  checkPasswordExpiry,
  countEnrollment,
  mfaFacts,
  nameSome,
} from "../../../../operator/doctor/users.ts";
import { REPO } from "../../../support/keystone.ts";

const FIXTURES = join(REPO, "test/fixtures/csv");

function user(id: string, options: Record<string, unknown> = {}, enabled = true): ResolvedUser {
  const u: KeystoneUser = { id, name: id, domainId: "default", email: undefined, enabled, options };
  return { row: { username: id, domain: "Default", userId: undefined, key: `${id}@Default` }, user: u };
}

const MFA = { multi_factor_auth_enabled: true, multi_factor_auth_rules: [["password", "totp"]] };

describe("mfaFacts", () => {
  it("requires TOTP only when MFA is on and every rule names totp", () => {
    expect(mfaFacts({ options: MFA }).requiresTotp).toBe(true);
    expect(mfaFacts({ options: { ...MFA, multi_factor_auth_enabled: false } }).requiresTotp).toBe(false);
    expect(mfaFacts({ options: { multi_factor_auth_enabled: true } }).requiresTotp).toBe(false);
    expect(
      mfaFacts({
        options: {
          multi_factor_auth_enabled: true,
          multi_factor_auth_rules: [
            ["password", "totp"],
            ["password", "application_credential"],
          ],
        },
      }).requiresTotp,
    ).toBe(false);
    expect(mfaFacts({ options: { multi_factor_auth_enabled: true, multi_factor_auth_rules: "junk" } }).rules).toEqual(
      [],
    );
  });
});

describe("mfaFacts with multi_factor_auth_enabled unset", () => {
  const RULES_ONLY = { multi_factor_auth_rules: [["password", "totp"]] };

  it("treats unset as on, as Keystone does: only false turns the rules off", () => {
    expect(mfaFacts({ options: RULES_ONLY })).toMatchObject({ enabled: true, requiresTotp: true });
    expect(mfaFacts({ options: { ...RULES_ONLY, multi_factor_auth_enabled: false } })).toMatchObject({
      enabled: false,
      requiresTotp: false,
    });
  });

  it("counts a user with rules but no enabled flag and no credential as locked out", () => {
    const counts = countEnrollment(
      [user("unset-no-cred", RULES_ONLY), user("unset-cred", RULES_ONLY)],
      new Map([["unset-cred", 1]]),
    );
    expect(counts.mfaWithoutCredential).toEqual(["unset-no-cred@Default"]);
    expect(counts.credentialWithoutMfa).toEqual([]);
  });

  it("does not count a rule of methods Keystone lacks as requiring TOTP (LP#2102096 lets any login in)", () => {
    const options = { multi_factor_auth_rules: [["totp", "application_credential"]] };
    expect(mfaFacts({ options }, ["password", "token", "application_credential"]).requiresTotp).toBe(false);
    expect(mfaFacts({ options }, ["password", "token", "totp", "application_credential"]).requiresTotp).toBe(true);
  });
});

describe("countEnrollment", () => {
  it("counts credentials, MFA without credential, credential without MFA, and disabled users", () => {
    const users = [
      user("mfa-no-cred", MFA),
      user("cred-no-mfa"),
      user("cred-and-mfa", MFA),
      user("plain"),
      user("rotating", MFA),
      user("off", {}, false),
    ];
    const counts = countEnrollment(
      users,
      new Map([
        ["cred-no-mfa", 1],
        ["cred-and-mfa", 1],
        ["rotating", 2],
      ]),
    );
    expect(counts.users).toBe(6);
    expect(counts.withCredential).toEqual(["cred-no-mfa@Default", "cred-and-mfa@Default", "rotating@Default"]);
    expect(counts.withSeveralCredentials).toEqual(["rotating@Default"]);
    expect(counts.mfaWithoutCredential).toEqual(["mfa-no-cred@Default"]);
    expect(counts.credentialWithoutMfa).toEqual(["cred-no-mfa@Default"]);
    expect(counts.disabled).toEqual(["off@Default"]);
  });
});

describe("checkCsv", () => {
  it("accepts a valid file", () => {
    const r = checkCsv(join(FIXTURES, "reordered-columns.csv"));
    expect(r.result.status).toBe("ok");
    expect(r.rows?.length).toBeGreaterThan(0);
  });

  it("lists the problems of an invalid file, with exit code 2", () => {
    const r = checkCsv(join(FIXTURES, "bad-rows.csv"));
    expect(r.rows).toBeUndefined();
    expect(r.result).toMatchObject({ status: "failure", code: "E_CSV_ROW" });
    expect(r.result.message).toMatch(/line 3/);
    expect(((r.result.details?.problems ?? []) as unknown[]).length).toBeGreaterThan(1);
  });

  it("refuses a missing file", () => {
    expect(checkCsv(join(FIXTURES, "no-such.csv")).result).toMatchObject({ status: "failure", code: "E_CSV" });
  });
});

describe("nameSome", () => {
  it("names at most ten, then counts", () => {
    const names = Array.from({ length: 12 }, (_, i) => `u${i}`);
    expect(nameSome(names)).toBe("u0, u1, u2, u3, u4, u5, u6, u7, u8, u9 and 2 more");
    expect(nameSome(["a"])).toBe("a");
  });
});

describe("checkPasswordExpiry", () => {
  const at = (id: string, marker: unknown, passwordExpiresAt?: string): ResolvedUser => {
    const u = user(id);
    return {
      ...u,
      user: { ...u.user, marker, ...(passwordExpiresAt ? { passwordExpiresAt } : {}) },
    } as ResolvedUser;
  };
  const MARK = { v: 1, previous: { enabled: null, rules: null } };
  it("warns in one line, with a count and names, for enrolled users whose password expires", () => {
    const r = checkPasswordExpiry([
      at("a", MARK, "2027-01-01T00:00:00.000000"),
      at("b", MARK),
      at("c", undefined, "2027-01-01T00:00:00.000000"),
      at("d", MARK, "2027-02-01T00:00:00.000000"),
    ]);
    expect(r.status).toBe("warning");
    expect(r.message).toMatch(
      /^2 enrolled user\(s\) have a password that expires .*Keystone 2026\.2 \(30\).*: a@Default, d@Default$/,
    );
    expect(r.message).not.toContain("\n");
  });
  it("is ok when no enrolled user's password expires", () => {
    expect(checkPasswordExpiry([at("b", MARK), at("c", undefined, "2027-01-01T00:00:00")]).status).toBe("ok");
  });
});
