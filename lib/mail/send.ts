/**
 * Delivery of composed messages: through a pooled, rate-limited SMTP connection, or into the
 * outbox folder. Failures become {@link MailError}s that say what failed, where and what to do,
 * and never contain the SMTP password or the message (which holds a TOTP secret).
 *
 * An SMTP failure is one of two kinds (see {@link smtpFailureOutcome}): the message was not
 * delivered (`E_SMTP`: a 4xx/5xx reply, or a failure before any of its data left), or it may
 * have been (`E_SMTP_UNCONFIRMED`: its data was sent, and the connection ended before the
 * server's final reply). The outbox has no such middle: a file appears under its final name
 * complete or not at all.
 */
import { access, constants as fsConstants } from "node:fs/promises";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { rootCertificates } from "node:tls";
import nodemailer, { type NodemailerError, type SendMailOptions, type Transporter } from "nodemailer";
import type { GetSocketCallback } from "nodemailer/lib/mailer";
import { MailError } from "../errors.ts";
import type { MailConfig, OutboxMailConfig, SmtpMailConfig } from "./config.ts";
import type { ComposedMessage } from "./message.ts";
import { ensureOutboxDir, toNodemailerMessage, writeToOutbox } from "./outbox.ts";

/** Longest server reply quoted in an error message, in characters. */
export const MAX_QUOTED_REPLY_CHARS = 300;
/**
 * The key, in the options handed to nodemailer's `sendMail`, of the number that ties a send to
 * the message streams nodemailer makes for it (nodemailer copies unknown keys and ignores them).
 */
const SEND_KEY = "keystoneTotpSend";

/** The outcome of one delivered message. */
export interface SendResult {
  /** The Message-ID, with angle brackets. */
  readonly messageId: string;
  /** The recipient addresses the server accepted (the outbox accepts every one). */
  readonly accepted: readonly string[];
  /** Which way the message went. */
  readonly transport: "smtp" | "outbox";
  /** The `.eml` file, for the outbox. */
  readonly path?: string | undefined;
  /** The server's final reply, for SMTP, e.g. `250 OK: queued as ...`. */
  readonly response?: string | undefined;
  /** When delivery started, ISO 8601 UTC. */
  readonly at: string;
}

/** Counters of one mailer, for logs and benchmarks. */
export interface MailerStats {
  /** Messages delivered. */
  readonly messages: number;
  /** Messages that failed. */
  readonly failures: number;
  /** SMTP connections opened, `verify()` included (0 with an injected transport or the outbox). */
  readonly connectionsOpened: number;
}

/** Test seams: replace what talks to the outside. */
export interface MailerSeams {
  /** A nodemailer transporter used instead of the SMTP pool built from the config. */
  readonly transport?: Transporter | undefined;
  /** The clock; default `() => new Date()`. */
  readonly now?: (() => Date) | undefined;
}

/** Sends composed messages one way, chosen by the config. */
export interface Mailer {
  readonly kind: "smtp" | "outbox";
  /** Where messages go, printable: the SMTP URL without password, or the outbox folder. */
  readonly destination: string;
  /** A snapshot of the counters. */
  readonly stats: MailerStats;
  /**
   * Delivers one message.
   *
   * @throws {MailError} `E_SMTP` (with `smtpCode` and `recipient` when the server refused
   *   them): not delivered; `E_SMTP_UNCONFIRMED`: the message was sent but the server's final
   *   reply never came, so it may have been delivered; or `E_OUTBOX`.
   */
  send(msg: ComposedMessage): Promise<SendResult>;
  /**
   * Checks that messages could go, sending none: for SMTP a connection with EHLO, STARTTLS
   * (when required or offered) and AUTH; for the outbox that the folder is writable.
   *
   * @throws {MailError} `E_SMTP` or `E_OUTBOX`.
   */
  verify(): Promise<void>;
  /** Closes idle SMTP connections; a message being sent finishes first. */
  close(): void;
}

/** What an SMTP failure is reported against (see {@link smtpError}). */
export interface SmtpFailureContext {
  /** `host:port`. */
  readonly where: string;
  /** The SMTP login, if any. */
  readonly user: string | undefined;
  /** The sender address. */
  readonly from: string;
  /** The recipient, when a message was being sent. */
  readonly recipient: string | undefined;
  /** The Message-ID of the message being sent, with angle brackets; for unconfirmed deliveries. */
  readonly messageId?: string | undefined;
  /** Strings that must never appear in a message: the password and the URL. */
  readonly secrets: readonly string[];
}

/**
 * How a failed SMTP delivery ended, as far as the client can know:
 * - `not-delivered`: the server refused it (a 4xx/5xx reply: to the login, MAIL FROM, RCPT TO,
 *   DATA or the message itself), or the failure came before any of the message's data was sent
 *   (connection refused, DNS, TLS, login, a connection lost during the envelope). The server
 *   cannot hold the message.
 * - `unconfirmed`: the message's data was sent, possibly completely, and the connection was lost
 *   or timed out before the server's final reply. The server may have queued it.
 */
export type SmtpFailureOutcome = "not-delivered" | "unconfirmed";

/**
 * Classifies a failed SMTP delivery (see {@link SmtpFailureOutcome}). A reply from the server is
 * decisive whenever there is one; without one, what decides is whether any of the message's data
 * had left: only a data stream that was read can have reached the server, and a message is
 * never taken for delivered on the strength of a reply that did not come. Pure.
 *
 * @param err - what nodemailer reported (its `responseCode`, or that of `rejectedErrors[0]`).
 * @param dataSent - whether nodemailer had started to read the message's data for the DATA
 *   phase (it reads it only after the server's 354 reply to DATA).
 */
export function smtpFailureOutcome(err: unknown, dataSent: boolean): SmtpFailureOutcome {
  const e = (err ?? {}) as NodemailerError;
  const reply = e.responseCode ?? e.rejectedErrors?.[0]?.responseCode;
  if (typeof reply === "number" && reply >= 400 && reply < 600) return "not-delivered";
  return dataSent ? "unconfirmed" : "not-delivered";
}

/** Node and OpenSSL codes of a failed TLS handshake or certificate check. */
const TLS_CODE =
  /^(EPROTO$|ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT|UNABLE_TO_|HOSTNAME_MISMATCH)/;

function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("***");
  return out;
}

function quote(reply: string | undefined, secrets: readonly string[]): string {
  if (!reply) return "";
  const line = reply.replace(/\s+/g, " ").trim();
  const cut = line.length > MAX_QUOTED_REPLY_CHARS ? `${line.slice(0, MAX_QUOTED_REPLY_CHARS)}...` : line;
  return redact(cut, secrets);
}

/**
 * Turns a nodemailer failure into an `E_SMTP` {@link MailError} that says what failed, where and
 * what to do.
 *
 * @param err - what nodemailer threw.
 * @param ctx - the server, login, sender and recipient concerned, and strings to redact.
 * @param outcome - whether the message may have been delivered; default `not-delivered`.
 *   `unconfirmed` gives `E_SMTP_UNCONFIRMED`, whose message says so and names the Message-ID.
 */
export function smtpError(
  err: unknown,
  ctx: SmtpFailureContext,
  outcome: SmtpFailureOutcome = "not-delivered",
): MailError {
  const e = (err ?? {}) as NodemailerError;
  const code = typeof e.code === "string" ? e.code : "";
  const original = typeof e.originalCode === "string" ? e.originalCode : "";
  const rejected = e.rejectedErrors?.[0];
  const smtpCode = e.responseCode ?? rejected?.responseCode;
  const reply = quote(e.response ?? rejected?.response, ctx.secrets);
  const said = reply ? `; the server said: ${reply}` : "";
  const to = ctx.recipient ? ` to ${ctx.recipient}` : "";
  const transient = smtpCode !== undefined && smtpCode >= 400 && smtpCode < 500;
  const later = transient ? " This is a temporary refusal: try again later." : "";
  const detail = quote(e.message, ctx.secrets) || "unknown error";
  const url = "keystone-totp:smtpUrl";

  let message: string;
  let recipient = ctx.recipient;
  if (outcome === "unconfirmed") {
    const why = code === "ETIMEDOUT" ? "timed out" : "was lost";
    message =
      `the message${to} was sent to the SMTP server at ${ctx.where}, but the connection ${why} before the ` +
      `server confirmed it (${code || "error"}: ${detail}): it may have been delivered` +
      `${ctx.messageId ? ` (Message-ID ${ctx.messageId}: look for it in the server's log)` : ""}. ` +
      "Its secret stays valid, and the next 'up' sends the same message again.";
    return new MailError(
      "E_SMTP_UNCONFIRMED",
      redact(message, ctx.secrets),
      recipient !== undefined ? { recipient } : {},
      { cause: redactedCause(e, ctx.secrets) },
    );
  }
  if (code === "EAUTH") {
    message =
      `the SMTP server at ${ctx.where} refused the login${ctx.user ? ` of user "${ctx.user}"` : ""}${said}. ` +
      `Check the user name and password in ${url}.`;
  } else if (code === "ENOAUTH" || (smtpCode === 530 && !ctx.user)) {
    recipient = code === "ENOAUTH" ? recipient : undefined;
    message = `the SMTP server at ${ctx.where} requires a login${said}, but ${url} has no user:password.`;
  } else if (code === "ETLS" && e.command === "STARTTLS" && smtpCode !== undefined) {
    message =
      `the SMTP server at ${ctx.where} does not offer STARTTLS, which is required${said}. Use smtps:// if it ` +
      "offers implicit TLS, or set keystone-totp:allowInsecureSmtp to send unencrypted (not recommended).";
  } else if (code === "ETLS" || TLS_CODE.test(original) || TLS_CODE.test(code)) {
    message =
      `TLS with the SMTP server at ${ctx.where} failed (${detail}). If its certificate is self-signed or from a ` +
      "private CA, set keystone-totp:smtpCaFile to that CA's PEM file; check that the host name in " +
      `${url} matches the certificate.`;
  } else if (code === "EDNS") {
    message = `the SMTP server's host name in ${ctx.where} could not be resolved (${detail}). Check ${url}.`;
  } else if (code === "ETIMEDOUT") {
    message =
      `the SMTP server at ${ctx.where} did not answer in time${e.timeoutType ? ` (${e.timeoutType})` : ""}` +
      `${to ? ` while sending${to}` : ""}. Check that the host and port in ${url} are right and reachable.`;
  } else if (original === "ECONNREFUSED") {
    message =
      `the SMTP server at ${ctx.where} refused the connection (ECONNREFUSED)` +
      `${to ? `, so the message${to} was not sent` : ""}: nothing listens there. ` +
      `Check the host and port in ${url} and that the server is up.`;
  } else if ((code === "ESOCKET" || code === "ECONNECTION") && smtpCode === undefined) {
    message =
      `the connection to the SMTP server at ${ctx.where} failed${to ? ` while sending${to}` : ""} ` +
      `(${original || detail}). Check the host and port in ${url} and that the server is up.`;
  } else if (code === "EENVELOPE" && e.command === "MAIL FROM") {
    recipient = undefined;
    message =
      `the SMTP server at ${ctx.where} refused the sender ${ctx.from}${said}. ` +
      "Set keystone-totp:mailFrom to an address this account may send as.";
  } else if (code === "EENVELOPE" && (e.command === "RCPT TO" || rejected !== undefined)) {
    message = `the SMTP server at ${ctx.where} rejected the recipient ${ctx.recipient ?? "(unknown)"}${said}. Check the user's email address.${later}`;
  } else if (code === "EENVELOPE" || code === "EMESSAGE") {
    message = `the SMTP server at ${ctx.where} refused the message${to}${said}.${later}`;
  } else {
    message = `sending${to} through the SMTP server at ${ctx.where} failed (${code || "error"}: ${detail}).${later}`;
  }
  return new MailError(
    "E_SMTP",
    redact(message, ctx.secrets),
    {
      ...(recipient !== undefined ? { recipient } : {}),
      ...(smtpCode !== undefined ? { smtpCode } : {}),
    },
    { cause: redactedCause(e, ctx.secrets) },
  );
}

/** A copy of nodemailer's error for `cause` with only its diagnostic fields, redacted. */
function redactedCause(e: NodemailerError, secrets: readonly string[]): Error {
  const copy = new Error(redact(String(e.message ?? ""), secrets)) as Error & Record<string, unknown>;
  copy.name = typeof e.name === "string" ? e.name : "Error";
  for (const field of ["code", "originalCode", "command", "responseCode", "timeoutType", "errno", "syscall"] as const) {
    if (e[field] !== undefined) copy[field] = e[field];
  }
  if (typeof e.response === "string") copy.response = redact(e.response, secrets);
  copy.stack = redact(copy.stack ?? "", secrets);
  return copy;
}

function createSmtpMailer(config: SmtpMailConfig, seams: MailerSeams): Mailer {
  const now = seams.now ?? (() => new Date());
  const counters = { messages: 0, failures: 0, connectionsOpened: 0 };
  const where = `${isIP(config.host) === 6 ? `[${config.host}]` : config.host}:${config.port}`;
  const pass = config.auth?.pass ?? "";
  const ctx = (recipient: string | undefined, messageId?: string): SmtpFailureContext => ({
    where,
    user: config.auth?.user,
    from: config.fromAddress,
    recipient,
    messageId,
    secrets: [config.url, pass, encodeURIComponent(pass)],
  });
  const transporter =
    seams.transport ??
    nodemailer.createTransport({
      pool: true,
      host: config.host,
      port: config.port,
      secure: config.secure,
      requireTLS: config.requireTls,
      auth: config.auth ? { user: config.auth.user, pass: config.auth.pass } : undefined,
      tls: {
        // Node's `ca` replaces the system's store; keep it and add the operator's CA.
        ...(config.caPem !== undefined ? { ca: [...rootCertificates, config.caPem] } : {}),
        ...(isIP(config.host) === 0 ? { servername: config.host } : {}),
        minVersion: "TLSv1.2",
      },
      maxConnections: config.maxConnections,
      maxMessages: config.maxMessagesPerConnection,
      rateLimit: config.rateLimit,
      rateDelta: config.rateDeltaMs,
      connectionTimeout: config.connectionTimeoutMs,
      greetingTimeout: config.greetingTimeoutMs,
      socketTimeout: config.socketTimeoutMs,
      disableFileAccess: true,
      disableUrlAccess: true,
      logger: false,
      // Called once per new connection (verify's included): the cheapest exact count.
      getSocket: (_options: unknown, callback: GetSocketCallback) => {
        counters.connectionsOpened += 1;
        setImmediate(() => callback(null, false));
      },
    });
  // Failures reach callers through send() and verify(); an unhandled 'error' event would crash.
  transporter.on("error", () => undefined);
  // The message streams of each send in flight, to tell afterwards whether any was read: the
  // SMTP connection reads the message only once the server has answered DATA with 354 (the
  // same test nodemailer's pool makes before it sends a message again). A stream is noted by a
  // 'stream' plugin, as the one the connection will read; were anything to wrap it after this
  // plugin (DKIM, newline conversion: neither is used here), it would be read early, which errs
  // towards "unconfirmed", never towards undoing a message that went.
  const streams = new Map<string, Readable[]>();
  let sends = 0;
  transporter.use("stream", (mail, done) => {
    const mine = streams.get(String((mail.data as Record<string, unknown>)[SEND_KEY]));
    if (mine) {
      mail.message.processFunc((input) => {
        mine.push(input);
        return input;
      });
    }
    done();
  });

  return {
    kind: "smtp",
    destination: config.displayUrl,
    get stats(): MailerStats {
      return { ...counters };
    },
    async send(msg) {
      const at = now().toISOString();
      const key = String(++sends);
      const read: Readable[] = [];
      streams.set(key, read);
      try {
        const options: SendMailOptions & Record<typeof SEND_KEY, string> = {
          ...toNodemailerMessage(msg),
          [SEND_KEY]: key,
        };
        const info = await transporter.sendMail(options);
        const rejected: string[] = info.rejected ?? [];
        if (rejected.length > 0) {
          throw Object.assign(new Error("recipient rejected"), {
            code: "EENVELOPE",
            command: "RCPT TO",
            rejectedErrors: info.rejectedErrors,
          });
        }
        counters.messages += 1;
        return {
          messageId: String(info.messageId ?? msg.messageId),
          accepted: (info.accepted ?? [msg.to.address]).map(String),
          transport: "smtp",
          response: typeof info.response === "string" ? info.response : undefined,
          at,
        };
      } catch (err) {
        counters.failures += 1;
        const dataSent = read.some((stream) => stream.readableDidRead);
        throw smtpError(err, ctx(msg.to.address, msg.messageId), smtpFailureOutcome(err, dataSent));
      } finally {
        streams.delete(key);
      }
    },
    async verify() {
      try {
        await transporter.verify();
      } catch (err) {
        throw smtpError(err, ctx(undefined));
      }
    },
    close() {
      transporter.close();
    },
  };
}

function createOutboxMailer(config: OutboxMailConfig, seams: MailerSeams): Mailer {
  const now = seams.now ?? (() => new Date());
  const counters = { messages: 0, failures: 0, connectionsOpened: 0 };
  return {
    kind: "outbox",
    destination: config.dir,
    get stats(): MailerStats {
      return { ...counters };
    },
    async send(msg) {
      const at = now();
      try {
        const written = await writeToOutbox(config.dir, msg, at);
        counters.messages += 1;
        return {
          messageId: written.messageId,
          accepted: [msg.to.address],
          transport: "outbox",
          path: written.path,
          at: at.toISOString(),
        };
      } catch (err) {
        counters.failures += 1;
        throw err;
      }
    },
    async verify() {
      try {
        await ensureOutboxDir(config.dir);
        await access(config.dir, fsConstants.W_OK);
      } catch (cause) {
        const code = (cause as NodeJS.ErrnoException).code ?? "error";
        throw new MailError(
          "E_OUTBOX",
          `the outbox ${config.dir} cannot be created or written (${code}): make it writable by this user, ` +
            "or set keystone-totp:outboxDir",
          {},
          { cause },
        );
      }
    },
    close() {},
  };
}

/**
 * Creates the mailer for a config.
 *
 * SMTP: a pool of at most `maxConnections` connections, each replaced after
 * `maxMessagesPerConnection` messages, sending at most `rateLimit` messages per `rateDeltaMs`;
 * TLS certificates are verified (system CAs plus `caPem`); nothing is logged. Outbox: each
 * message written by `writeToOutbox`.
 *
 * @param config - from `resolveMailConfig`.
 * @param seams - test seams; default none.
 */
export function createMailer(config: MailConfig, seams: MailerSeams = {}): Mailer {
  return config.kind === "smtp" ? createSmtpMailer(config, seams) : createOutboxMailer(config, seams);
}
