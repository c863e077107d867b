import { describe, expect, it } from "vitest";
import {
  admits,
  admitsTotpAlone,
  decidePosture,
  enforcedRules,
  markerOf,
  NO_OPTIONS,
  type PostureSettings,
  postureOf,
  previousOptions,
  stagedRules,
} from "../../../../lib/mfa/posture.ts";

/** The [auth] methods of the test Keystone (scripts/keystone.sh). */
const METHODS = ["external", "password", "token", "oauth1", "totp", "application_credential"];
const S: PostureSettings = {
  methods: METHODS,
  allowTotpOnlyLogin: false,
  refuseApplicationCredentials: false,
  replaceOwnRules: false,
};

describe("the rules Keystone applies", () => {
  it("no rules, or rules turned off, admit a TOTP code alone (Keystone's default)", () => {
    expect(admitsTotpAlone(NO_OPTIONS, METHODS)).toBe(true);
    expect(admitsTotpAlone({ enabled: false, rules: [["password", "totp"]] }, METHODS)).toBe(true);
    // Unset `enabled` is on: only false turns rules off.
    expect(admitsTotpAlone({ enabled: null, rules: [["password", "totp"]] }, METHODS)).toBe(false);
  });

  it("a rule of methods Keystone does not have admits any login (before 28.0, LP#2102096)", () => {
    expect(admits([["password", "totp"], ["saml2"]], ["totp"], METHODS)).toBe(true);
    // ... and a method missing from a rule is cut away: ["password","x509"] is ["password"].
    expect(admits([["password", "x509"]], ["password"], METHODS)).toBe(true);
    expect(admits([["password", "x509"]], ["totp"], METHODS)).toBe(false);
  });
});

describe("staged and enforced rules (the login matrix)", () => {
  const staged = stagedRules(METHODS);
  const enforced = enforcedRules(S);

  it("staged: every login works as before except a TOTP code alone", () => {
    expect(staged).toEqual([["external"], ["password"], ["oauth1"], ["application_credential"]]);
    expect(admits(staged, ["totp"], METHODS)).toBe(false);
    expect(admits(staged, ["password"], METHODS)).toBe(true);
    expect(admits(staged, ["password", "totp"], METHODS)).toBe(true);
    expect(admits(staged, ["application_credential"], METHODS)).toBe(true);
  });

  it("enforced: password needs TOTP; application credentials and the other methods keep working", () => {
    expect(enforced).toEqual([["external"], ["password", "totp"], ["oauth1"], ["application_credential"]]);
    expect(admits(enforced, ["password"], METHODS)).toBe(false);
    expect(admits(enforced, ["totp"], METHODS)).toBe(false);
    expect(admits(enforced, ["password", "totp"], METHODS)).toBe(true);
    expect(admits(enforced, ["application_credential"], METHODS)).toBe(true);
    const refused = enforcedRules({ ...S, refuseApplicationCredentials: true });
    expect(admits(refused, ["application_credential"], METHODS)).toBe(false);
  });

  it("names only enabled methods: no application_credential rule where Keystone lacks the method", () => {
    const methods = ["password", "token", "totp"];
    expect(stagedRules(methods)).toEqual([["password"]]);
    expect(enforcedRules({ ...S, methods })).toEqual([["password", "totp"]]);
  });

  it("refuses to enforce where password or totp is not enabled (the rule would be cut to one method)", () => {
    expect(() => enforcedRules({ ...S, methods: ["password", "token"] })).toThrow(/'totp' is not in/);
  });
});

describe("decidePosture", () => {
  it("a user without rules is staged, then enforced", () => {
    expect(decidePosture(NO_OPTIONS, "staged", S)).toEqual({
      posture: "staged",
      write: { enabled: true, rules: stagedRules(METHODS) },
    });
    expect(decidePosture(NO_OPTIONS, "enforced", S).posture).toBe("enforced");
  });

  it("rules turned off by the operator count as none", () => {
    expect(decidePosture({ enabled: false, rules: [["password", "totp"]] }, "staged", S).posture).toBe("staged");
  });

  it("stricter own rules are kept; own rules that only refuse TOTP alone get TOTP added under enforcement", () => {
    expect(decidePosture({ enabled: true, rules: [["password", "totp"]] }, "staged", S)).toEqual({
      posture: "own",
      write: undefined,
    });
    expect(decidePosture({ enabled: true, rules: [["password", "totp"]] }, "enforced", S).write).toBeUndefined();
    // The operator blocked application credentials: enforcement must not let them in.
    const d = decidePosture({ enabled: null, rules: [["password"]] }, "enforced", S);
    expect(d.write?.rules).toEqual([["password", "totp"]]);
  });

  it("own rules that let TOTP alone in are refused, replaced on request, or kept when TOTP-only is allowed", () => {
    const open = { enabled: true, rules: [["password"], ["totp"]] };
    expect(() => decidePosture(open, "staged", S)).toThrow(/TOTP code alone/);
    expect(decidePosture(open, "staged", { ...S, replaceOwnRules: true }).posture).toBe("staged");
    expect(decidePosture(open, "staged", { ...S, allowTotpOnlyLogin: true })).toEqual({
      posture: "open",
      write: undefined,
    });
  });

  it("allowTotpOnlyLogin writes nothing for staging", () => {
    expect(decidePosture(NO_OPTIONS, "staged", { ...S, allowTotpOnlyLogin: true }).write).toBeUndefined();
  });
});

describe("the marker", () => {
  it("holds the options from before: a rerun after a crash never takes the tool's rules for the user's", () => {
    const user = {
      options: { multi_factor_auth_enabled: true, multi_factor_auth_rules: stagedRules(METHODS) },
      marker: { v: 1, previous: { enabled: false, rules: [["password"]] } },
    };
    expect(previousOptions(user)).toEqual({ enabled: false, rules: [["password"]] });
    expect(previousOptions({ options: user.options })).toEqual({
      enabled: true,
      rules: stagedRules(METHODS),
    });
    expect(markerOf(null)).toBeUndefined();
    expect(markerOf({ v: 2, previous: {} })).toBeUndefined();
  });

  it("postureOf reads what a user's options allow now", () => {
    const staged = { multi_factor_auth_enabled: true, multi_factor_auth_rules: stagedRules(METHODS) };
    const marker = { v: 1, previous: NO_OPTIONS };
    expect(postureOf({ options: {} }, METHODS)).toBe("open");
    expect(postureOf({ options: staged, marker }, METHODS)).toBe("staged");
    expect(postureOf({ options: { multi_factor_auth_rules: enforcedRules(S) }, marker }, METHODS)).toBe("enforced");
    expect(postureOf({ options: staged }, METHODS)).toBe("own");
  });
});
