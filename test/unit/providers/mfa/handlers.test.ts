/**
 * The MfaEnforcement handlers against the in-process Keystone double: which rules are written
 * when, and what a removal leaves. The real Keystone's login matrix is in the e2e tests.
 */
import { describe, expect, it } from "vitest";
import { create, diff, type MfaOutputs, remove, update } from "../../../../providers/mfa/handlers.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const T0 = new Date("2027-01-01T00:00:00Z");
const bob = { userId: "u1", userKey: "bob@Default", deliveredAt: T0.toISOString(), userChecked: true };

function setup() {
  const ks = fakeKeystone();
  return { ks, ctx: { client: () => ks.client, now: () => T0 } };
}

describe("MfaEnforcement", () => {
  it("requires password + TOTP and keeps application credentials, with the marker of the options before", async () => {
    const s = setup();
    const { outs } = await create(bob, s.ctx);
    expect(s.ks.options("u1")).toEqual({
      multi_factor_auth_enabled: true,
      multi_factor_auth_rules: [["password", "totp"], ["application_credential"]],
    });
    expect(s.ks.writes[0]?.marker).toEqual({
      v: 1,
      previous: { enabled: null, rules: null },
      enforcedBy: outs.enforcedBy,
    });
    expect(outs.enforcedBy).toMatch(/^[0-9a-f-]{36}$/);
    expect(outs.posture).toBe("enforced");
  });

  it("refuses application credentials when asked", async () => {
    const s = setup();
    await create({ ...bob, refuseApplicationCredentials: true }, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password", "totp"]]);
  });

  it("a 0.2 state (rules that refused application credentials) moves to the new rules, keeping its record", async () => {
    const s = setup();
    const earlier = {
      ...bob,
      rules: [["password", "totp"]],
      previousEnabled: false,
      previousRules: [["password"]],
      enforcedAt: T0.toISOString(),
    } as unknown as MfaOutputs;
    expect(diff(earlier as unknown as Record<string, unknown>, bob).changes).toBe(true);
    const { outs } = await update("u1", earlier, bob, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password", "totp"], ["application_credential"]]);
    // The options recorded by 0.2 before its enforcement are what a removal gives back.
    expect(s.ks.writes.at(-1)?.marker).toEqual({
      v: 1,
      previous: { enabled: false, rules: [["password"]] },
      enforcedBy: outs.enforcedBy,
    });
    expect(outs.enforcedBy).toBeDefined();
    expect(diff(outs as unknown as Record<string, unknown>, bob).changes).toBe(false);
  });

  it("removal returns the user to the staged rules, never to options that let a TOTP code alone in", async () => {
    const s = setup();
    const { outs } = await create(bob, s.ctx);
    await remove("u1", outs, s.ctx);
    expect(s.ks.options("u1")).toEqual({
      multi_factor_auth_enabled: true,
      multi_factor_auth_rules: [["password"], ["application_credential"]],
    });
    expect(s.ks.writes.at(-1)?.marker).toEqual({ v: 1, previous: { enabled: null, rules: null } });
  });

  it("a renamed user: deleting the old name's enforcement leaves the new one's rules in force", async () => {
    const s = setup();
    const old = (await create(bob, s.ctx)).outs;
    // The new name's enforcement is created before the old one is deleted (same user ID).
    const renamed = (await create({ ...bob, userKey: "robert@Default" }, s.ctx)).outs;
    expect(renamed.enforcedBy).not.toBe(old.enforcedBy);
    const writes = s.ks.writes.length;
    await remove("u1", old, s.ctx);
    expect(s.ks.writes.length).toBe(writes);
    const enforced = {
      multi_factor_auth_enabled: true,
      multi_factor_auth_rules: [["password", "totp"], ["application_credential"]],
    };
    expect(s.ks.options("u1")).toEqual(enforced);
    await remove("u1", renamed, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password"], ["application_credential"]]);
  });

  it("a state written before enforcedBy existed: loosens its own rules, not another enforcement's", async () => {
    const s = setup();
    const { enforcedBy: _mark, ...legacy } = (await create(bob, s.ctx)).outs;
    // Its rules as it wrote them then: a marker without enforcedBy.
    await s.ks.client.writeUserMfa(
      "u1",
      { enabled: true, rules: [["password", "totp"]] },
      {
        v: 1,
        previous: { enabled: null, rules: null },
      },
    );
    await remove("u1", legacy as MfaOutputs, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password"], ["application_credential"]]);

    const other = (await create({ ...bob, userKey: "robert@Default" }, s.ctx)).outs;
    await remove("u1", legacy as MfaOutputs, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password", "totp"], ["application_credential"]]);
    expect(other.enforcedBy).toBeDefined();
  });

  it("an update keeps its mark, so that its own delete still loosens", async () => {
    const s = setup();
    const { outs } = await create(bob, s.ctx);
    const next = (await update("u1", outs, { ...bob, refuseApplicationCredentials: true }, s.ctx)).outs;
    expect(next.enforcedBy).toBe(outs.enforcedBy);
    await remove("u1", next, s.ctx);
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual([["password"], ["application_credential"]]);
  });
});
