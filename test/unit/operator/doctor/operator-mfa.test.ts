/**
 * The operator's own MFA rules check against a scripted Keystone: active rules warn, no rules
 * (or disabled ones) are ok; it only reads. Against the real Keystone:
 * test/integration/lib/keystone/operator-mfa.test.ts and the doctor's integration tests.
 */
import { describe, expect, it } from "vitest";
import { checkOperatorMfa, isPasscodeRefusal } from "../../../../operator/doctor/operator-mfa.ts";
import { json, PASSCODE_403, scriptedKeystone } from "../../../support/doctor.ts";

describe("checkOperatorMfa (scripted Keystone)", () => {
  it("warns when the operator's own account has active MFA rules, ok without (disabled rules are none)", async () => {
    const withRules = (options: Record<string, unknown>) =>
      scriptedKeystone((req, path) =>
        req.method === "GET" && path === "/users/op-id" ? json(200, { user: { options } }) : undefined,
      );
    const warnK = withRules({ multi_factor_auth_rules: [["password", "totp"]] });
    const warn = await checkOperatorMfa(warnK.session);
    expect(warn.status).toBe("warning");
    expect(warn.message).toMatch(
      /every TOTP credential change and every MFA rule change it makes then needs a fresh TOTP code/,
    );
    expect(warnK.seen.filter((q) => q.url.includes("/users/")).map((q) => q.method)).toEqual(["GET"]);
    expect((await checkOperatorMfa(withRules({}).session)).status).toBe("ok");
    expect(
      (
        await checkOperatorMfa(
          withRules({ multi_factor_auth_enabled: false, multi_factor_auth_rules: [["password"]] }).session,
        )
      ).status,
    ).toBe("ok");
  });
});

describe("isPasscodeRefusal", () => {
  it("is Keystone 30's 403 for want of the operator's passcode, and nothing else", () => {
    expect(isPasscodeRefusal(PASSCODE_403)).toBe(true);
    expect(isPasscodeRefusal(json(403, { error: { message: "You are not authorized" } }))).toBe(false);
    expect(isPasscodeRefusal({ ...PASSCODE_403, status: 401 })).toBe(false);
  });
});
