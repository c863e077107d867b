/**
 * Rotation logic of the credential handlers against an in-process Keystone double (the real
 * thing is exercised in test/e2e/rotation.test.ts): when a rotation is due, what a rotation
 * keeps valid, and what a credential on its own retires when (the 0.1 delivery's retirement:
 * test/unit/providers/legacy/delivery/handlers.test.ts).
 */
import { describe, expect, it } from "vitest";
import type { HandlerContext } from "../../../../providers/credential/handlers.ts";
import {
  create,
  diff,
  nextRotation,
  remove,
  rotationReason,
  update,
} from "../../../../providers/credential/handlers.ts";
import type { TotpCredentialOutputs } from "../../../../providers/credential/types.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = Date.parse("2027-01-01T00:00:00Z");

function ctxAt(ks: ReturnType<typeof fakeKeystone>, t: number): HandlerContext {
  return { client: () => ks.client, now: () => new Date(t) };
}

const base = { userId: "u1", userChecked: true, issuer: "ACME", account: "alice@Default" };

describe("when a rotation is due", () => {
  it("nextRotation is rotatedAt + rotationDays, and never for 0 days or a supplied secret", () => {
    expect(nextRotation("2027-01-01T00:00:00.000Z", 30)?.toISOString()).toBe("2027-01-31T00:00:00.000Z");
    expect(nextRotation("2027-01-01T00:00:00.000Z", 0)).toBeUndefined();
    expect(nextRotation("2027-01-01T00:00:00.000Z", undefined)).toBeUndefined();
    expect(nextRotation("2027-01-01T00:00:00.000Z", 30, "SUPPLIED")).toBeUndefined();
    expect(nextRotation("not a date", 30)).toBeUndefined();
  });

  it("diff: due only at or after the deadline, by the clock it is given", () => {
    const olds = { ...base, rotatedAt: new Date(T0).toISOString(), secret: "S", mfa: { posture: "staged" } };
    const news = { ...base, rotationDays: 30 };
    expect(diff(olds, news, new Date(T0 + 30 * DAY - 1)).changes).toBe(false);
    expect(diff(olds, news, new Date(T0 + 30 * DAY))).toEqual({
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
    expect(rotationReason(olds, news, new Date(T0 + 31 * DAY))).toBe("scheduled");
  });

  it("diff: a rotate request rotates once; the same request or none does nothing", () => {
    const olds = { ...base, rotatedAt: new Date(T0).toISOString(), rotateRequest: "r1" };
    expect(rotationReason(olds, { ...base, rotateRequest: "r2" }, new Date(T0))).toBe("requested");
    expect(rotationReason(olds, { ...base, rotateRequest: "r1" }, new Date(T0))).toBeUndefined();
    expect(rotationReason(olds, { ...base }, new Date(T0))).toBeUndefined();
  });
});

describe("credential rotation keeps the old credential valid", () => {
  it("create hands credentials the user already held to retirement (remove) or reports them (keep)", async () => {
    const ks = fakeKeystone({ u1: ["leftover"] });
    const r = await create({ ...base, unmanaged: "remove" }, { ...ctxAt(ks, T0), existing: async () => ks.held("u1") });
    expect(r.outs.retiring).toEqual(["leftover"]);
    expect(r.outs.unmanagedIds).toEqual([]);
    const k = await create({ ...base, unmanaged: "keep" }, { ...ctxAt(ks, T0), existing: async () => ks.held("u1") });
    expect(k.outs.retiring).toEqual([]);
    expect(k.outs.unmanagedIds).toEqual(["leftover"]);
    expect(ks.deleted).toEqual([]); // nothing is deleted before the new secret is delivered
  });

  it("a due rotation POSTs a new credential and lists the old one as retiring; nothing is deleted", async () => {
    const ks = fakeKeystone();
    const c = await create({ ...base, rotationDays: 30 }, { ...ctxAt(ks, T0), existing: async () => [] });
    const olds = c.outs as TotpCredentialOutputs;
    const u = await update(c.id, olds, { ...base, rotationDays: 30 }, ctxAt(ks, T0 + 31 * DAY));
    expect(u.outs.credentialId).not.toBe(olds.credentialId);
    expect(u.outs.retiring).toEqual([olds.credentialId]);
    expect(u.outs.secret).not.toBe(olds.secret);
    expect(u.outs.rotatedAt).toBe(new Date(T0 + 31 * DAY).toISOString());
    expect(u.outs.createdAt).toBe(olds.createdAt);
    expect(ks.ids("u1").sort()).toEqual([olds.credentialId, u.outs.credentialId].sort());
    expect(ks.deleted).toEqual([]);
  });

  it("under keep, a rotation leaves credentials it does not manage alone; under remove it retires them", async () => {
    for (const policy of ["keep", "remove"] as const) {
      const ks = fakeKeystone();
      const c = await create({ ...base, unmanaged: policy }, { ...ctxAt(ks, T0), existing: async () => [] });
      await ks.client.createTotpCredential("u1", "BYHAND");
      const byHand = ks.ids("u1").find((id) => id !== c.outs.credentialId) as string;
      const u = await update(
        c.id,
        c.outs as TotpCredentialOutputs,
        { ...base, unmanaged: policy, rotateRequest: "r" },
        ctxAt(ks, T0),
      );
      if (policy === "keep") {
        expect(u.outs.retiring).toEqual([c.outs.credentialId]);
        expect(u.outs.unmanagedIds).toEqual([byHand]);
      } else {
        expect([...u.outs.retiring].sort()).toEqual([c.outs.credentialId, byHand].sort());
      }
    }
  });

  it("an address change (rotation trigger) replaces the secret in place: same credential, old secret dead", async () => {
    const ks = fakeKeystone();
    const c = await create({ ...base, rotationTrigger: "a" }, { ...ctxAt(ks, T0), existing: async () => [] });
    const u = await update(c.id, c.outs as TotpCredentialOutputs, { ...base, rotationTrigger: "b" }, ctxAt(ks, T0));
    expect(u.outs.credentialId).toBe(c.outs.credentialId);
    expect(u.outs.secret).not.toBe(c.outs.secret);
    expect(ks.ids("u1")).toEqual([c.outs.credentialId]);
  });

  it("delete removes the current and every retiring credential", async () => {
    const ks = fakeKeystone();
    const c = await create(base, { ...ctxAt(ks, T0), existing: async () => [] });
    const u = await update(c.id, c.outs as TotpCredentialOutputs, { ...base, rotateRequest: "r" }, ctxAt(ks, T0));
    await remove(c.id, u.outs, ctxAt(ks, T0));
    expect(ks.ids("u1")).toEqual([]);
  });
});

describe("TotpCredential on its own retires what it replaced (it cannot see a delivery)", () => {
  it("keeps the old credential for graceHours after the rotation, then the next run deletes it", async () => {
    const ks = fakeKeystone();
    const inputs = { ...base, rotationDays: 30, graceHours: 12 };
    const c = await create(inputs, { ...ctxAt(ks, T0), existing: async () => [] });
    const r = await update(c.id, c.outs as TotpCredentialOutputs, inputs, ctxAt(ks, T0 + 31 * DAY));
    const old = c.outs.credentialId;
    expect(r.outs.retiring).toEqual([old]);
    expect(r.outs.retireAfter).toBe(new Date(T0 + 31 * DAY + 12 * HOUR).toISOString());
    const rotated = r.outs as unknown as Record<string, unknown>;
    // Inside the window: no change, both credentials valid.
    expect(diff(rotated, inputs, new Date(T0 + 31 * DAY + 11 * HOUR)).changes).toBe(false);
    expect(ks.ids("u1").sort()).toEqual([old, r.outs.credentialId].sort());
    // Past it: an update that deletes the old one and only that.
    const past = T0 + 31 * DAY + 12 * HOUR;
    expect(diff(rotated, inputs, new Date(past)).changes).toBe(true);
    const done = await update(c.id, r.outs, inputs, ctxAt(ks, past));
    expect(ks.deleted).toEqual([old]);
    expect(ks.ids("u1")).toEqual([r.outs.credentialId]);
    expect(done.outs.retiring).toEqual([]);
    expect(done.outs.retireAfter).toBeUndefined();
    expect(diff(done.outs as unknown as Record<string, unknown>, inputs, new Date(past + DAY)).changes).toBe(false);
  });

  it("a failed delete fails the update, and the old credential stays listed for the next run", async () => {
    const ks = fakeKeystone();
    const inputs = { ...base, rotationDays: 30, graceHours: 1 };
    const c = await create(inputs, { ...ctxAt(ks, T0), existing: async () => [] });
    const r = await update(c.id, c.outs as TotpCredentialOutputs, inputs, ctxAt(ks, T0 + 31 * DAY));
    ks.failDeletes(true);
    await expect(update(c.id, r.outs, inputs, ctxAt(ks, T0 + 31 * DAY + HOUR))).rejects.toThrow();
    expect(ks.ids("u1")).toContain(c.outs.credentialId);
  });
});

describe("two TotpCredentials of one user in one stack (each its own owner)", () => {
  const STACK = "keystone-totp/dev";
  const first = { ...base, stack: STACK, owner: "keystone-totp/dev/credential/alice", unmanaged: "keep" as const };
  const second = { ...first, owner: "keystone-totp/dev/credential/aliceSupplied", account: "alice (supplied)" };

  it("the second's create neither takes over nor retires the first's credential, and its delete keeps it", async () => {
    const ks = fakeKeystone();
    const a = await create(first, ctxAt(ks, T0));
    const b = await create(second, ctxAt(ks, T0));
    expect(b.id).not.toBe(a.id);
    expect(b.outs.retiring).toEqual([]);
    const rules = ks.options("u1");
    await remove(b.id, b.outs, ctxAt(ks, T0));
    expect(ks.ids("u1")).toEqual([a.id]);
    // The first's secret still logs in: without the rules, with a TOTP code alone.
    expect(ks.options("u1")).toEqual(rules);
    expect(rules.multi_factor_auth_rules).toBeDefined();
  });
});
