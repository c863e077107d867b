/**
 * Where an SMTP delivery failed, decided without a server: the pure classification
 * (`smtpFailureOutcome`), the error it gives, and the mailer telling "its data was read" from
 * "it was not" through an injected transport. The real wire is in
 * test/integration/lib/mail/outcome.test.ts.
 */
import { inspect } from "node:util";
import nodemailer from "nodemailer";
import type { MailMessage } from "nodemailer/lib/mailer";
import { describe, expect, it } from "vitest";
import { EXIT_CODES, isUnconfirmedDelivery, MailError } from "../../../../lib/errors.ts";
import { resolveMailConfig, type SmtpMailConfig } from "../../../../lib/mail/config.ts";
import { composeEnrollment } from "../../../../lib/mail/message.ts";
import { createMailer, type SmtpFailureOutcome, smtpError, smtpFailureOutcome } from "../../../../lib/mail/send.ts";
import { registerSecrets } from "../../../support/secrets.ts";
import { enrollmentInput } from "../../../support/smtp.ts";

const PASSWORD = "Unit-outcome-pw-5c2a91";
registerSecrets(PASSWORD);

function smtpConfig(): SmtpMailConfig {
  const config = resolveMailConfig(
    { smtpUrl: `smtps://relay:${PASSWORD}@mail.example.com`, mailFrom: "ACME <noreply@example.com>" },
    "/",
  );
  if (config.kind !== "smtp") throw new Error("expected SMTP");
  return config;
}

function nodemailerError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields);
}

/** What nodemailer reports when the connection ends with no reply (its `_onClose`). */
const lost = () => nodemailerError("Connection closed unexpectedly", { code: "ECONNECTION", command: "CONN" });

describe("smtpFailureOutcome", () => {
  const cases: [string, Error | undefined, boolean, SmtpFailureOutcome][] = [
    ["connection lost after the data, before the final reply", lost(), true, "unconfirmed"],
    [
      "socket timeout after the data",
      nodemailerError("Timeout", { code: "ETIMEDOUT", command: "CONN", timeoutType: "SOCKET_TIMEOUT" }),
      true,
      "unconfirmed",
    ],
    [
      "socket reset after the data",
      nodemailerError("read ECONNRESET", { code: "ESOCKET", originalCode: "ECONNRESET", command: "CONN" }),
      true,
      "unconfirmed",
    ],
    ["an error without any field, after the data", undefined, true, "unconfirmed"],
    ["connection lost during the envelope (no data sent)", lost(), false, "not-delivered"],
    [
      "connection refused",
      nodemailerError("connect ECONNREFUSED", { code: "ESOCKET", originalCode: "ECONNREFUSED" }),
      false,
      "not-delivered",
    ],
    ["TLS failure", nodemailerError("self-signed", { code: "ETLS" }), false, "not-delivered"],
    [
      "login refused (535)",
      nodemailerError("Invalid login", { code: "EAUTH", responseCode: 535 }),
      false,
      "not-delivered",
    ],
    [
      "MAIL FROM refused (553)",
      nodemailerError("Mail command failed", { code: "EENVELOPE", command: "MAIL FROM", responseCode: 553 }),
      false,
      "not-delivered",
    ],
    [
      "the message refused after its data (554)",
      nodemailerError("Message failed", { code: "EMESSAGE", command: "DATA", responseCode: 554 }),
      true,
      "not-delivered",
    ],
    [
      "a temporary refusal after its data (451)",
      nodemailerError("Message failed", { code: "EMESSAGE", command: "DATA", responseCode: 451 }),
      true,
      "not-delivered",
    ],
    [
      "the server closing with 421 after the data",
      nodemailerError("Server closed the connection", { code: "ECONNECTION", command: "CONN", responseCode: 421 }),
      true,
      "not-delivered",
    ],
    [
      "a refusal carried by rejectedErrors only",
      nodemailerError("recipient rejected", {
        code: "EENVELOPE",
        rejectedErrors: [nodemailerError("no such user", { responseCode: 550 })],
      }),
      true,
      "not-delivered",
    ],
  ];
  for (const [what, err, dataSent, expected] of cases) {
    it(`${what}: ${expected}`, () => {
      expect(smtpFailureOutcome(err, dataSent)).toBe(expected);
    });
  }
});

describe("E_SMTP_UNCONFIRMED", () => {
  it("says the message may have been delivered, names the Message-ID, and keeps the password out", () => {
    const err = smtpError(
      nodemailerError(`Connection closed unexpectedly ${PASSWORD}`, { code: "ECONNECTION" }),
      {
        where: "mail.example.com:465",
        user: "relay",
        from: "noreply@example.com",
        recipient: "alice@example.com",
        messageId: "<m1@example.com>",
        secrets: [PASSWORD],
      },
      "unconfirmed",
    );
    expect(err).toMatchObject({ code: "E_SMTP_UNCONFIRMED", recipient: "alice@example.com" });
    expect(isUnconfirmedDelivery(err)).toBe(true);
    expect(err.message).toBe(
      "the message to alice@example.com was sent to the SMTP server at mail.example.com:465, but the connection " +
        "was lost before the server confirmed it (ECONNECTION: Connection closed unexpectedly ***): it may have been " +
        "delivered (Message-ID <m1@example.com>: look for it in the server's log). Its secret stays valid, and the " +
        "next 'up' sends the same message again.",
    );
    expect(inspect(err, { depth: 6 }).includes(PASSWORD)).toBe(false);
    expect(EXIT_CODES.E_SMTP_UNCONFIRMED).toBe(EXIT_CODES.E_SMTP);
  });

  it("a plain E_SMTP is not unconfirmed", () => {
    expect(isUnconfirmedDelivery(new MailError("E_SMTP", "550"))).toBe(false);
  });
});

/** A transporter whose send reads the message first (or, with `read` false, never reads it), then fails. */
function transportFailingAfterReading(read: boolean, err: Error) {
  return nodemailer.createTransport({
    name: "reads-then-fails",
    version: "1",
    send(mail: MailMessage, callback: (err: Error | null) => void) {
      const stream = mail.message.createReadStream();
      if (!read) return setImmediate(() => callback(err));
      stream.once("data", () => {
        stream.destroy();
        callback(err);
      });
    },
  });
}

describe("the mailer tells whether the message's data was read", () => {
  it("data read, then the connection lost: E_SMTP_UNCONFIRMED, naming recipient and Message-ID", async () => {
    const mailer = createMailer(smtpConfig(), { transport: transportFailingAfterReading(true, lost()) });
    const msg = await composeEnrollment(enrollmentInput());
    const err = await mailer.send(msg).catch((e: unknown) => e as MailError);
    expect(err).toMatchObject({ code: "E_SMTP_UNCONFIRMED", recipient: "alice@example.com" });
    expect((err as Error).message).toContain(`Message-ID ${msg.messageId}`);
    expect(mailer.stats.failures).toBe(1);
  });

  it("nothing read, then the same error: E_SMTP (not delivered)", async () => {
    const mailer = createMailer(smtpConfig(), { transport: transportFailingAfterReading(false, lost()) });
    const err = await mailer.send(await composeEnrollment(enrollmentInput())).catch((e: unknown) => e as MailError);
    expect(err).toMatchObject({ code: "E_SMTP" });
  });

  it("data read, then a 554: E_SMTP with the code", async () => {
    const refused = nodemailerError("Message failed: 554 rejected", {
      code: "EMESSAGE",
      command: "DATA",
      response: "554 5.7.1 rejected",
      responseCode: 554,
    });
    const mailer = createMailer(smtpConfig(), { transport: transportFailingAfterReading(true, refused) });
    const err = await mailer.send(await composeEnrollment(enrollmentInput())).catch((e: unknown) => e as MailError);
    expect(err).toMatchObject({ code: "E_SMTP", smtpCode: 554 });
  });
});
