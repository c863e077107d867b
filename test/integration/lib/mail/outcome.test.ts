/**
 * Where an SMTP delivery failed, against a real SMTP server (the smtp-server package) on
 * 127.0.0.1: a server that stores the message and then loses the connection (or never answers)
 * before its final reply may hold it, and the mailer says so (`E_SMTP_UNCONFIRMED`); every
 * failure before the message's data was sent, and every 4xx/5xx reply, is a plain `E_SMTP`
 * (not delivered). The caller undoes only the latter (see the enrollment handlers).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { MailError } from "../../../../lib/errors.ts";
import { resolveMailConfig, type SmtpMailConfig } from "../../../../lib/mail/config.ts";
import { type ComposedMessage, composeEnrollment } from "../../../../lib/mail/message.ts";
import { createMailer, type Mailer } from "../../../../lib/mail/send.ts";
import {
  enrollmentInput,
  opensslAvailable,
  parseMessage,
  startSmtpServer,
  type TestSmtpServer,
} from "../../../support/smtp.ts";

const FROM = "ACME Cloud <noreply@example.com>";
/** Fast enough that the rate limit does not dominate the tests. */
const TEST_RATE_PER_SECOND = 1000;
/** Socket timeout for the test of a server that never answers, in milliseconds. */
const SHORT_SOCKET_TIMEOUT_MS = 500;
const HAS_OPENSSL = opensslAvailable();

const project = mkdtempSync(join(tmpdir(), "keystone-totp-smtp-outcome-"));
const servers: TestSmtpServer[] = [];
const mailers: Mailer[] = [];

afterEach(() => {
  for (const m of mailers.splice(0)) m.close();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  rmSync(project, { recursive: true, force: true });
});

async function server(options: Parameters<typeof startSmtpServer>[0] = {}): Promise<TestSmtpServer> {
  const s = await startSmtpServer(options);
  servers.push(s);
  return s;
}

function smtpConfig(url: string, extra: Partial<SmtpMailConfig> = {}): SmtpMailConfig {
  const config = resolveMailConfig({ smtpUrl: url, mailFrom: FROM, sendRatePerSecond: TEST_RATE_PER_SECOND }, project);
  if (config.kind !== "smtp") throw new Error("expected SMTP");
  // The config keeps some fields non-enumerable (the URL with its password): derive, do not copy.
  const fields = Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, { value: v, enumerable: true }]));
  return Object.create(config, fields) as SmtpMailConfig;
}

function mailer(config: SmtpMailConfig): Mailer {
  const m = createMailer(config);
  mailers.push(m);
  return m;
}

function message(to: string): Promise<ComposedMessage> {
  return composeEnrollment(enrollmentInput({ to }));
}

/** The failure of a send, checked to be a MailError whose text holds no secret of the message. */
async function failure(m: Mailer, msg: ComposedMessage): Promise<MailError> {
  const err = await m.send(msg).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MailError);
  const text = `${(err as Error).message}\n${inspect(err, { depth: 8 })}`;
  expect(text.includes("otpauth://")).toBe(false);
  return err as MailError;
}

/** Message-IDs of what the server stored for an address. */
async function storedIds(s: TestSmtpServer, address: string): Promise<string[]> {
  return Promise.all(s.messagesFor(address).map(async (raw) => (await parseMessage(raw)).messageId ?? ""));
}

describe("the outcome of a failed SMTP delivery", () => {
  it("a server that stores the message and drops the connection before answering: E_SMTP_UNCONFIRMED", async () => {
    const s = await server();
    s.loseReply("alice@example.com", "drop-after-data");
    const m = mailer(smtpConfig(s.url));
    const msg = await message("alice@example.com");
    const err = await failure(m, msg);
    expect(err).toMatchObject({ code: "E_SMTP_UNCONFIRMED", recipient: "alice@example.com", smtpCode: undefined });
    expect(err.message).toContain(`was sent to the SMTP server at 127.0.0.1:${s.port}`);
    expect(err.message).toContain("it may have been delivered");
    expect(err.message).toContain(`Message-ID ${msg.messageId}`);
    expect(err.message).toContain("the next 'up' sends the same message again");
    // The server does hold it: that is why nothing may be undone.
    expect(await storedIds(s, "alice@example.com")).toEqual([msg.messageId]);
    // The pool recovers: the next message goes on a new connection.
    await m.send(await message("bob@example.com"));
    expect(s.messagesFor("bob@example.com")).toHaveLength(1);
  });

  it("a server that stores the message and never answers: the socket timeout is unconfirmed too", async () => {
    const s = await server();
    s.loseReply("alice@example.com", "silent-after-data");
    const m = mailer(smtpConfig(s.url, { socketTimeoutMs: SHORT_SOCKET_TIMEOUT_MS }));
    const err = await failure(m, await message("alice@example.com"));
    expect(err.code).toBe("E_SMTP_UNCONFIRMED");
    expect(err.message).toContain("the connection timed out before the server confirmed it");
    expect(s.messagesFor("alice@example.com")).toHaveLength(1);
  });

  it.skipIf(!HAS_OPENSSL)("the same over implicit TLS", async () => {
    const s = await server({ tls: "implicit" });
    s.loseReply("alice@example.com", "drop-after-data");
    const m = mailer(smtpConfig(s.url, { caPem: s.certificate?.certPem }));
    const err = await failure(m, await message("alice@example.com"));
    expect(err.code).toBe("E_SMTP_UNCONFIRMED");
    expect(s.messagesFor("alice@example.com")).toHaveLength(1);
  });

  it("a connection lost at RCPT TO, before any of the message was sent: E_SMTP, not delivered", async () => {
    const s = await server();
    s.loseReply("alice@example.com", "drop-at-rcpt");
    const m = mailer(smtpConfig(s.url));
    const err = await failure(m, await message("alice@example.com"));
    expect(err.code).toBe("E_SMTP");
    expect(s.received).toHaveLength(0);
  });

  it("a 554 to the message after its data, and a 550 to the recipient: E_SMTP with the code", async () => {
    const s = await server();
    s.rejectData("alice@example.com", 554);
    s.rejectRecipient("bob@example.com", 550);
    const m = mailer(smtpConfig(s.url));
    const data = await failure(m, await message("alice@example.com"));
    expect(data).toMatchObject({ code: "E_SMTP", smtpCode: 554 });
    expect(data.message).toContain("refused the message to alice@example.com");
    const rcpt = await failure(m, await message("bob@example.com"));
    expect(rcpt).toMatchObject({ code: "E_SMTP", smtpCode: 550 });
    expect(s.received).toHaveLength(0);
  });

  it("a server that is down (connection refused): E_SMTP", async () => {
    const s = await server();
    await s.down();
    const err = await failure(mailer(smtpConfig(s.url)), await message("alice@example.com"));
    expect(err.code).toBe("E_SMTP");
  });
});
