/**
 * Preflight checks of mail delivery, sending nothing: the settings are valid, and either the
 * SMTP relay accepts a connection, STARTTLS, the login and the sender, or the outbox folder
 * can be written.
 */
import { constants as fsConstants } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { ConfigError, MailError } from "../../lib/errors.ts";
import { type MailConfig, resolveMailConfig, type SmtpMailConfig } from "../../lib/mail/config.ts";
import { OUTBOX_DIR_MODE, OUTBOX_EXTENSION } from "../../lib/mail/outbox.ts";
import { createMailer, smtpError } from "../../lib/mail/send.ts";
import { type CheckResult, result } from "./types.ts";

/** Stable check ids of this module. */
export const MAIL_CHECK_IDS = {
  config: "mail.config",
  smtp: "mail.smtp",
  outbox: "mail.outbox",
} as const;

/** Environment variable the doctor reads the SMTP URL from (keeps the password out of `ps`). */
export const SMTP_URL_ENV = "KEYSTONE_TOTP_SMTP_URL";
/** Environment variable the doctor reads the sender from. */
export const MAIL_FROM_ENV = "KEYSTONE_TOTP_MAIL_FROM";

/** Mail settings for the doctor, as given on the command line or in the environment. */
export interface MailCheckOptions {
  readonly smtpUrl?: string | undefined;
  readonly mailFrom?: string | undefined;
  readonly outboxDir?: string | undefined;
  /** PEM file of CA certificates to trust for the SMTP server, besides the system's. */
  readonly smtpCaFile?: string | undefined;
  /** Directory relative paths are resolved against. */
  readonly projectDir: string;
}

/**
 * Checks the mail settings and the way messages would go.
 *
 * @returns `mail.config`, then `mail.smtp` or `mail.outbox`.
 */
export async function checkMail(o: MailCheckOptions): Promise<CheckResult[]> {
  const title = "mail settings";
  let config: MailConfig;
  try {
    config = resolveMailConfig(
      { smtpUrl: o.smtpUrl, mailFrom: o.mailFrom, outboxDir: o.outboxDir, smtpCaFile: o.smtpCaFile },
      o.projectDir,
    );
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return [
      result(MAIL_CHECK_IDS.config, title, "failure", e.message, {
        fix: `Give --smtp-url (or ${SMTP_URL_ENV}) with --mail-from (or ${MAIL_FROM_ENV}), or --outbox DIR; --smtp-ca-file must be a PEM file.`,
        code: "E_CONFIG",
      }),
      o.smtpUrl
        ? result(MAIL_CHECK_IDS.smtp, "SMTP relay", "skipped", "the mail settings are invalid")
        : result(MAIL_CHECK_IDS.outbox, "outbox folder", "skipped", "the mail settings are invalid"),
    ];
  }
  if (config.kind === "smtp") {
    return [
      result(MAIL_CHECK_IDS.config, title, "ok", `SMTP relay ${config.displayUrl}, sender ${config.fromAddress}`, {
        details: { kind: "smtp", url: config.displayUrl, from: config.fromAddress },
      }),
      await checkSmtp(config),
    ];
  }
  return [
    result(MAIL_CHECK_IDS.config, title, "ok", `outbox folder ${config.dir} (no SMTP URL given)`, {
      details: { kind: "outbox", dir: config.dir },
    }),
    await checkOutbox(config.dir),
  ];
}

/** How the sender probe's session went. */
interface SenderProbe {
  /** The session was encrypted (STARTTLS or implicit TLS). */
  readonly encrypted: boolean;
  /** The server refused the probe's recipient (the sender itself), which is fine here. */
  readonly recipientRefused: boolean;
}

/**
 * Asks the relay to accept the sender without sending a message: connect (STARTTLS when
 * required or offered), log in, `MAIL FROM:<sender>`, `RCPT TO:<sender>`, `DATA`; once the
 * server answers 354 ("start mail input") the connection is closed before any content, so
 * nothing is delivered (RFC 5321 section 4.1.1.4: a message is only accepted at its final dot).
 * A refused recipient also shows that the sender was accepted.
 *
 * @throws {MailError} `E_SMTP`, as `smtpError` words it.
 */
export function probeSender(config: SmtpMailConfig): Promise<SenderProbe> {
  const pass = config.auth?.pass ?? "";
  const ctx = {
    where: `${isIP(config.host) === 6 ? `[${config.host}]` : config.host}:${config.port}`,
    user: config.auth?.user,
    from: config.fromAddress,
    recipient: undefined,
    secrets: [config.url, pass, encodeURIComponent(pass)].filter((s) => s.length > 0),
  };
  return new Promise((resolvePromise, reject) => {
    const conn = new SMTPConnection({
      host: config.host,
      port: config.port,
      secure: config.secure,
      requireTLS: config.requireTls,
      tls: {
        ...(config.caPem !== undefined ? { ca: [...rootCertificates, config.caPem] } : {}),
        ...(isIP(config.host) === 0 ? { servername: config.host } : {}),
        minVersion: "TLSv1.2",
      },
      connectionTimeout: config.connectionTimeoutMs,
      greetingTimeout: config.greetingTimeoutMs,
      socketTimeout: config.socketTimeoutMs,
      socketCloseTimeout: 0,
      logger: false,
    });
    let settled = false;
    const finish = (err: unknown, recipientRefused = false): void => {
      if (settled) return;
      settled = true;
      const encrypted = conn.secure;
      conn.close();
      if (err) reject(err instanceof MailError ? err : smtpError(err, ctx));
      else resolvePromise({ encrypted, recipientRefused });
    };
    conn.on("error", (err: unknown) => finish(err));
    conn.connect(() => {
      const envelope = (): void => {
        // Read only once the server said 354 to DATA: sender and recipient were accepted.
        const content = new Readable({ read: () => finish(undefined) });
        conn.send({ from: config.fromAddress, to: [config.fromAddress] }, content, (err) => {
          if (!err) return finish(new Error("the probe message was not expected to be sent"));
          const e = err as { code?: string; command?: string };
          if (e.code === "EENVELOPE" && e.command === "RCPT TO") return finish(undefined, true);
          finish(err);
        });
      };
      if (config.auth) {
        conn.login({ user: config.auth.user, pass: config.auth.pass }, (err) => (err ? finish(err) : envelope()));
      } else {
        envelope();
      }
    });
  });
}

/** The failed SMTP check for a mail error, with what to do. */
function smtpFailure(id: string, title: string, e: MailError): CheckResult {
  return result(id, title, "failure", e.message, { fix: smtpFix(e), code: e.code, details: { smtpCode: e.smtpCode } });
}

/** The relay: connection, TLS and login (the mailer's own `verify()`), then the sender. */
export async function checkSmtp(config: SmtpMailConfig): Promise<CheckResult> {
  const id = MAIL_CHECK_IDS.smtp;
  const title = "SMTP relay";
  const mailer = createMailer(config);
  try {
    await mailer.verify();
  } catch (e) {
    if (!(e instanceof MailError)) throw e;
    return smtpFailure(id, title, e);
  } finally {
    mailer.close();
  }
  let probe: SenderProbe;
  try {
    probe = await probeSender(config);
  } catch (e) {
    if (!(e instanceof MailError)) throw e;
    return smtpFailure(id, title, e);
  }
  const tls = config.secure ? "implicit TLS" : probe.encrypted ? "STARTTLS" : "no TLS (loopback)";
  const login = config.auth ? `login as ${config.auth.user}` : "no login";
  const message =
    `${config.displayUrl} accepts the connection (${tls}), the ${login} and the sender ${config.fromAddress}; ` +
    "no message was sent";
  const details = { tls, login: config.auth !== undefined, recipientRefused: probe.recipientRefused };
  if (!probe.encrypted && !config.loopback) {
    return result(id, title, "warning", `${message}, but the session was not encrypted`, {
      fix: "Use smtps:// or a relay that offers STARTTLS: the messages carry TOTP secrets.",
      details,
    });
  }
  return result(id, title, "ok", message, { details });
}

function smtpFix(e: MailError): string {
  // smtpError's messages already say what to do; this is the general advice after it.
  return e.smtpCode !== undefined && e.smtpCode >= 400 && e.smtpCode < 500
    ? "A temporary refusal: run the doctor again later."
    : "Fix the setting the message names (--smtp-url / KEYSTONE_TOTP_SMTP_URL, --mail-from), then run the doctor again.";
}

/**
 * The outbox folder: writable if it exists, creatable if not (nothing is created here), and
 * not readable by others (the messages carry TOTP secrets).
 */
export async function checkOutbox(dir: string): Promise<CheckResult> {
  const id = MAIL_CHECK_IDS.outbox;
  const title = "outbox folder";
  const fix = "Make the folder writable by this user, or give another one with --outbox DIR.";
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) {
      return result(id, title, "failure", `${dir} exists but is not a folder`, { fix, code: "E_OUTBOX" });
    }
    await access(dir, fsConstants.W_OK | fsConstants.X_OK);
    const waiting = (await readdir(dir)).filter((f) => f.endsWith(OUTBOX_EXTENSION)).length;
    const message = `${dir} is writable; ${waiting} message(s) in it`;
    const details = { dir, exists: true, messages: waiting, mode: (s.mode & 0o777).toString(8) };
    if ((s.mode & 0o077) !== 0) {
      return result(id, title, "warning", `${message}; but others may read it (mode ${details.mode})`, {
        fix: `The messages hold TOTP secrets: chmod ${OUTBOX_DIR_MODE.toString(8)} ${dir} (keystone-totp sets this when it writes).`,
        details,
      });
    }
    return result(id, title, "ok", message, { details });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "error";
    if (code !== "ENOENT") {
      return result(id, title, "failure", `${dir} cannot be written (${code})`, { fix, code: "E_OUTBOX" });
    }
  }
  // Missing: the nearest existing folder above must let us create it.
  let parent = dirname(dir);
  for (;;) {
    try {
      const s = await stat(parent);
      if (!s.isDirectory()) {
        return result(id, title, "failure", `${dir} cannot be created: ${parent} is not a folder`, {
          fix,
          code: "E_OUTBOX",
        });
      }
      await access(parent, fsConstants.W_OK | fsConstants.X_OK);
      return result(id, title, "ok", `${dir} does not exist yet; it will be created (mode 700) in ${parent}`, {
        details: { dir, exists: false },
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "error";
      const up = dirname(parent);
      if (code === "ENOENT" && up !== parent) {
        parent = up;
        continue;
      }
      return result(id, title, "failure", `${dir} cannot be created in ${parent} (${code})`, { fix, code: "E_OUTBOX" });
    }
  }
}
