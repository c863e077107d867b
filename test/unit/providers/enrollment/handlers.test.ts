/**
 * The enrollment handlers (credential + its message in one resource) against an in-process
 * Keystone double and a recording mailer: what is sent when, what a failed message undoes,
 * and how a state of the earlier two-resource shape is taken over. The real Keystone, SMTP
 * server and engine are exercised by the e2e tests.
 */
import { describe, expect, it } from "vitest";
import { KeystoneError, MailError } from "../../../../lib/errors.ts";
import type { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { resolveMailConfig } from "../../../../lib/mail/config.ts";
import { type ComposedMessage, FINGERPRINT_HEADER } from "../../../../lib/mail/message.ts";
import type { Mailer } from "../../../../lib/mail/send.ts";
import { ownerId } from "../../../../lib/ownership.ts";
import { fingerprint, generateSecret } from "../../../../lib/totp/secret.ts";
import type { EnrollmentContext } from "../../../../providers/enrollment/handlers.ts";
import { check, create, diff, read, remove, update } from "../../../../providers/enrollment/handlers.ts";
import type { TotpEnrollmentInputs, TotpEnrollmentOutputs } from "../../../../providers/enrollment/types.ts";
import { enrollmentSetup } from "../../../support/enrollment.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse("2027-01-01T00:00:00Z");

const alice: TotpEnrollmentInputs & Record<string, unknown> = {
  userId: "u1",
  username: "alice",
  domain: "Default",
  email: "alice@example.com",
  issuer: "ACME",
  account: "alice@Default",
};

const mailConfig = resolveMailConfig({ outboxDir: "unused-outbox", mailFrom: "Ops <ops@example.com>" }, "/");

/** A mailer that records messages, or refuses them while `refuse` is set. */
function recordingMailer() {
  const sent: ComposedMessage[] = [];
  const state = { refuse: false };
  const mailer = {
    kind: "smtp",
    destination: "test",
    stats: { messages: 0, failures: 0, connectionsOpened: 0 },
    send: async (m: ComposedMessage) => {
      if (state.refuse) throw new MailError("E_SMTP", "550 mailbox unavailable", { smtpCode: 550 });
      sent.push(m);
      return { messageId: m.messageId, accepted: [m.to.address], transport: "smtp" as const, at: "" };
    },
    verify: async () => {},
    close: () => {},
  } as unknown as Mailer;
  return { mailer, sent, state };
}

function setup(initial: Record<string, string[]> = {}) {
  return enrollmentSetup(recordingMailer(), mailConfig, T0, initial);
}

/** What the engine hands diff and update: stored outputs plus the provider's code. */
function stored(outs: TotpEnrollmentOutputs) {
  return { ...outs, __provider: "old" } as unknown as Record<string, unknown>;
}

describe("enrollment create", () => {
  it("POSTs one credential, sends its secret once, and stores no URI or message", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    expect(s.ks.ids("u1")).toEqual([id]);
    expect(s.mail.sent).toHaveLength(1);
    expect(s.mail.sent[0]?.to.address).toBe("alice@example.com");
    expect(outs.fingerprint).toBe(fingerprint(outs.secret));
    expect(outs.deliveredAt).toBe(new Date(T0).toISOString());
    expect(outs.messageId).toBe(s.mail.sent[0]?.messageId);
    expect(Object.keys(outs)).not.toContain("otpauthUri");
    expect(JSON.stringify(outs)).not.toContain("otpauth://");
  });

  it("a refused message deletes the credential again: nothing half-done, error names user and address", async () => {
    const s = setup();
    s.mail.state.refuse = true;
    const err = await create(alice, s.ctx).catch((e: unknown) => e as Error);
    // At the engine boundary: the code in the field and in front of the message, the MailError as cause.
    expect((err as Error).cause).toBeInstanceOf(MailError);
    expect((err as Error).message).toMatch(/^\[E_SMTP\] enrollment message for alice@Default to alice@example.com/);
    expect(s.ks.ids("u1")).toEqual([]);
    s.mail.state.refuse = false;
    const { outs } = await create(alice, s.ctx);
    expect(s.ks.ids("u1")).toEqual([outs.credentialId]);
    expect(s.mail.sent).toHaveLength(1);
  });

  it("hands a leftover the user already held to retirement (policy remove), at delivery when grace is 0", async () => {
    const s = setup({ u1: ["leftover"] });
    const { outs } = await create({ ...alice, graceHours: 0 }, { ...s.ctx, existing: undefined });
    expect(s.ks.ids("u1")).toEqual([outs.credentialId]);
    expect(outs.retiring).toEqual([]);
    expect(outs.retiredAt).toBeDefined();
  });
});

describe("enrollment after a crash: its own leftovers are adopted, others' are not", () => {
  const STACK = "keystone-totp/dev";
  const OWNER = ownerId(STACK, "enrollment", "alice@Default");
  const mine = (id: string, blob: string, at = "2027-01-01T00:00:00.000Z") => ({
    id,
    userId: "u1",
    blob,
    marker: { v: 1, owner: OWNER, at },
  });

  it("create tags the credential it POSTs with its owner and time", async () => {
    const s = setup();
    const { outs } = await create({ ...alice, stack: STACK }, s.ctx);
    expect(s.ks.held("u1")).toEqual([
      expect.objectContaining({
        id: outs.credentialId,
        marker: { v: 1, owner: OWNER, at: new Date(T0).toISOString() },
      }),
    ]);
  });

  it("create adopts a leftover of its own (a create whose answer was lost): one credential, its secret mailed", async () => {
    const s = setup();
    const secret = generateSecret();
    s.ks.put(mine("lost", secret));
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    expect(id).toBe("lost");
    expect(outs.secret).toBe(secret);
    expect(s.ks.ids("u1")).toEqual(["lost"]);
    expect(outs.retiring).toEqual([]);
    expect(s.mail.sent).toHaveLength(1);
    expect(s.mail.sent[0]?.headers[FINGERPRINT_HEADER]).toBe(fingerprint(secret));
  });

  it("several leftovers: the newest is adopted, the others retire even under the keep policy", async () => {
    const s = setup();
    const newest = generateSecret();
    s.ks.put(mine("l1", generateSecret(), "2027-01-01T00:00:00.000Z"));
    s.ks.put(mine("l2", newest, "2027-01-01T00:05:00.000Z"));
    s.ks.put({ id: "hand", userId: "u1", blob: generateSecret() });
    const { id, outs } = await create({ ...alice, stack: STACK, unmanaged: "keep", graceHours: 0 }, s.ctx);
    expect(id).toBe("l2");
    expect(outs.secret).toBe(newest);
    // The other leftover is gone at delivery (grace 0); the hand-enrolled one is kept and reported.
    expect(s.ks.ids("u1").sort()).toEqual(["hand", "l2"]);
    expect(outs.unmanagedIds).toEqual(["hand"]);
  });

  it("hand-enrolled and another stack's credentials are never adopted: a new one is POSTed, the policy applies", async () => {
    const s = setup();
    s.ks.put({ id: "hand", userId: "u1", blob: generateSecret() });
    s.ks.put({
      id: "prod",
      userId: "u1",
      blob: generateSecret(),
      marker: {
        v: 1,
        owner: ownerId("keystone-totp/prod", "enrollment", "alice@Default"),
        at: "2027-01-01T00:00:00.000Z",
      },
    });
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    expect(["hand", "prod"]).not.toContain(id);
    expect([...outs.retiring].sort()).toEqual(["hand", "prod"]);
    expect(s.ks.ids("u1")).toHaveLength(3);
  });

  it("a rotation whose answer was lost is adopted by the next rotation: no second new credential", async () => {
    const s = setup();
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    const lost = generateSecret();
    s.ks.put(mine("lost-rotation", lost, "2027-01-02T00:00:00.000Z"));
    s.at(DAY);
    const r = await update(id, outs, { ...alice, stack: STACK, rotateRequest: "r1" }, s.ctx);
    expect(r.outs.credentialId).toBe("lost-rotation");
    expect(r.outs.secret).toBe(lost);
    expect(r.outs.retiring).toEqual([outs.credentialId]);
    expect(s.ks.ids("u1").sort()).toEqual([outs.credentialId, "lost-rotation"].sort());
    expect(s.mail.sent).toHaveLength(2);
  });
});

describe("enrollment delete after a crash", () => {
  const STACK = "keystone-totp/dev";
  const OWNER = ownerId(STACK, "enrollment", "alice@Default");
  const tagged = (id: string, owner: string) => ({
    id,
    userId: "u1",
    blob: generateSecret(),
    marker: { v: 1, owner, at: "2027-01-02T00:00:00.000Z" },
  });

  it("deletes its own leftover of a lost rotation BEFORE giving the options back; a credential not made by keystone-totp stays", async () => {
    // The leftover's secret may have been mailed; once the options before (MFA off) are back,
    // it would log the user in with a TOTP code alone.
    const s = setup();
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    s.ks.put(tagged("lost-rotation", OWNER));
    s.ks.put({ id: "hand", userId: "u1", blob: generateSecret() });
    await remove(id, outs, s.ctx);
    expect(s.ks.ids("u1")).toEqual(["hand"]);
    const release = s.ks.writes.at(-1);
    expect(release?.marker ?? null).toBeNull();
    expect(release?.credentialsAtWrite).toBe(1);
  });

  it("keeps the rules while another keystone-totp resource's credential of the user stays (another stack)", async () => {
    // prod's secret reached the user; without the rules it would log them in with a TOTP code alone.
    const s = setup();
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    const rules = s.ks.options("u1");
    const writes = s.ks.writes.length;
    s.ks.put(tagged("lost-rotation", OWNER));
    s.ks.put(tagged("prod", ownerId("keystone-totp/prod", "enrollment", "alice@Default")));
    await remove(id, outs, s.ctx);
    expect(s.ks.ids("u1")).toEqual(["prod"]);
    expect(s.ks.writes.length).toBe(writes);
    expect(s.ks.options("u1")).toEqual(rules);
    expect(rules.multi_factor_auth_rules).toBeDefined();
  });

  it("a user renamed in Keystone and the CSV: the old name's delete (after the new one's create) keeps the new credential and the rules; the new one's delete gives the options back", async () => {
    const s = setup();
    const old = await create({ ...alice, stack: STACK }, s.ctx);
    const renamed = { ...alice, username: "alice2", account: "alice2@Default", stack: STACK };
    const next = await create(renamed, s.ctx);
    const rules = s.ks.options("u1");
    await remove(old.id, old.outs, s.ctx);
    expect(s.ks.ids("u1")).toEqual([next.id]);
    expect(s.ks.options("u1")).toEqual(rules);
    await remove(next.id, next.outs, s.ctx);
    expect(s.ks.ids("u1")).toEqual([]);
    expect(s.ks.writes.at(-1)?.marker ?? null).toBeNull();
    expect(s.ks.options("u1").multi_factor_auth_rules).toBeUndefined();
  });

  it("a state written before the owner was stored: any enrollment's tag on the user counts as its own", async () => {
    const s = setup();
    const { id, outs } = await create({ ...alice, stack: STACK }, s.ctx);
    const { owner: _none, ...older } = outs;
    s.ks.put(tagged("lost-rotation", OWNER));
    s.ks.put(tagged("standalone", ownerId(STACK, "credential", "alice@Default")));
    await remove(id, older, s.ctx);
    expect(s.ks.ids("u1")).toEqual(["standalone"]);
  });
});

describe("enrollment diff and update", () => {
  it("a rerun with the same inputs and new provider code: no replacement, no update", async () => {
    // What the engine hands diff: the outputs create stored plus the provider it stored, and the
    // inputs as check returns them plus the provider of this run. A diff that compared the
    // provider, or every stored key, would mail every user again on each release.
    const s = setup();
    const { outs } = await create(check(alice).inputs as unknown as TotpEnrollmentInputs, s.ctx);
    const rerun = { ...check(alice).inputs, __provider: "new" };
    const later = new Date(T0 + 400 * DAY);
    expect(diff(stored(outs), rerun, later)).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
    // The same pair is not blind: a real input change beside the provider's still counts.
    expect(diff(stored(outs), { ...rerun, resendTrigger: "1" }, later).changes).toBe(true);
    expect(diff(stored(outs), { ...rerun, userId: "u2" }, later).replaces).toEqual(["userId"]);
  });

  it("a rotation request: a new credential and one message; the old one works until the grace window ends", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const news = { ...alice, rotateRequest: "r1" };
    expect(diff(stored(outs), news).changes).toBe(true);
    s.at(HOUR);
    const rotated = (await update(id, outs, news, s.ctx)).outs;
    expect(rotated.credentialId).not.toBe(outs.credentialId);
    expect(rotated.retiring).toEqual([outs.credentialId]);
    expect(s.ks.ids("u1").sort()).toEqual([outs.credentialId, rotated.credentialId].sort());
    expect(s.mail.sent).toHaveLength(2);
    // Within the grace window (24 h from delivery): nothing to do.
    expect(diff(stored(rotated), news, new Date(T0 + 24 * HOUR)).changes).toBe(false);
    // After it: an update that deletes the old credential and sends nothing.
    expect(diff(stored(rotated), news, new Date(T0 + 25 * HOUR)).changes).toBe(true);
    s.at(25 * HOUR);
    const retired = (await update(id, rotated, news, s.ctx)).outs;
    expect(s.ks.ids("u1")).toEqual([rotated.credentialId]);
    expect(retired.retiring).toEqual([]);
    expect(retired.retiredAt).toBe(new Date(T0 + 25 * HOUR).toISOString());
    expect(s.mail.sent).toHaveLength(2);
    expect(diff(stored(retired), news, new Date(T0 + 30 * DAY)).changes).toBe(false);
  });

  it("a rotation whose message fails deletes the new credential: the old one stays current and working", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    s.mail.state.refuse = true;
    await expect(update(id, outs, { ...alice, rotateRequest: "r1" }, s.ctx)).rejects.toThrow(/E_SMTP/);
    expect(s.ks.ids("u1")).toEqual([outs.credentialId]);
  });

  it("a new address: new secret in place, sent to the new address only; a new spelling sends nothing", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    expect(diff(stored(outs), { ...alice, email: "ALICE@example.com" }).changes).toBe(true);
    const respelled = (await update(id, outs, { ...alice, email: "ALICE@example.com" }, s.ctx)).outs;
    expect(respelled.fingerprint).toBe(outs.fingerprint);
    expect(s.mail.sent).toHaveLength(1);
    const news = { ...alice, email: "a2@example.com" };
    const after = (await update(id, outs, news, s.ctx)).outs;
    expect(after.credentialId).toBe(outs.credentialId);
    expect(after.fingerprint).not.toBe(outs.fingerprint);
    expect(s.mail.sent.map((m) => m.to.address)).toEqual(["alice@example.com", "a2@example.com"]);
  });

  it("a resend trigger sends the same secret again; a label change sends nothing", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const resent = (await update(id, outs, { ...alice, resendTrigger: "x" }, s.ctx)).outs;
    expect(resent.fingerprint).toBe(outs.fingerprint);
    expect(s.mail.sent).toHaveLength(2);
    const relabelled = (await update(id, resent, { ...alice, resendTrigger: "x", issuer: "ACME 2" }, s.ctx)).outs;
    expect(relabelled.issuer).toBe("ACME 2");
    expect(s.mail.sent).toHaveLength(2);
  });
});

describe("a state of the earlier shape (TotpCredential + TotpDelivery)", () => {
  it("is rewritten once without sending, keeping the credential and its secret", async () => {
    const s = setup();
    const old = earlierState();
    expect(diff(old as never, alice).changes).toBe(true);
    const { outs } = await update("c0", old, alice, s.ctx);
    expect(s.mail.sent).toHaveLength(0);
    expect(outs.credentialId).toBe("c0");
    expect(outs.secret).toBe(old.secret);
    expect(outs.deliveredAt).toBe(old.rotatedAt);
    expect(Object.keys(outs)).not.toContain("otpauthUri");
    expect(diff(stored(outs), alice).changes).toBe(false);
  });
});

function earlierState(extra: Record<string, unknown> = {}) {
  const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
  return {
    userId: "u1",
    userChecked: true,
    issuer: "ACME",
    account: "alice@Default",
    rotationTrigger: "email:alice@example.com",
    unmanaged: "remove",
    credentialId: "c0",
    retiring: [],
    unmanagedIds: [],
    resolvedUserId: "u1",
    accountLabel: "alice@Default",
    secret,
    otpauthUri: "otpauth://totp/x",
    fingerprint: fingerprint(secret),
    createdAt: new Date(T0).toISOString(),
    rotatedAt: new Date(T0).toISOString(),
    ...extra,
  } as unknown as TotpEnrollmentOutputs;
}

describe("edge cases of the upgrade, failures and grace windows", () => {
  it("an adopted 0.1 state sends nothing even when a resend trigger is set (0.1 kept it on the delivery)", async () => {
    const s = setup();
    const { outs } = await update("c0", earlierState(), { ...alice, resendTrigger: '["ACME","alice"]' }, s.ctx);
    expect(s.mail.sent).toHaveLength(0);
    expect(diff(stored(outs), { ...alice, resendTrigger: '["ACME","alice"]' }).changes).toBe(false);
  });

  it("an adopted 0.1 state in the middle of a rotation re-sends the current secret before anything is retired", async () => {
    const s = setup({ u1: ["c0", "old"] });
    s.at(DAY);
    const state = earlierState({ retiring: ["old"], rotatedAt: new Date(T0 - 3 * DAY).toISOString() });
    expect(diff(state as never, alice, new Date(T0 + DAY)).changes).toBe(true);
    const { outs } = await update("c0", state, alice, s.ctx);
    expect(s.mail.sent).toHaveLength(1);
    expect(outs.deliveredAt).toBe(new Date(T0 + DAY).toISOString());
    expect(outs.retiring).toEqual(["old"]);
    expect(s.ks.ids("u1").sort()).toEqual(["c0", "old"]);
  });

  it("a new address whose message fails puts the previous secret back in Keystone", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    s.mail.state.refuse = true;
    await expect(update(id, outs, { ...alice, email: "a2@example.com" }, s.ctx)).rejects.toThrow(/E_SMTP/);
    expect((await s.ks.client.getCredential(id))?.blob).toBe(outs.secret);
  });

  it("a grace window given to one rotation holds until its credentials are retired, whatever the next run says", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const rotated = (await update(id, outs, { ...alice, rotateRequest: "r1", graceHours: 168 }, s.ctx)).outs;
    expect(rotated.graceHours).toBe(168);
    // The next scheduled run passes the stack's default again.
    expect(diff(stored(rotated), { ...alice, rotateRequest: "r1" }, new Date(T0 + 25 * HOUR)).changes).toBe(false);
    s.at(169 * HOUR);
    expect(diff(stored(rotated), { ...alice, rotateRequest: "r1" }, new Date(T0 + 169 * HOUR)).changes).toBe(true);
    const retired = (await update(id, rotated, { ...alice, rotateRequest: "r1" }, s.ctx)).outs;
    expect(retired.retiring).toEqual([]);
    expect(s.ks.ids("u1")).toEqual([rotated.credentialId]);
  });

  it("the grace window starts when the message went, not when the update began", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const slow = {
      ...s.ctx,
      mailer: () =>
        ({
          ...s.mail.mailer,
          send: async (m: ComposedMessage) => {
            s.at(2 * HOUR);
            return s.mail.mailer.send(m);
          },
        }) as Mailer,
    };
    const rotated = (await update(id, outs, { ...alice, rotateRequest: "r1" }, slow)).outs;
    expect(rotated.deliveredAt).toBe(new Date(T0 + 2 * HOUR).toISOString());
  });
});

describe("enrollment read and check", () => {
  it("read keeps the delivery record; a deleted credential reads as gone", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const r = await read(id, outs, s.ctx);
    expect(r.props?.deliveredAt).toBe(outs.deliveredAt);
    expect(r.props?.messageId).toBe(outs.messageId);
    await s.ks.client.deleteCredential(id);
    expect(await read(id, outs, s.ctx)).toEqual({});
  });

  it("refuses a bad address, a missing name and a bad grace window, naming the property", () => {
    expect(check(alice).failures).toEqual([]);
    const props = (v: Record<string, unknown>) => check({ ...alice, ...v }).failures.map((f) => f.property);
    expect(props({ email: "not an address" })).toEqual(["email"]);
    expect(props({ username: "" })).toEqual(["username"]);
    expect(props({ graceHours: -1 })).toEqual(["graceHours"]);
    expect(props({ issuer: "a:b" })).toEqual(["issuer"]);
  });
});

/** Paths holding `undefined` anywhere in a value: the engine refuses them ("Unexpected struct type"). */
function undefinedPaths(v: unknown, at = "$"): string[] {
  if (v === undefined) return [at];
  if (v === null || typeof v !== "object") return [];
  return Object.entries(v).flatMap(([k, x]) => undefinedPaths(x, `${at}.${k}`));
}

describe("enrollment posture (the MFA rules around the credential)", () => {
  const staged = [["password"], ["application_credential"]];

  it("outputs hold no undefined at any depth, whatever the posture", async () => {
    for (const previousMfa of [
      undefined,
      { enabled: true, rules: [["password", "totp"]] },
      { enabled: false, rules: null },
    ]) {
      const s = setup();
      const { outs } = await create({ ...alice, ...(previousMfa ? { previousMfa } : {}) }, s.ctx);
      expect(undefinedPaths(outs)).toEqual([]);
    }
  });

  it("writes the staged rules and the marker before the credential exists", async () => {
    const s = setup();
    const { outs } = await create(alice, s.ctx);
    expect(s.ks.writes).toHaveLength(1);
    expect(s.ks.writes[0]).toMatchObject({
      userId: "u1",
      credentialsAtWrite: 0,
      options: { multi_factor_auth_enabled: true, multi_factor_auth_rules: staged },
      marker: { v: 1, previous: { enabled: null, rules: null } },
    });
    expect(s.ks.ids("u1")).toHaveLength(1);
    expect(outs.mfa).toEqual({ posture: "staged" });
  });

  it("the message says what holds: password alone still works when staged, password + code when enforced", async () => {
    const s = setup();
    await create(alice, s.ctx);
    await create({ ...alice, userId: "u2", email: "bob@example.com", enforceMfa: true }, s.ctx);
    expect(s.mail.sent[0]?.text).toContain("For now your password alone still logs you in");
    expect(s.mail.sent[1]?.text).toContain("logging in with your password needs the 6-digit code");
    expect(s.mail.sent[1]?.text).not.toContain("password alone still logs you in");
  });

  it("a refused message withdraws the credential but keeps the rules (they change no other login)", async () => {
    const s = setup();
    s.mail.state.refuse = true;
    await expect(create(alice, s.ctx)).rejects.toThrow(/550/);
    expect(s.ks.ids("u1")).toHaveLength(0);
    expect(s.ks.options("u1")).toMatchObject({ multi_factor_auth_rules: staged });
  });

  it("a rerun after a crash between the rules and the state records the user's real options, from the marker", async () => {
    const s = setup();
    // The operator had turned rules off on this user; a first run wrote the tool's rules and died.
    const before = { enabled: false, rules: [["password"]] };
    await s.ks.client.writeUserMfa("u1", { enabled: true, rules: staged }, { v: 1, previous: before });
    // The program reads the marker, not the options it finds now (see program/fleet.ts).
    const { id, outs } = await create({ ...alice, previousMfa: before }, s.ctx);
    expect(s.ks.writes.at(-1)?.marker).toEqual({ v: 1, previous: before });
    await remove(id, outs, s.ctx);
    expect(s.ks.ids("u1")).toHaveLength(0);
    expect(s.ks.options("u1")).toEqual({ multi_factor_auth_enabled: false, multi_factor_auth_rules: [["password"]] });
    expect(s.ks.writes.at(-1)).toMatchObject({ credentialsAtWrite: 0, marker: null });
  });

  it("own rules that refuse TOTP alone are kept; own rules that admit it refuse the user, naming it", async () => {
    const s = setup();
    const own = { enabled: true, rules: [["password", "totp"]] };
    const { outs } = await create({ ...alice, previousMfa: own }, s.ctx);
    expect(outs.mfa?.posture).toBe("own");
    expect(s.ks.writes).toHaveLength(0);
    const t = setup();
    await expect(create({ ...alice, previousMfa: { enabled: true, rules: [["totp"]] } }, t.ctx)).rejects.toThrow(
      /\[E_POSTURE\] user alice@Default: .*TOTP code alone/,
    );
    expect(t.ks.ids("u1")).toHaveLength(0);
  });

  it("a 0.2 state (no posture) is staged by its next update, sending nothing", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const { mfa: _none, ...earlier } = outs;
    await s.ks.client.writeUserMfa("u1", { enabled: null, rules: null }, null);
    expect(diff(stored(earlier as TotpEnrollmentOutputs), alice, new Date(T0)).changes).toBe(true);
    const sent = s.mail.sent.length;
    const { outs: after } = await update(id, earlier as TotpEnrollmentOutputs, alice, s.ctx);
    expect(s.mail.sent.length).toBe(sent);
    expect(after.mfa?.posture).toBe("staged");
    expect(s.ks.options("u1")).toMatchObject({ multi_factor_auth_rules: staged });
    expect(diff(stored(after), alice, new Date(T0)).changes).toBe(false);
  });
});

describe("failures after the message went, and failures to undo a message that did not", () => {
  /** A Keystone whose credential PATCHes fail after the first `ok` of them. */
  function failPatchesAfter(s: ReturnType<typeof setup>, ok: number): EnrollmentContext {
    let n = 0;
    const client = {
      ...s.ks.client,
      updateCredentialBlob: async (id: string, blob: string) => {
        if (++n > ok) {
          throw new KeystoneError(
            "E_KEYSTONE_HTTP",
            { method: "PATCH", path: `/v3/credentials/${id}`, status: 503, attempts: 6 },
            "Keystone is unavailable: run again later",
          );
        }
        return s.ks.client.updateCredentialBlob(id, blob);
      },
    } as KeystoneClient;
    return { ...s.ctx, client: () => client, keystone: () => client };
  }

  it("rotate with grace 0 whose DELETE fails: the delivery is kept and the failure recorded (which credential, when, why)", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const news = { ...alice, rotateRequest: "leak", graceHours: 0 };
    s.ks.failDeletes(true);
    s.at(HOUR);
    const rotated = (await update(id, outs, news, s.ctx)).outs;
    // The message went once and is on record: the next run must not send it again.
    expect(s.mail.sent).toHaveLength(2);
    expect(rotated.deliveredAt).toBe(new Date(T0 + HOUR).toISOString());
    // The leaked secret is still valid, and the outputs say so.
    expect(s.ks.ids("u1")).toContain(outs.credentialId);
    expect(rotated.retiring).toEqual([outs.credentialId]);
    expect(rotated.retiredAt).toBeUndefined();
    expect(rotated.retireFailed).toEqual({
      ids: [outs.credentialId],
      at: new Date(T0 + HOUR).toISOString(),
      code: "E_KEYSTONE_HTTP",
      error: expect.stringMatching(new RegExp(`^DELETE /v3/credentials/${outs.credentialId} failed: 503`)),
    });
    expect(JSON.stringify(rotated.retireFailed)).not.toContain(rotated.secret);
    // The next run retries; once it succeeds the record is gone, nothing is sent, and a no-op run stays one.
    expect(diff(stored(rotated), news, new Date(T0 + 2 * HOUR)).changes).toBe(true);
    s.ks.failDeletes(false);
    s.at(2 * HOUR);
    const retired = (await update(id, rotated, news, s.ctx)).outs;
    expect(s.ks.ids("u1")).toEqual([rotated.credentialId]);
    expect(retired.retiring).toEqual([]);
    expect(retired.retireFailed).toBeUndefined();
    expect(Object.keys(retired)).not.toContain("retireFailed");
    expect(s.mail.sent).toHaveLength(2);
    expect(diff(stored(retired), news, new Date(T0 + 3 * HOUR)).changes).toBe(false);
  });

  it("a retirement past the grace window whose DELETE fails is recorded, and kept by a refresh until it succeeds", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const news = { ...alice, rotateRequest: "r1" };
    const rotated = (await update(id, outs, news, s.ctx)).outs;
    s.ks.failDeletes(true);
    s.at(25 * HOUR);
    const failed = (await update(id, rotated, news, s.ctx)).outs;
    expect(failed.retiring).toEqual([outs.credentialId]);
    expect(failed.retireFailed?.ids).toEqual([outs.credentialId]);
    expect(failed.retireFailed?.at).toBe(new Date(T0 + 25 * HOUR).toISOString());
    const refreshed = await read(id, failed, s.ctx);
    expect(refreshed.props?.retireFailed).toEqual(failed.retireFailed);
  });

  it("a new address whose message fails and whose previous secret cannot be put back: the error says both", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    s.mail.state.refuse = true;
    // The first PATCH writes the new secret; the second, putting the previous one back, fails.
    const err = await update(id, outs, { ...alice, email: "a2@example.com" }, failPatchesAfter(s, 1)).catch(
      (e: unknown) => e as Error,
    );
    // At the engine boundary: the code in the field and in front of the message, the MailError as cause.
    expect((err as Error).cause).toBeInstanceOf(MailError);
    expect((err as MailError).code).toBe("E_SMTP");
    const text = (err as Error).message;
    expect(text).toMatch(/^\[E_SMTP\] enrollment message for alice@Default to a2@example.com not delivered: 550/);
    expect(text).toContain(`the previous secret of alice@Default could not be put back in credential ${id}`);
    expect(text).toContain(`PATCH /v3/credentials/${id} failed: 503`);
    expect(text).toContain("npm run rotate -- alice@Default");
    expect(text).not.toContain(outs.secret);
  });

  it("a rotation whose message fails and whose new credential cannot be deleted: the error names the leftover", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    s.mail.state.refuse = true;
    s.ks.failDeletes(true);
    const err = await update(id, outs, { ...alice, rotateRequest: "r1" }, s.ctx).catch((e: unknown) => e as Error);
    const leftover = s.ks.ids("u1").find((c) => c !== outs.credentialId) as string;
    expect(leftover).toBeDefined();
    expect((err as MailError).code).toBe("E_SMTP");
    const text = (err as Error).message;
    expect(text).toMatch(/^\[E_SMTP\] enrollment message for alice@Default to alice@example.com not delivered/);
    expect(text).toContain(`the undelivered credential ${leftover} of alice@Default could not be deleted`);
    expect(text).toContain(`openstack credential delete ${leftover}`);
  });

  it("a first enrollment whose message fails and whose credential cannot be deleted: the error names the leftover", async () => {
    const s = setup();
    s.mail.state.refuse = true;
    s.ks.failDeletes(true);
    const err = await create(alice, s.ctx).catch((e: unknown) => e as Error);
    const [leftover] = s.ks.ids("u1");
    expect((err as MailError).code).toBe("E_SMTP");
    expect((err as Error).message).toContain(
      `the undelivered credential ${leftover} of alice@Default could not be deleted`,
    );
  });
});
