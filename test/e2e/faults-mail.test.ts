/**
 * The mail server refuses one recipient with 550, through the real Pulumi engine, the real
 * Keystone and a real SMTP server: `up` exits 4 naming that user and address, the others are
 * delivered; with the recipient accepted again, the next `up` sends exactly one message, to
 * that user only. Counts checked: credentials per user in Keystone, messages per user (and that
 * the message's QR holds the secret Keystone has), exit codes.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { type FaultProxy, startFaultProxy } from "../support/proxy.ts";
import { type RunResult, TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

/** Users in the fleet at the start. */
const N = 3;

interface Person {
  readonly user: TestUser;
  email: string;
  /** Addresses used before `email`: messages sent there count too. */
  readonly oldEmails: string[];
  /** Secrets issued to this user so far (each must reach them in exactly one message). */
  issued: number;
}

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let proxy: FaultProxy;
let stack: TestStack;
let dir: string;
const people: Person[] = [];
const output: string[] = [];

function writeCsv(ps: readonly Person[]): void {
  const rows = ps.map((p) => `${p.user.name},${p.email},Default`);
  writeFileSync(join(dir, "users.csv"), `username,email,domain\n${rows.join("\n")}\n`);
}

async function person(name: string): Promise<Person> {
  const user = await makeUser(admin, `${name}-${tag}`);
  registerSecrets(user.password);
  return { user, email: `${name}-${tag}@example.com`, oldEmails: [], issued: 0 };
}

async function up(extra: string[] = []): Promise<RunResult> {
  const r = await stack.run(["up", "--yes", "--skip-preview", ...extra], { allowFail: true });
  output.push(r.stdout, r.stderr);
  return r;
}

/** What each user has now: credentials in Keystone, messages received, and whether they agree. */
interface Tally {
  /** Users with no credential, or whose latest message does not hold their credential's secret. */
  lost: string[];
  /** Extra credentials, plus messages beyond one per issued secret. */
  duplicated: number;
  credentials: Record<string, number>;
  messages: Record<string, number>;
}

async function tally(ps: readonly Person[]): Promise<Tally> {
  const t: Tally = { lost: [], duplicated: 0, credentials: {}, messages: {} };
  for (const p of ps) {
    const creds = await admin.listTotpCredentials(p.user.id);
    registerSecrets(...creds.map((c) => c.blob));
    const msgs = smtp.messagesFor(p.email);
    const all = msgs.length + p.oldEmails.reduce((n, a) => n + smtp.messagesFor(a).length, 0);
    t.credentials[p.user.name] = creds.length;
    t.messages[p.user.name] = all;
    t.duplicated += Math.max(0, creds.length - 1) + Math.max(0, all - p.issued);
    // The user scans the latest message at their current address.
    const last = msgs.at(-1);
    const secret = last ? await secretOfMessage(last) : undefined;
    if (creds.length === 0 || !creds.some((c) => c.blob === secret)) t.lost.push(p.user.name);
  }
  return t;
}

function each(ps: readonly Person[], n: number): Record<string, number> {
  return Object.fromEntries(ps.map((p) => [p.user.name, n]));
}

beforeAll(async () => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-faults-mail-"));
  for (let i = 0; i < N; i++) people.push(await person(`mail${i}`));
  smtp = await startSmtpServer();
  proxy = await startFaultProxy(keystoneInstance().port);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  // The preflight doctor has its own tests; here its probes would consume the armed faults.
  stack = new TestStack("e2e-faults-mail", {
    ...env,
    OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3`,
    KEYSTONE_TOTP_SKIP_DOCTOR: "1",
  });
  await stack.init();
  writeCsv(people);
  await stack.set("keystone-totp:usersCsv", join(dir, "users.csv"));
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:sendRatePerSecond", "100");
});

afterAll(async () => {
  await proxy?.up();
  proxy?.disarm();
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  await proxy?.close();
  for (const p of people) await admin.deleteUser(p.user.id).catch(() => undefined);
  admin?.close();
});

describe("a recipient refused by the mail server, through the real engine", () => {
  it("a recipient refused with 550: exit 4 naming that user, the others delivered; accepted again, one message to them only", async () => {
    const fresh = [...people];
    const refused = fresh[1] as Person;
    smtp.rejectRecipient(refused.email, 550);
    const before = smtp.received.length;
    const r = await up(["--continue-on-error"]);
    expect(r.code).toBe(4);
    const text = r.stdout + r.stderr;
    const name = refused.user.name.replace(/[.+]/g, "\\$&");
    const address = refused.email.replace(/[.+]/g, "\\$&");
    expect(text).toMatch(new RegExp(`enrollment message for ${name}@Default to ${address} not delivered`));
    for (const p of fresh) if (p !== refused) expect(text).not.toMatch(new RegExp(`message for ${p.user.name}@`));
    expect(smtp.received.length - before).toBe(2);
    for (const p of fresh) if (p !== refused) p.issued = 1;
    const mid = await tally(fresh);
    // The refused user's credential was withdrawn: no credential stays without its message.
    expect(mid.credentials).toEqual({ ...each(fresh, 1), [refused.user.name]: 0 });
    expect(mid.messages).toEqual({ ...each(fresh, 1), [refused.user.name]: 0 });

    smtp.acceptRecipient(refused.email);
    const again = await up();
    expect(again.code, again.stderr).toBe(0);
    expect(smtp.received.length - before).toBe(3);
    refused.issued = 1;
    const end = await tally(people);
    expect(end.credentials).toEqual(each(people, 1));
    expect(end.lost).toEqual([]);
    expect(end.duplicated).toBe(0);
    console.log(
      `faults: 550 for one of 3: exit ${r.code}, then exit ${again.code}; lost ${end.lost.length}, duplicated ${end.duplicated}`,
    );
  });

  it("no secret in any output or in state", async () => {
    const state = await stack.exportText();
    const secrets = [adminEnv().OS_PASSWORD ?? "", ...people.map((p) => p.user.password)];
    for (const p of people) {
      for (const c of await admin.listTotpCredentials(p.user.id)) secrets.push(c.blob);
    }
    expect(leakedIn(output.join("\n") + state, secrets)).toBe(0);
  });
});
