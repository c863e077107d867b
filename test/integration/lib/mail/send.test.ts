/**
 * The SMTP mailer against a real SMTP server (the smtp-server package) on 127.0.0.1: pooling,
 * rejected recipients, a server that goes down, logins, and STARTTLS or SMTPS with a
 * self-signed certificate made by openssl at test time.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { MailError } from "../../../../lib/errors.ts";
import { type MailSettings, resolveMailConfig, type SmtpMailConfig } from "../../../../lib/mail/config.ts";
import { type ComposedMessage, composeEnrollment } from "../../../../lib/mail/message.ts";
import { createMailer, type Mailer } from "../../../../lib/mail/send.ts";
import { groupSecret } from "../../../../lib/totp/secret.ts";
import { registerSecrets } from "../../../support/secrets.ts";
import {
  decodeQrPng,
  enrollmentInput,
  opensslAvailable,
  parseMessage,
  startSmtpServer,
  type TestSmtpServer,
} from "../../../support/smtp.ts";

/** Asserts without printing the text, which holds a secret, when it fails. */
function expectIn(text: string, part: string): void {
  expect(text.includes(part), `expected the message to contain ${JSON.stringify(part)}`).toBe(true);
}

const FROM = "ACME Cloud <noreply@example.com>";
/** Fast enough that the rate limit does not dominate the tests. */
const TEST_RATE_PER_SECOND = 1000;
const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL) console.warn("openssl is not installed: skipping the STARTTLS and SMTPS tests");

const project = mkdtempSync(join(tmpdir(), "keystone-totp-smtp-it-"));
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

function smtpConfig(url: string, settings: MailSettings = {}): SmtpMailConfig {
  const config = resolveMailConfig(
    { smtpUrl: url, mailFrom: FROM, sendRatePerSecond: TEST_RATE_PER_SECOND, ...settings },
    project,
  );
  if (config.kind !== "smtp") throw new Error("expected SMTP");
  return config;
}

function mailer(config: SmtpMailConfig): Mailer {
  const m = createMailer(config);
  mailers.push(m);
  return m;
}

function message(to: string): Promise<ComposedMessage> {
  return composeEnrollment(enrollmentInput({ to }));
}

/** The failure of a promise, checked to be an E_SMTP MailError that shows none of the secrets. */
async function smtpFailure(p: Promise<unknown>, secrets: readonly string[]): Promise<MailError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MailError);
  expect((err as MailError).code).toBe("E_SMTP");
  const text = `${(err as Error).message}\n${inspect(err, { depth: 8 })}`;
  for (const s of secrets) expect(text.includes(s)).toBe(false);
  return err as MailError;
}

describe("SMTP mailer against a real SMTP server", () => {
  it("delivers 20 messages over one pooled connection, each with the QR code inline", async () => {
    const s = await server();
    const m = mailer(smtpConfig(s.url));
    const inputs = Array.from({ length: 20 }, (_, i) => enrollmentInput({ to: `user${i}@example.com` }));
    for (const input of inputs) {
      const result = await m.send(await composeEnrollment(input));
      expect(result).toMatchObject({ transport: "smtp", accepted: [input.to] });
    }
    expect(s.connections).toBe(1);
    expect(m.stats).toEqual({ messages: 20, failures: 0, connectionsOpened: 1 });

    const first = inputs[0];
    const [raw] = s.messagesFor("user0@example.com");
    if (first === undefined || raw === undefined) throw new Error("user0's message was not received");
    const parsed = await parseMessage(raw);
    expect(parsed.subject).toBe("Set up two-factor login for ACME Cloud");
    expect(parsed.text?.includes(groupSecret(first.secret))).toBe(true);
    const png = parsed.attachments[0];
    expectIn(parsed.html || "", `src="cid:${png?.cid}"`);
    expect(decodeQrPng(png?.content ?? Buffer.alloc(0)) === first.otpauthUri).toBe(true);
    for (const input of inputs) expect(s.messagesFor(input.to)).toHaveLength(1);
  });

  it("keeps to at most one connection per 100 messages when 200 are sent at once", async () => {
    const s = await server();
    const m = mailer(smtpConfig(s.url));
    const msgs = await Promise.all(Array.from({ length: 200 }, (_, i) => message(`bulk${i}@example.com`)));
    const started = Date.now();
    await Promise.all(msgs.map((msg) => m.send(msg)));
    const elapsedMs = Date.now() - started;
    expect(s.received).toHaveLength(200);
    expect(s.connections).toBeLessThanOrEqual(2);
    expect(m.stats.connectionsOpened).toBe(s.connections);
    console.info(`200 messages: ${s.connections} SMTP connection(s), ${elapsedMs} ms`);
  });

  it("reports a 550 for one recipient with its code and address, and delivers the others", async () => {
    const s = await server();
    s.rejectRecipient("bob@example.com", 550);
    const m = mailer(smtpConfig(s.url));
    const results = await Promise.allSettled(
      ["alice@example.com", "bob@example.com", "carol@example.com"].map(async (to) => m.send(await message(to))),
    );
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    const err = (results[1] as PromiseRejectedResult).reason as MailError;
    expect(err).toBeInstanceOf(MailError);
    expect(err).toMatchObject({ code: "E_SMTP", smtpCode: 550, recipient: "bob@example.com" });
    expect(err.message).toContain(`127.0.0.1:${s.port}`);
    expect(err.message).toContain("rejected the recipient bob@example.com");
    expect(s.messagesFor("alice@example.com")).toHaveLength(1);
    expect(s.messagesFor("carol@example.com")).toHaveLength(1);
    expect(s.messagesFor("bob@example.com")).toHaveLength(0);
    expect(m.stats).toMatchObject({ messages: 2, failures: 1 });
  });

  it("reports a refused sender, naming keystone-totp:mailFrom", async () => {
    const s = await server();
    s.rejectSender("noreply@example.com");
    const err = await smtpFailure(mailer(smtpConfig(s.url)).send(await message("alice@example.com")), []);
    expect(err.smtpCode).toBe(553);
    expect(err.message).toContain("refused the sender noreply@example.com");
    expect(err.message).toContain("keystone-totp:mailFrom");
  });

  it("reports a server that is down with its host:port, and recovers when it is back", async () => {
    const s = await server();
    const m = mailer(smtpConfig(s.url));
    await m.send(await message("before@example.com"));
    await s.down();
    const err = await smtpFailure(m.send(await message("during@example.com")), []);
    expect(err.message).toContain(`127.0.0.1:${s.port}`);
    expect(err.message).toMatch(/refused the connection \(ECONNREFUSED\)|connection to the SMTP server .* failed/);
    await expect(m.verify()).rejects.toMatchObject({ code: "E_SMTP" });
    await s.up();
    await m.send(await message("after@example.com"));
    expect(s.messagesFor("after@example.com")).toHaveLength(1);
    expect(s.messagesFor("during@example.com")).toHaveLength(0);
  });

  it("verify() logs in without sending; a wrong password fails without showing either password", async () => {
    const s = await server({ auth: true });
    const good = mailer(smtpConfig(s.url));
    await good.verify();
    expect(s.received).toHaveLength(0);
    expect(good.stats.connectionsOpened).toBe(1);
    await good.send(await message("alice@example.com"));
    expect(s.received[0]?.user).toBe(s.user);

    const wrongPassword = `${s.password}-wrong`;
    registerSecrets(wrongPassword);
    const badUrl = `smtp://${s.user}:${encodeURIComponent(wrongPassword)}@127.0.0.1:${s.port}`;
    const bad = mailer(smtpConfig(badUrl));
    const secrets = [wrongPassword, s.password ?? ""];
    const verifyErr = await smtpFailure(bad.verify(), secrets);
    expect(verifyErr.message).toContain(`refused the login of user "${s.user}"`);
    expect(verifyErr.message).toContain(`127.0.0.1:${s.port}`);
    expect(verifyErr.smtpCode).toBe(535);
    const sendErr = await smtpFailure(bad.send(await message("bob@example.com")), secrets);
    expect(sendErr.message).toContain("refused the login");
    expect(s.messagesFor("bob@example.com")).toHaveLength(0);

    const anonymous = mailer(smtpConfig(`smtp://127.0.0.1:${s.port}`));
    const anonErr = await smtpFailure(anonymous.send(await message("carol@example.com")), secrets);
    expect(anonErr.message).toContain("requires a login; the server said: 530");
    expect(anonErr.smtpCode).toBe(530);
  });

  it("refuses a server without STARTTLS when TLS is required", async () => {
    const s = await server();
    // Loopback is exempt from the requirement; force it as for a remote host.
    const config = Object.create(smtpConfig(s.url), { requireTls: { value: true, enumerable: true } });
    const err = await smtpFailure(mailer(config).send(await message("alice@example.com")), []);
    expect(err.message).toContain(`the SMTP server at 127.0.0.1:${s.port} does not offer STARTTLS, which is required`);
    expect(s.received).toHaveLength(0);
  });

  it.skipIf(!HAS_OPENSSL)("refuses STARTTLS to a self-signed server unless smtpCaFile names its CA", async () => {
    const s = await server({ tls: "starttls", auth: true });
    const secrets = [s.password ?? ""];
    const untrusted = mailer(smtpConfig(s.url));
    const err = await smtpFailure(untrusted.send(await message("alice@example.com")), secrets);
    expect(err.message).toContain(`TLS with the SMTP server at 127.0.0.1:${s.port} failed`);
    expect(err.message).toContain("keystone-totp:smtpCaFile");
    expect(s.received).toHaveLength(0);

    const trusted = mailer(smtpConfig(s.url, { smtpCaFile: s.certificate?.certFile }));
    await trusted.verify();
    await trusted.send(await message("alice@example.com"));
    expect(s.received).toHaveLength(1);
    expect({ secure: s.received[0]?.secure, user: s.received[0]?.user }).toEqual({ secure: true, user: s.user });
  });

  it.skipIf(!HAS_OPENSSL)("sends over SMTPS (implicit TLS) with the CA given", async () => {
    const s = await server({ tls: "implicit" });
    const untrusted = mailer(smtpConfig(s.url));
    await smtpFailure(untrusted.verify(), []);
    const trusted = mailer(smtpConfig(s.url, { smtpCaFile: s.certificate?.certFile }));
    await trusted.send(await message("alice@example.com"));
    expect(s.received[0]?.secure).toBe(true);
  });
});
