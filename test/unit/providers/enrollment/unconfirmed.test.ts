/**
 * The enrollment handlers when a message may have been delivered (`E_SMTP_UNCONFIRMED`: its data
 * was sent, and the connection ended before the server's final reply), against the in-process
 * Keystone double and a mailer that "stores" the message and then reports that outcome. Nothing
 * may be undone (the user may hold the QR code); the state records it, the next update sends the
 * same secret again and creates nothing. A definite refusal still undoes, as before. The real
 * SMTP server and engine are in test/e2e/faults-smtp-ambiguous.test.ts.
 */
import { describe, expect, it } from "vitest";
import { MailError } from "../../../../lib/errors.ts";
import { resolveMailConfig } from "../../../../lib/mail/config.ts";
import type { ComposedMessage } from "../../../../lib/mail/message.ts";
import type { Mailer } from "../../../../lib/mail/send.ts";
import { otpauthUri } from "../../../../lib/totp/uri.ts";
import { create, diff, read, update } from "../../../../providers/enrollment/handlers.ts";
import type { TotpEnrollmentInputs, TotpEnrollmentOutputs } from "../../../../providers/enrollment/types.ts";
import { enrollmentSetup } from "../../../support/enrollment.ts";

const HOUR = 3_600_000;
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

type Mode = "deliver" | "unconfirmed" | "refuse";

/**
 * A mailer whose outcome the test sets: `unconfirmed` keeps the message (the server stored it)
 * and then fails as the real mailer does when the final reply is lost; `refuse` answers 550.
 */
function scriptedMailer() {
  const stored: ComposedMessage[] = [];
  const state: { mode: Mode } = { mode: "deliver" };
  const mailer = {
    kind: "smtp",
    destination: "test",
    stats: { messages: 0, failures: 0, connectionsOpened: 0 },
    send: async (m: ComposedMessage) => {
      if (state.mode === "refuse") throw new MailError("E_SMTP", "550 mailbox unavailable", { smtpCode: 550 });
      stored.push(m);
      if (state.mode === "unconfirmed") {
        throw new MailError(
          "E_SMTP_UNCONFIRMED",
          `the message to ${m.to.address} was sent to the SMTP server at relay:25, but the connection was lost ` +
            `before the server confirmed it (ECONNECTION: Connection closed unexpectedly): it may have been ` +
            `delivered (Message-ID ${m.messageId}: look for it in the server's log). Its secret stays valid, and ` +
            "the next 'up' sends the same message again.",
          { recipient: m.to.address },
        );
      }
      return { messageId: m.messageId, accepted: [m.to.address], transport: "smtp" as const, at: "" };
    },
    verify: async () => {},
    close: () => {},
  } as unknown as Mailer;
  return { mailer, stored, state };
}

function setup() {
  return enrollmentSetup(scriptedMailer(), mailConfig, T0);
}

/** What the engine hands diff and update: stored outputs plus the provider's code. */
function stored(outs: TotpEnrollmentOutputs) {
  return { ...outs, __provider: "p" } as unknown as Record<string, unknown>;
}

/** Whether a message carries this secret (its otpauth URI, as the QR code and the link hold it). */
function carries(m: ComposedMessage | undefined, secret: string): boolean {
  return m?.text.includes(otpauthUri({ issuer: "ACME", account: "alice@Default", secret })) === true;
}

describe("a first enrollment whose message may have been delivered", () => {
  it("keeps the credential and records the unconfirmed delivery instead of withdrawing it", async () => {
    const s = setup();
    s.mail.state.mode = "unconfirmed";
    const { id, outs } = await create(alice, s.ctx);
    // The credential of the QR code the user may hold is still in Keystone and in the state.
    expect(s.ks.ids("u1")).toEqual([id]);
    expect(outs.credentialId).toBe(id);
    expect(carries(s.mail.stored[0], outs.secret)).toBe(true);
    expect(outs.deliveredAt).toBeUndefined();
    expect(outs.deliveryUnconfirmed).toEqual({
      at: new Date(T0).toISOString(),
      code: "E_SMTP_UNCONFIRMED",
      error: expect.stringMatching(/^enrollment message for alice@Default to alice@example.com not confirmed: /),
      reason: "new",
    });
    expect(JSON.stringify(outs.deliveryUnconfirmed)).not.toContain(outs.secret);
    expect(Object.values(outs).includes(undefined)).toBe(false);
  });

  it("the next update sends the same secret again, creates nothing, and clears the record", async () => {
    const s = setup();
    s.mail.state.mode = "unconfirmed";
    const { id, outs } = await create(alice, s.ctx);
    expect(diff(stored(outs), alice, new Date(T0 + HOUR)).changes).toBe(true);
    s.mail.state.mode = "deliver";
    s.at(HOUR);
    const { outs: after } = await update(id, outs, alice, s.ctx);
    expect(s.mail.stored).toHaveLength(2);
    expect(carries(s.mail.stored[1], outs.secret)).toBe(true);
    expect(s.mail.stored[1]?.subject).toBe(s.mail.stored[0]?.subject);
    expect(s.ks.ids("u1")).toEqual([id]);
    expect(after.fingerprint).toBe(outs.fingerprint);
    expect(after.deliveredAt).toBe(new Date(T0 + HOUR).toISOString());
    expect(after.messageId).toBe(s.mail.stored[1]?.messageId);
    expect(after.deliveryUnconfirmed).toBeUndefined();
    expect(Object.keys(after)).not.toContain("deliveryUnconfirmed");
    expect(diff(stored(after), alice, new Date(T0 + 2 * HOUR)).changes).toBe(false);
  });

  it("while unconfirmed again, it stays recorded; a definite refusal of the resend undoes nothing", async () => {
    const s = setup();
    s.mail.state.mode = "unconfirmed";
    const { id, outs } = await create(alice, s.ctx);
    s.at(HOUR);
    const { outs: again } = await update(id, outs, alice, s.ctx);
    expect(again.deliveryUnconfirmed?.at).toBe(new Date(T0 + HOUR).toISOString());
    expect(again.deliveredAt).toBeUndefined();
    s.mail.state.mode = "refuse";
    await expect(update(id, again, alice, s.ctx)).rejects.toThrow(/\[E_SMTP\] .*550/);
    // The first copy may have arrived: its credential stays (the engine keeps the recorded state).
    expect(s.ks.ids("u1")).toEqual([id]);
    expect(s.ks.writes).toHaveLength(1);
  });

  it("a refresh keeps the record and invents no delivery time", async () => {
    const s = setup();
    s.mail.state.mode = "unconfirmed";
    const { id, outs } = await create(alice, s.ctx);
    const r = await read(id, outs, s.ctx);
    expect(r.props?.deliveryUnconfirmed).toEqual(outs.deliveryUnconfirmed);
    expect(r.props?.deliveredAt).toBeUndefined();
  });

  it("a definite refusal still withdraws the credential, as before", async () => {
    const s = setup();
    s.mail.state.mode = "refuse";
    await expect(create(alice, s.ctx)).rejects.toThrow(
      /\[E_SMTP\] enrollment message for alice@Default .* not delivered/,
    );
    expect(s.ks.ids("u1")).toEqual([]);
  });
});

describe("a rotation or an address change whose message may have been delivered", () => {
  it("rotation: the new credential is kept, the old one is not retired (even with grace 0) until a resend is confirmed", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const news = { ...alice, rotateRequest: "r1", graceHours: 0 };
    s.mail.state.mode = "unconfirmed";
    s.at(HOUR);
    const { outs: rotated } = await update(id, outs, news, s.ctx);
    expect(rotated.credentialId).not.toBe(outs.credentialId);
    expect(s.ks.ids("u1").sort()).toEqual([outs.credentialId, rotated.credentialId].sort());
    expect(rotated.retiring).toEqual([outs.credentialId]);
    expect(rotated.deliveredAt).toBe(outs.deliveredAt);
    expect(rotated.deliveryUnconfirmed?.reason).toBe("rotation");
    expect(carries(s.mail.stored[1], rotated.secret)).toBe(true);

    s.mail.state.mode = "deliver";
    s.at(2 * HOUR);
    expect(diff(stored(rotated), news, new Date(T0 + 2 * HOUR)).changes).toBe(true);
    const { outs: done } = await update(id, rotated, news, s.ctx);
    expect(s.mail.stored).toHaveLength(3);
    expect(carries(s.mail.stored[2], rotated.secret)).toBe(true);
    expect(s.mail.stored[2]?.subject).toBe(s.mail.stored[1]?.subject);
    expect(done.credentialId).toBe(rotated.credentialId);
    expect(done.deliveryUnconfirmed).toBeUndefined();
    // Confirmed now: grace 0 retires the old credential at this delivery.
    expect(s.ks.ids("u1")).toEqual([rotated.credentialId]);
    expect(done.retiring).toEqual([]);
  });

  it("address change: the new secret stays in Keystone (not put back) and is sent again to the new address", async () => {
    const s = setup();
    const { id, outs } = await create(alice, s.ctx);
    const news = { ...alice, email: "a2@example.com" };
    s.mail.state.mode = "unconfirmed";
    const { outs: moved } = await update(id, outs, news, s.ctx);
    expect(moved.fingerprint).not.toBe(outs.fingerprint);
    expect((await s.ks.client.getCredential(id))?.blob).toBe(moved.secret);
    expect(moved.email).toBe("a2@example.com");
    s.mail.state.mode = "deliver";
    const { outs: done } = await update(id, moved, news, s.ctx);
    expect(s.mail.stored.map((m) => m.to.address)).toEqual(["alice@example.com", "a2@example.com", "a2@example.com"]);
    expect(carries(s.mail.stored[2], moved.secret)).toBe(true);
    expect(done.fingerprint).toBe(moved.fingerprint);
    expect(done.deliveryUnconfirmed).toBeUndefined();
  });
});
