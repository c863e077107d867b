/**
 * The doctor's posture checks that need no network: who a TOTP code alone logs in, and rules
 * naming methods Keystone lacks. Against the real Keystone: test/integration/doctor/posture.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { KeystoneUser } from "../../../../lib/keystone/client.ts";
import type { PostureSettings } from "../../../../lib/mfa/posture.ts";
import type { ResolvedUser } from "../../../../lib/users/resolve.ts";
import { checkRuleMethods, checkTotpAlone } from "../../../../operator/doctor/posture.ts";

const METHODS = ["external", "password", "token", "oauth1", "totp", "application_credential"];
const S: PostureSettings = {
  methods: METHODS,
  allowTotpOnlyLogin: false,
  refuseApplicationCredentials: false,
  replaceOwnRules: false,
};

function user(id: string, options: Record<string, unknown> = {}): ResolvedUser {
  const u: KeystoneUser = { id, name: id, domainId: "default", email: undefined, enabled: true, options };
  return { row: { username: id, domain: "Default", userId: undefined, key: `${id}@Default` }, user: u };
}

const rules = (r: string[][], enabled?: boolean) => ({
  multi_factor_auth_rules: r,
  ...(enabled === undefined ? {} : { multi_factor_auth_enabled: enabled }),
});

describe("users.totp-alone", () => {
  const users = [
    user("none"),
    user("off", rules([["password", "totp"]], false)),
    user("totp-rule", rules([["password", "totp"], ["totp"]])),
    user("staged", rules([["password"], ["application_credential"]])),
    user("unset-flag", rules([["password", "totp"]])),
    user("not-enrolled"),
    user("own-open", rules([["totp"]])),
  ];
  const creds = new Map(["none", "off", "totp-rule", "staged", "unset-flag"].map((id) => [id, 1]));

  it("fails for enrolled users whose options admit a code alone, naming them and the command that fixes it", () => {
    const c = checkTotpAlone(users, creds, S);
    expect(c.status).toBe("failure");
    expect(c.message).toMatch(/^3 of 5 enrolled user\(s\) can log in with a TOTP code alone/);
    expect(c.details?.open).toEqual(["none@Default", "off@Default", "totp-rule@Default"]);
    expect(c.message).toContain("1 not enrolled yet whose own rules let TOTP alone in");
    expect(c.message).toContain("own-open@Default");
    expect(c.fix).toContain("npm run provision -- up --refresh");
  });

  it("only warns when keystone-totp:allowTotpOnlyLogin chose it, and is ok when every rule refuses a code alone", () => {
    expect(checkTotpAlone(users, creds, { ...S, allowTotpOnlyLogin: true }).status).toBe("warning");
    const safe = checkTotpAlone([users[3] as ResolvedUser, users[4] as ResolvedUser], creds, S);
    expect(safe.status).toBe("ok");
    expect(safe.message).toBe("no enrolled user (of 2) can log in with a TOTP code alone");
  });

  it("counts a rule of methods Keystone lacks as admitting a code alone (LP#2102096)", () => {
    const c = checkTotpAlone([user("x", rules([["password", "totp"], ["saml2"]]))], new Map([["x", 1]]), S);
    expect(c.status).toBe("failure");
  });
});

describe("users.rule-methods", () => {
  it("fails on a rule made only of missing methods, warns on a rule cut down, and names the methods", () => {
    const c = checkRuleMethods(
      [user("void", rules([["password", "totp"], ["saml2"]])), user("cut", rules([["password", "oidc"]])), user("ok")],
      S,
      false,
    );
    expect(c.status).toBe("failure");
    expect(c.message).toContain("LP#2102096");
    expect(c.message).toContain("void@Default");
    expect(c.message).toContain("cut@Default");
    expect(c.details?.missing).toEqual(["saml2", "oidc"]);
  });

  it("ignores rules switched off, and shows the rules the tool writes", () => {
    const c = checkRuleMethods([user("off", rules([["saml2"]], false))], S, false);
    expect(c.status).toBe("ok");
    expect(c.details?.toolRules).toEqual([["external"], ["password"], ["oauth1"], ["application_credential"]]);
    const enforced = checkRuleMethods([], S, true);
    expect(enforced.details?.toolRules).toEqual([
      ["external"],
      ["password", "totp"],
      ["oauth1"],
      ["application_credential"],
    ]);
  });

  it("fails with E_CONFIG when enforcement needs a method Keystone lacks", () => {
    const c = checkRuleMethods([], { ...S, methods: ["password", "token"] }, true);
    expect(c).toMatchObject({ status: "failure", code: "E_CONFIG" });
    expect(c.message).toContain("keystone-totp:enforceMfa cannot be applied");
  });
});
