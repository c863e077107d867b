import { inspect } from "node:util";
import nodemailer from "nodemailer";
import type { MailMessage, SentMessageInfo } from "nodemailer/lib/mailer";
import { describe, expect, it } from "vitest";
import { MailError } from "../../../../lib/errors.ts";
import { resolveMailConfig, type SmtpMailConfig } from "../../../../lib/mail/config.ts";
import { composeEnrollment } from "../../../../lib/mail/message.ts";
import { createMailer, smtpError } from "../../../../lib/mail/send.ts";
import { registerSecrets } from "../../../support/secrets.ts";
import { enrollmentInput, parseMessage } from "../../../support/smtp.ts";

const PASSWORD = "Unit-smtp-pw-7d1e0c";
registerSecrets(PASSWORD);

function smtpConfig(): SmtpMailConfig {
  const config = resolveMailConfig(
    { smtpUrl: `smtps://relay:${PASSWORD}@mail.example.com`, mailFrom: "ACME <noreply@example.com>" },
    "/",
  );
  if (config.kind !== "smtp") throw new Error("expected SMTP");
  return config;
}

/** A transporter whose every send fails with `err`. */
function failingTransport(err: Error) {
  return nodemailer.createTransport({
    name: "failing",
    version: "1",
    send(_mail: MailMessage, callback: (err: Error | null) => void) {
      setImmediate(() => callback(err));
    },
    verify() {
      return Promise.reject(err);
    },
  });
}

function nodemailerError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields);
}

async function sendFailure(err: Error): Promise<MailError> {
  const mailer = createMailer(smtpConfig(), { transport: failingTransport(err) });
  const failure = await mailer.send(await composeEnrollment(enrollmentInput())).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(MailError);
  const text = `${(failure as Error).message}\n${inspect(failure, { depth: 6 })}`;
  expect(text.includes(PASSWORD)).toBe(false);
  expect(mailer.stats.failures).toBe(1);
  return failure as MailError;
}

describe("SMTP mailer with an injected transport", () => {
  it("sends the composed message through the injected transporter and reports it", async () => {
    const sent: Buffer[] = [];
    const transport = nodemailer.createTransport({
      name: "capture",
      version: "1",
      send(mail: MailMessage, callback: (err: Error | null, info?: SentMessageInfo) => void) {
        mail.message.build().then((raw) => {
          sent.push(raw);
          const envelope = mail.message.getEnvelope();
          callback(null, {
            envelope,
            messageId: mail.message.messageId(),
            accepted: envelope.to,
            rejected: [],
            response: "250 2.0.0 queued",
          });
        }, callback);
      },
    });
    const mailer = createMailer(smtpConfig(), { transport, now: () => new Date("2026-01-02T03:04:05.000Z") });
    const msg = await composeEnrollment(enrollmentInput());
    const result = await mailer.send(msg);
    expect(result).toEqual({
      transport: "smtp",
      messageId: msg.messageId,
      accepted: ["alice@example.com"],
      response: "250 2.0.0 queued",
      at: "2026-01-02T03:04:05.000Z",
    });
    expect(mailer.stats).toEqual({ messages: 1, failures: 0, connectionsOpened: 0 });
    expect(sent).toHaveLength(1);
    const parsed = await parseMessage(sent[0] ?? Buffer.alloc(0));
    expect(parsed.messageId).toBe(msg.messageId);
    expect(parsed.attachments[0]?.cid).toBe(msg.attachments[0].cid);
    expect(mailer.destination).toBe("smtps://relay@mail.example.com:465");
  });

  it("maps a refused login to E_SMTP without the password, even if the server echoes it", async () => {
    const err = await sendFailure(
      nodemailerError(`Invalid login: 535 5.7.8 bad credentials for ${PASSWORD}`, {
        code: "EAUTH",
        response: `535 5.7.8 bad credentials for ${PASSWORD}`,
        responseCode: 535,
        command: "AUTH PLAIN",
      }),
    );
    expect(err).toMatchObject({ code: "E_SMTP", smtpCode: 535 });
    expect(err.message).toContain('refused the login of user "relay"');
    expect(err.message).toContain("mail.example.com:465");
    expect(err.message).toContain("keystone-totp:smtpUrl");
  });

  it("maps a rejected recipient to E_SMTP with the recipient and code", async () => {
    const rejected = nodemailerError("Recipient command failed: 550 5.1.1 no such user", {
      code: "EENVELOPE",
      response: "550 5.1.1 no such user",
      responseCode: 550,
      command: "RCPT TO",
    });
    const err = await sendFailure(
      nodemailerError("Can't send mail - all recipients were rejected: 550 5.1.1 no such user", {
        code: "EENVELOPE",
        response: "550 5.1.1 no such user",
        responseCode: 550,
        command: "RCPT TO",
        rejected: ["alice@example.com"],
        rejectedErrors: [rejected],
      }),
    );
    expect(err).toMatchObject({ code: "E_SMTP", smtpCode: 550, recipient: "alice@example.com" });
    expect(err.message).toMatch(/rejected the recipient alice@example\.com; the server said: 550 5\.1\.1 no such user/);
  });

  it("says a 4xx refusal is temporary", async () => {
    const err = await sendFailure(
      nodemailerError("Recipient command failed: 451 4.7.1 greylisted", {
        code: "EENVELOPE",
        response: "451 4.7.1 greylisted",
        responseCode: 451,
        command: "RCPT TO",
      }),
    );
    expect(err.smtpCode).toBe(451);
    expect(err.message).toContain("temporary");
  });

  it("maps a refused sender to E_SMTP naming keystone-totp:mailFrom", async () => {
    const err = await sendFailure(
      nodemailerError("Mail command failed: 553 not yours", {
        code: "EENVELOPE",
        response: "553 not yours",
        responseCode: 553,
        command: "MAIL FROM",
      }),
    );
    expect(err).toMatchObject({ smtpCode: 553, recipient: undefined });
    expect(err.message).toContain("refused the sender noreply@example.com");
    expect(err.message).toContain("keystone-totp:mailFrom");
  });

  it("maps connection and TLS failures, naming host:port and what to do", async () => {
    const refused = await sendFailure(
      nodemailerError("connect ECONNREFUSED 1.2.3.4:465", { code: "ESOCKET", originalCode: "ECONNREFUSED" }),
    );
    expect(refused.message).toMatch(
      /SMTP server at mail\.example\.com:465 refused the connection \(ECONNREFUSED\), so the message to alice@example\.com was not sent/,
    );
    expect(refused.recipient).toBe("alice@example.com");
    const timeout = await sendFailure(
      nodemailerError("Connection timeout", { code: "ETIMEDOUT", timeoutType: "CONNECT_TIMEOUT" }),
    );
    expect(timeout.message).toMatch(/mail\.example\.com:465 did not answer in time \(CONNECT_TIMEOUT\)/);
    const tls = await sendFailure(
      nodemailerError("self-signed certificate", { code: "ESOCKET", originalCode: "DEPTH_ZERO_SELF_SIGNED_CERT" }),
    );
    expect(tls.message).toMatch(/TLS with the SMTP server at mail\.example\.com:465 failed.*keystone-totp:smtpCaFile/);
    const noStarttls = await sendFailure(
      nodemailerError("Error upgrading connection with STARTTLS: 502 unknown command", {
        code: "ETLS",
        command: "STARTTLS",
        response: "502 5.5.2 Error: command not recognized",
        responseCode: 502,
      }),
    );
    expect(noStarttls.message).toMatch(/does not offer STARTTLS, which is required/);
  });

  it("maps verify() failures too", async () => {
    const mailer = createMailer(smtpConfig(), {
      transport: failingTransport(nodemailerError("Invalid login: 535", { code: "EAUTH", responseCode: 535 })),
    });
    await expect(mailer.verify()).rejects.toMatchObject({ code: "E_SMTP", smtpCode: 535 });
  });

  it("smtpError redacts every secret it is given", () => {
    const err = smtpError(nodemailerError(`weird ${PASSWORD}`, { code: "EPROTOCOL" }), {
      where: "h:1",
      user: undefined,
      from: "a@b.example",
      recipient: "c@d.example",
      secrets: [PASSWORD],
    });
    expect(err.message).toBe("sending to c@d.example through the SMTP server at h:1 failed (EPROTOCOL: weird ***).");
  });
});
