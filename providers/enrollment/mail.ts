/**
 * The enrollment message: composed (QR inline) and sent over SMTP, or written to the outbox,
 * with the mail settings of the stack configuration (`keystone-totp:smtpUrl`, ...), which never
 * travel as resource inputs.
 */
import { isUnconfirmedDelivery, KeystoneTotpError } from "../../lib/errors.ts";
import type { ConfigGetter } from "../../lib/keystone/auth.ts";
import { type MailConfig, resolveMailConfig } from "../../lib/mail/config.ts";
import { composeEnrollment } from "../../lib/mail/message.ts";
import { createMailer, type Mailer } from "../../lib/mail/send.ts";
import { otpauthUri } from "../../lib/totp/uri.ts";
import { isOn } from "../../lib/util/flag.ts";

/** Where the message's mailer and settings come from; tests substitute their own. */
export interface MailContext {
  readonly mailer: () => Mailer;
  readonly mailConfig: () => MailConfig;
}

let configGetter: ConfigGetter = () => undefined;
let cached: { config: MailConfig; mailer: Mailer } | undefined;

function settings() {
  if (!cached) {
    const get = (k: string) => configGetter(`keystone-totp:${k}`);
    const rate = get("sendRatePerSecond");
    const config = resolveMailConfig(
      {
        smtpUrl: get("smtpUrl"),
        mailFrom: get("mailFrom"),
        outboxDir: get("outboxDir"),
        sendRatePerSecond: rate === undefined ? undefined : Number(rate),
        allowInsecureSmtp: isOn(get("allowInsecureSmtp")),
        templateFile: get("mailTemplate"),
        smtpCaFile: get("smtpCaFile"),
      },
      process.cwd(),
    );
    cached = { config, mailer: createMailer(config) };
  }
  return cached;
}

/** The default context: mail settings from the stack config given to {@link configureMail}. */
export const defaultMailContext: MailContext = {
  mailer: () => settings().mailer,
  mailConfig: () => settings().config,
};

/** Receives the stack configuration; the mailer is made again, from it, when next needed. */
export function configureMail(get: ConfigGetter): void {
  configGetter = get;
  cached?.mailer.close();
  cached = undefined;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/u;

/** Validates the recipient address (`email`, trimmed) without any network access. */
export function checkEmail(news: Record<string, unknown>): {
  inputs: Record<string, unknown>;
  failures: { property: string; reason: string }[];
} {
  const failures: { property: string; reason: string }[] = [];
  const email = typeof news.email === "string" ? news.email.trim() : "";
  if (!EMAIL.test(email) || email.length > 254) {
    failures.push({ property: "email", reason: `'${email}' is not a valid email address` });
  }
  return { inputs: { ...news, email }, failures };
}

/** What {@link sendEnrollment} needs to compose and send one enrollment message. */
export interface EnrollmentMessage {
  /** `username@domain`, the user's stable identity (errors name it). */
  readonly userKey: string;
  readonly username: string;
  readonly domain: string;
  /** Recipient address. */
  readonly email: string;
  /** Name used in the greeting; default the username. */
  readonly displayName?: string | undefined;
  readonly issuer: string;
  /** Account label the app shows. */
  readonly account: string;
  readonly secret: string;
  /** Fingerprint of the secret: a new secret means a new message. */
  readonly fingerprint: string;
  /** `new` for a first enrollment, `rotation` for a new secret. */
  readonly reason: "new" | "rotation";
  /** Whether password + TOTP will be required once this message is delivered (what it tells the user). */
  readonly enforced?: boolean;
}

/**
 * Composes the enrollment message (QR inline) and sends it over SMTP, or writes it to the
 * outbox.
 *
 * @throws {MailError} `E_SMTP` / `E_OUTBOX`, naming the user and the address;
 *   `E_SMTP_UNCONFIRMED` when the message may have been delivered (see `smtpFailureOutcome`).
 */
export async function sendEnrollment(
  m: EnrollmentMessage,
  ctx: MailContext,
): Promise<Awaited<ReturnType<Mailer["send"]>>> {
  const config = ctx.mailConfig();
  const message = await composeEnrollment(
    {
      to: m.email,
      from: config.from,
      displayName: m.displayName,
      username: m.username,
      domain: m.domain,
      issuer: m.issuer,
      account: m.account,
      secret: m.secret,
      otpauthUri: otpauthUri({ issuer: m.issuer, account: m.account, secret: m.secret }),
      fingerprint: m.fingerprint,
      reason: m.reason,
      enforced: m.enforced === true,
    },
    config.template,
  );
  try {
    return await ctx.mailer().send(message);
  } catch (e) {
    if (e instanceof KeystoneTotpError) {
      const outcome = isUnconfirmedDelivery(e) ? "not confirmed" : "not delivered";
      e.message = `enrollment message for ${m.userKey} to ${m.email} ${outcome}: ${e.message}`;
    }
    throw e;
  }
}
