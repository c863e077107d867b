import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import {
  DEFAULT_OUTBOX_FROM,
  DEFAULT_SEND_RATE_PER_SECOND,
  isLoopbackHost,
  type MailConfig,
  type MailSettings,
  resolveMailConfig,
  type SmtpMailConfig,
} from "../../../../lib/mail/config.ts";
import { DEFAULT_TEMPLATE_FILE } from "../../../../lib/mail/message.ts";
import { registerSecrets } from "../../../support/secrets.ts";

const PASSWORD = "S3cret-pa$$:word/with@odd&chars";
registerSecrets(PASSWORD);
const ENCODED = encodeURIComponent(PASSWORD);
const FROM = "ACME Cloud <noreply@example.com>";
const project = mkdtempSync(join(tmpdir(), "keystone-totp-mailcfg-"));
afterAll(() => rmSync(project, { recursive: true, force: true }));

function smtp(settings: MailSettings): SmtpMailConfig {
  const config = resolveMailConfig({ mailFrom: FROM, ...settings }, project);
  if (config.kind !== "smtp") throw new Error("expected an SMTP config");
  return config;
}

/** Resolves and returns the ConfigError, checking it never shows the password. */
function configError(settings: MailSettings): ConfigError {
  try {
    resolveMailConfig(settings, project);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const text = `${(e as Error).message} ${inspect(e)}`;
    expect(text.includes(PASSWORD) || text.includes(ENCODED)).toBe(false);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("resolveMailConfig: outbox", () => {
  it("defaults to an outbox folder in the project, with a default sender and template", () => {
    const config = resolveMailConfig({}, project);
    expect(config).toEqual({
      kind: "outbox",
      dir: join(project, "outbox"),
      from: DEFAULT_OUTBOX_FROM,
      fromAddress: "noreply@localhost",
      templateFile: undefined,
    });
    expect(config.template.file).toBe(DEFAULT_TEMPLATE_FILE);
  });

  it("resolves outboxDir and templateFile against the project", () => {
    writeFileSync(
      join(project, "mine.template"),
      '--- subject ---\nHi\n--- text ---\n{{groupedKey}}\n--- html ---\n<img src="cid:{{qrCid}}">{{groupedKey}}\n',
    );
    const config = resolveMailConfig({ outboxDir: "mail/out", templateFile: "mine.template" }, project);
    expect(config).toMatchObject({ kind: "outbox", dir: join(project, "mail/out") });
    expect(config.templateFile).toBe(join(project, "mine.template"));
    expect(config.template.subject).toBe("Hi");
  });

  it("refuses both smtpUrl and outboxDir", () => {
    expect(configError({ smtpUrl: "smtp://127.0.0.1", outboxDir: "x", mailFrom: FROM }).message).toMatch(
      /keystone-totp:smtpUrl and keystone-totp:outboxDir are both set/,
    );
  });

  it("refuses an invalid From address, naming keystone-totp:mailFrom", () => {
    for (const mailFrom of ["nobody", "a@b.example, c@d.example", "x@example.com\r\nBcc: y@example.com"]) {
      expect(configError({ mailFrom }).message).toContain("keystone-totp:mailFrom");
    }
  });
});

describe("resolveMailConfig: SMTP", () => {
  it("allows plain SMTP to a loopback host, with pool and rate defaults", () => {
    const config = smtp({ smtpUrl: "smtp://127.0.0.1:2525" });
    expect(config).toMatchObject({
      kind: "smtp",
      host: "127.0.0.1",
      port: 2525,
      secure: false,
      requireTls: false,
      loopback: true,
      pool: true,
      maxConnections: 1,
      maxMessagesPerConnection: 500,
      sendRatePerSecond: DEFAULT_SEND_RATE_PER_SECOND,
      rateLimit: 10,
      rateDeltaMs: 1000,
      from: FROM,
      fromAddress: "noreply@example.com",
      displayUrl: "smtp://127.0.0.1:2525",
    });
    expect(config.auth).toBeUndefined();
    for (const host of ["localhost", "[::1]", "127.8.9.10", "mail.localhost"]) {
      expect(smtp({ smtpUrl: `smtp://${host}` }).requireTls).toBe(false);
    }
  });

  it("requires STARTTLS to a remote host unless allowInsecureSmtp opts out", () => {
    const strict = smtp({ smtpUrl: "smtp://mail.example.com" });
    expect(strict).toMatchObject({ requireTls: true, secure: false, loopback: false, port: 587 });
    expect(smtp({ smtpUrl: "smtp://10.0.0.5:25" }).requireTls).toBe(true);
    expect(smtp({ smtpUrl: "smtp://mail.example.com", allowInsecureSmtp: true }).requireTls).toBe(false);
  });

  it("accepts smtps:// (implicit TLS, port 465)", () => {
    expect(smtp({ smtpUrl: "smtps://Mail.Example.com" })).toMatchObject({
      secure: true,
      requireTls: false,
      host: "mail.example.com",
      port: 465,
      displayUrl: "smtps://mail.example.com:465",
    });
  });

  it("keeps the password out of printing, JSON and displayUrl, but usable", () => {
    const url = `smtp://relay%40acme:${ENCODED}@mail.example.com:587`;
    const config = smtp({ smtpUrl: url });
    expect(config.auth?.user === "relay@acme" && config.auth.pass === PASSWORD).toBe(true);
    expect(config.url === url).toBe(true);
    expect(config.displayUrl).toBe("smtp://relay%40acme@mail.example.com:587");
    for (const text of [JSON.stringify(config), inspect(config, { depth: 5 }), String(config)]) {
      expect(text.includes(PASSWORD) || text.includes(ENCODED)).toBe(false);
    }
  });

  it("turns sendRatePerSecond into a window nodemailer understands", () => {
    expect(smtp({ smtpUrl: "smtp://127.0.0.1", sendRatePerSecond: 50 })).toMatchObject({
      rateLimit: 50,
      rateDeltaMs: 1000,
    });
    expect(smtp({ smtpUrl: "smtp://127.0.0.1", sendRatePerSecond: 0.5 })).toMatchObject({
      rateLimit: 1,
      rateDeltaMs: 2000,
    });
    for (const sendRatePerSecond of [0, -1, Number.NaN, 5000]) {
      expect(configError({ smtpUrl: "smtp://127.0.0.1", mailFrom: FROM, sendRatePerSecond }).message).toContain(
        "keystone-totp:sendRatePerSecond",
      );
    }
  });

  it.each([
    ["a bad scheme", `http://user:${ENCODED}@mail.example.com`, /scheme "http:"/],
    ["no URL at all", `user:${ENCODED}@mail.example.com`, /scheme|not a valid URL/],
    ["garbage", `smtp://user:${ENCODED}@[bad host`, /not a valid URL/],
    ["a query", `smtp://user:${ENCODED}@mail.example.com/?secure=false`, /path, query/],
    ["a user without password", "smtp://user@mail.example.com", /no password/],
    ["a bad percent-encoding", `smtp://user:${ENCODED}%zz@mail.example.com`, /percent-encoding|not a valid URL/],
  ])("refuses %s, naming keystone-totp:smtpUrl and never the password", (_name, smtpUrl, pattern) => {
    const err = configError({ smtpUrl, mailFrom: FROM });
    expect(err.message).toContain("keystone-totp:smtpUrl");
    expect(err.message).toMatch(pattern);
  });

  it("requires mailFrom with SMTP", () => {
    const err = configError({ smtpUrl: `smtp://user:${ENCODED}@mail.example.com` });
    expect(err.message).toMatch(/keystone-totp:mailFrom is required/);
  });

  it("reads smtpCaFile, relative to the project, and names it when unusable", () => {
    writeFileSync(join(project, "ca.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(join(project, "not-ca.txt"), "hello");
    const config = smtp({ smtpUrl: "smtps://mail.example.com", smtpCaFile: "ca.pem" });
    expect(config.caFile).toBe(join(project, "ca.pem"));
    expect(config.caPem).toContain("BEGIN CERTIFICATE");
    for (const smtpCaFile of ["missing.pem", "not-ca.txt"]) {
      const err = configError({ smtpUrl: "smtps://mail.example.com", mailFrom: FROM, smtpCaFile });
      expect(err.message).toContain("keystone-totp:smtpCaFile");
      expect(err.message).toContain(join(project, smtpCaFile));
    }
  });

  it("names the template file when it is broken", () => {
    writeFileSync(join(project, "bad.template"), "--- subject ---\nx\n");
    const err = configError({ templateFile: "bad.template" });
    expect(err.message).toContain(join(project, "bad.template"));
  });

  it("returns a frozen config", () => {
    const config: MailConfig = smtp({ smtpUrl: "smtp://127.0.0.1" });
    expect(Object.isFrozen(config)).toBe(true);
  });
});

describe("isLoopbackHost", () => {
  it.each([
    ["localhost", true],
    ["LOCALHOST", true],
    ["127.0.0.1", true],
    ["127.255.0.9", true],
    ["::1", true],
    ["[::1]", true],
    ["::ffff:127.0.0.1", true],
    ["128.0.0.1", false],
    ["10.0.0.1", false],
    ["::2", false],
    ["localhost.example.com", false],
    ["mail.example.com", false],
  ])("%s -> %s", (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});
