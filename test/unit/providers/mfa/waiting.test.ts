/**
 * MfaEnforcement while the enrollment's delivery is unconfirmed (no `deliveredAt`: the message
 * may not have arrived, so the user may not hold the QR code): nothing is enforced until a run
 * confirms the delivery, and an enforcement already in force is never loosened for it.
 */
import { describe, expect, it } from "vitest";
import { create, diff, type MfaOutputs, remove, update } from "../../../../providers/mfa/handlers.ts";
import { fakeKeystone } from "../../../support/fake-keystone.ts";

const T0 = new Date("2027-01-01T00:00:00Z");
const waitingBob = { userId: "u1", userKey: "bob@Default", userChecked: true };
const deliveredBob = { ...waitingBob, deliveredAt: T0.toISOString() };
const enforced = [["password", "totp"], ["application_credential"]];

function setup() {
  const ks = fakeKeystone();
  return { ks, ctx: { client: () => ks.client, now: () => T0 } };
}

const asRecord = (o: MfaOutputs) => o as unknown as Record<string, unknown>;

describe("MfaEnforcement waiting for a confirmed delivery", () => {
  it("writes nothing while the delivery is unconfirmed, and is not an enforcement", async () => {
    const s = setup();
    const { id, outs } = await create(waitingBob, s.ctx);
    expect(id).toBe("u1");
    expect(s.ks.writes).toHaveLength(0);
    expect(outs.waiting).toBe(true);
    expect(outs.rules).toBeUndefined();
    expect(Object.values(outs).includes(undefined)).toBe(false);
    // A later run that still cannot confirm it changes nothing.
    expect(diff(asRecord(outs), waitingBob).changes).toBe(false);
    expect(diff(asRecord(outs), { ...waitingBob, deliveredAt: "" }).changes).toBe(false);
  });

  it("the run that confirms the delivery enforces, with the options from before", async () => {
    const s = setup();
    const { outs } = await create(waitingBob, s.ctx);
    expect(diff(asRecord(outs), deliveredBob).changes).toBe(true);
    const { outs: after } = await update("u1", outs, deliveredBob, s.ctx);
    expect(s.ks.options("u1")).toEqual({ multi_factor_auth_enabled: true, multi_factor_auth_rules: enforced });
    expect(s.ks.writes[0]?.marker).toEqual({
      v: 1,
      previous: { enabled: null, rules: null },
      enforcedBy: after.enforcedBy,
    });
    expect(after.posture).toBe("enforced");
    expect(after.waiting).toBeUndefined();
    expect(diff(asRecord(after), deliveredBob).changes).toBe(false);
  });

  it("an enforcement in force stays in force when a later delivery is unconfirmed", async () => {
    const s = setup();
    const { outs } = await create(deliveredBob, s.ctx);
    expect(diff(asRecord(outs), waitingBob).changes).toBe(false);
    const { outs: after } = await update("u1", outs, waitingBob, s.ctx);
    expect(after.posture).toBe("enforced");
    expect(s.ks.options("u1").multi_factor_auth_rules).toEqual(enforced);
  });

  it("removing a waiting enforcement takes nothing back (it wrote nothing)", async () => {
    const s = setup();
    const { outs } = await create(waitingBob, s.ctx);
    await remove("u1", outs, s.ctx);
    expect(s.ks.writes).toHaveLength(0);
  });
});
