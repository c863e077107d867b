/**
 * The doctor's mail checks against a real SMTP server (smtp-server on loopback): connection,
 * STARTTLS, login and sender are checked and no message is delivered; a refused sender, a
 * wrong password and an unverifiable certificate are failures with exit code 4; the outbox
 * folder is checked without being created.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkMail } from "../../../../operator/doctor/mail.ts";
import { exitCodeForResults } from "../../../../operator/doctor/types.ts";
import { REPO } from "../../../support/keystone.ts";
import { leakedIn, registerSecrets } from "../../../support/secrets.ts";
import { opensslAvailable, startSmtpServer, type TestSmtpServer } from "../../../support/smtp.ts";

const run = promisify(execFile);
const FROM = "ACME Cloud <noreply@example.com>";

let dir: string;
let plain: TestSmtpServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kt-doctor-mail-"));
  plain = await startSmtpServer({ auth: true });
});

afterAll(async () => {
  await plain.close();
  rmSync(dir, { recursive: true, force: true });
});

function byId(results: Awaited<ReturnType<typeof checkMail>>) {
  return Object.fromEntries(results.map((r) => [r.id, r]));
}

describe("doctor: SMTP relay", () => {
  it("checks connection, login and sender, and delivers nothing", async () => {
    const before = plain.connections;
    const results = byId(await checkMail({ smtpUrl: plain.url, mailFrom: FROM, projectDir: dir }));
    expect(results["mail.config"]?.status).toBe("ok");
    expect(results["mail.smtp"]?.status).toBe("ok");
    expect(results["mail.smtp"]?.message).toMatch(
      /accepts the connection .*login as relay-.* sender noreply@example\.com/,
    );
    expect(results["mail.smtp"]?.message).toContain("no message was sent");
    expect(plain.connections).toBeGreaterThan(before);
    expect(plain.received).toHaveLength(0);
    expect(JSON.stringify(results)).not.toContain(plain.password ?? "?");
  });

  it("reports a refused sender as a mail failure (exit 4)", async () => {
    const server = await startSmtpServer({ auth: true });
    server.rejectSender("noreply@example.com");
    try {
      const results = await checkMail({ smtpUrl: server.url, mailFrom: FROM, projectDir: dir });
      const smtp = byId(results)["mail.smtp"];
      expect(smtp?.status).toBe("failure");
      expect(smtp?.code).toBe("E_SMTP");
      expect(smtp?.message).toMatch(/refused the sender noreply@example\.com/);
      expect(exitCodeForResults(results)).toBe(4);
      expect(server.received).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it("reports a wrong password without repeating it", async () => {
    const wrong = `Wrong-${Date.now()}-password`;
    registerSecrets(wrong);
    const url = plain.url.replace(/:[^:@/]+@/, `:${wrong}@`);
    const smtp = byId(await checkMail({ smtpUrl: url, mailFrom: FROM, projectDir: dir }))["mail.smtp"];
    expect(smtp?.status).toBe("failure");
    expect(smtp?.message).toMatch(/refused the login/);
    expect(leakedIn(JSON.stringify(smtp), [wrong, plain.password ?? ""])).toBe(0);
  });

  it.runIf(opensslAvailable())("uses STARTTLS: refused without the CA, accepted with it", async () => {
    const server = await startSmtpServer({ auth: true, tls: "starttls" });
    try {
      const refused = byId(await checkMail({ smtpUrl: server.url, mailFrom: FROM, projectDir: dir }))["mail.smtp"];
      expect(refused?.status).toBe("failure");
      expect(refused?.message).toMatch(/TLS/);
      const ok = byId(
        await checkMail({
          smtpUrl: server.url,
          mailFrom: FROM,
          smtpCaFile: server.certificate?.certFile,
          projectDir: dir,
        }),
      )["mail.smtp"];
      expect(ok?.status).toBe("ok");
      expect(ok?.message).toContain("(STARTTLS)");
      expect(server.received).toHaveLength(0);
    } finally {
      await server.close();
    }
  });

  it("the script reads the URL from KEYSTONE_TOTP_SMTP_URL and prints no password", async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KEYSTONE_TOTP_SMTP_URL: plain.url,
      KEYSTONE_TOTP_MAIL_FROM: FROM,
      // No local Keystone either: commands fall back to the demo's (.local/keystone/default).
      KEYSTONE_TOTP_STATE: dir,
    };
    for (const k of Object.keys(env)) if (k.startsWith("OS_")) delete env[k];
    const out = await run(join(REPO, "node_modules/.bin/node"), [join(REPO, "scripts/doctor.ts")], {
      cwd: dir,
      env,
    }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    // No Keystone settings: exit 2 for that, but the mail lines are there.
    expect("code" in out ? out.code : 0).toBe(2);
    expect(out.stdout).toMatch(/^ok {3}mail\.smtp: /m);
    expect(leakedIn(`${out.stdout}${out.stderr}`, [plain.password ?? "", plain.url])).toBe(0);
  });
});

describe("doctor: outbox folder", () => {
  it("accepts a writable folder, and a missing one it could create without creating it", async () => {
    const existing = join(dir, "outbox");
    mkdirSync(existing, { mode: 0o700 });
    expect(byId(await checkMail({ outboxDir: existing, projectDir: dir }))["mail.outbox"]?.status).toBe("ok");
    const missing = join(dir, "not", "yet", "outbox");
    const r = byId(await checkMail({ outboxDir: missing, projectDir: dir }))["mail.outbox"];
    expect(r?.status).toBe("ok");
    expect(r?.message).toMatch(/will be created/);
    expect(existsSync(join(dir, "not"))).toBe(false);
  });

  it("fails for a folder that cannot be made (exit 4), and warns when others may read it", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    const results = await checkMail({ outboxDir: join(file, "outbox"), projectDir: dir });
    expect(byId(results)["mail.outbox"]).toMatchObject({ status: "failure", code: "E_OUTBOX" });
    expect(exitCodeForResults(results)).toBe(4);
    const open = join(dir, "open-outbox");
    mkdirSync(open, { mode: 0o755 });
    const r = byId(await checkMail({ outboxDir: open, projectDir: dir }))["mail.outbox"];
    expect(r?.status).toBe("warning");
    expect(r?.fix).toMatch(/chmod 700/);
  });
});
