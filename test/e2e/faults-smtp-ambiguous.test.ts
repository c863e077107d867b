/**
 * An ambiguous SMTP outcome through the real engine, the real Keystone and a real SMTP server
 * that stores alice's message and then drops the connection before answering it: the message
 * may have arrived (here it did), so nothing is undone. `up` exits 4 naming alice; her
 * credential stays and the mailed QR code's code logs in with her password; with enforceMfa
 * her password alone still works (enforcement waits for a confirmed delivery: she may not hold
 * the QR code), bob's does not; `status` shows her as delivery-unconfirmed. The next `up`
 * sends her the same QR code (same otpauth URI) again, creates nothing, enforces, and clears the
 * record. A definite refusal (554 after the message's data) still withdraws, as before.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { decodeQrPng, parseMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

type Person = TestUser & { email: string; key: string };

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
let csv: string;
let alice: Person;
let bob: Person;
let dave: Person;
const output: string[] = [];

async function person(name: string): Promise<Person> {
  const u = await makeUser(admin, `${name}-amb-${tag}`);
  registerSecrets(u.password);
  return { ...u, email: `${name}-amb-${tag}@example.com`, key: `${u.name}@Default` };
}

function writeCsv(ps: readonly Person[]): void {
  writeFileSync(csv, `username,email\n${ps.map((p) => `${p.name},${p.email}`).join("\n")}\n`);
}

async function up(): Promise<{ code: number; text: string }> {
  const r = await stack.run(["up", "--yes", "--skip-preview"], { allowFail: true });
  output.push(r.stdout, r.stderr);
  return { code: r.code, text: `${r.stdout}\n${r.stderr}` };
}

/** The otpauth URIs of the QR codes mailed to an address, in order (registered as secrets). */
async function urisSentTo(email: string): Promise<string[]> {
  const uris: string[] = [];
  for (const raw of smtp.messagesFor(email)) {
    const png = (await parseMessage(raw)).attachments.find((a) => a.contentType === "image/png");
    const uri = decodeQrPng(png?.content ?? Buffer.alloc(0));
    registerSecrets(uri, new URL(uri).searchParams.get("secret") ?? "");
    uris.push(uri);
  }
  return uris;
}

const secretOf = (uri: string) => new URL(uri).searchParams.get("secret") ?? "";

async function credentialIds(u: TestUser): Promise<string[]> {
  return (await admin.listTotpCredentials(u.id)).map((c) => c.id).sort();
}

/** HTTP status of a login with the password, plus a code of `secret` when given. */
async function loginWith(u: TestUser, secret?: string): Promise<number> {
  const res = await login(
    admin.auth.authUrl,
    { name: u.name, domain: u.domain },
    { password: u.password, ...(secret ? { passcode: await freshCode(secret) } : {}) },
  );
  return res.status;
}

interface StatusRowJson {
  user: string;
  state: string;
  deliveryUnconfirmed?: { code: string; error: string };
}

async function status(): Promise<{ code: number; rows: StatusRowJson[] }> {
  const r = await stack.script("status", ["--json"]);
  output.push(r.stderr);
  return { code: r.code, rows: (JSON.parse(r.stdout) as { users: StatusRowJson[] }).users };
}

beforeAll(async () => {
  admin = adminClient();
  alice = await person("alice");
  bob = await person("bob");
  dave = await person("dave");
  const dir = mkdtempSync(join(tmpdir(), "kt-smtp-ambiguous-"));
  csv = join(dir, "users.csv");
  writeCsv([alice, bob]);
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  stack = new TestStack("e2e-smtp-ambiguous", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:sendRatePerSecond", "100");
  await stack.set("keystone-totp:enforceMfa", "true");
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const u of [alice, bob, dave]) if (u) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("a relay that stores the message and loses the connection before answering it", () => {
  let firstId: string;
  let firstUri: string;

  it("up exits 4 naming alice; her credential stays, and the mailed code logs in with her password", async () => {
    smtp.loseReply(alice.email, "drop-after-data");
    const r = await up();
    expect(r.code, r.text).toBe(4);
    expect(r.text).toContain(`delivery unconfirmed: ${alice.key}: [E_SMTP_UNCONFIRMED] enrollment message for`);
    expect(r.text).not.toContain(`delivery unconfirmed: ${bob.key}`);
    const uris = await urisSentTo(alice.email);
    expect(uris).toHaveLength(1);
    firstUri = uris[0] as string;
    const ids = await credentialIds(alice);
    expect(ids).toHaveLength(1);
    firstId = ids[0] as string;
    expect(await loginWith(alice, secretOf(firstUri))).toBe(201);
    // Enforcement waits for a confirmed delivery: her password alone still works; bob's does not.
    expect(await loginWith(alice)).toBe(201);
    expect(await loginWith(bob)).toBe(401);
    const [bobUri] = await urisSentTo(bob.email);
    expect(await loginWith(bob, secretOf(bobUri as string))).toBe(201);
  });

  it("status shows alice as delivery-unconfirmed (exit 1), bob ok", async () => {
    const s = await status();
    expect(s.code).toBe(1);
    const a = s.rows.find((x) => x.user === alice.key);
    expect(a?.state).toBe("delivery-unconfirmed");
    expect(a?.deliveryUnconfirmed?.code).toBe("E_SMTP_UNCONFIRMED");
    expect(s.rows.find((x) => x.user === bob.key)?.state).toBe("ok");
  });

  it("the next up sends alice the same QR code again, creates nothing, enforces, and clears the record", async () => {
    smtp.answerNormally(alice.email);
    const r = await up();
    expect(r.code, r.text).toBe(0);
    expect(r.text).not.toContain("delivery unconfirmed");
    const uris = await urisSentTo(alice.email);
    expect(uris).toHaveLength(2);
    expect(uris[1] === firstUri).toBe(true);
    expect(await credentialIds(alice)).toEqual([firstId]);
    expect(await loginWith(alice, secretOf(firstUri))).toBe(201);
    expect(await loginWith(alice)).toBe(401);
    expect(await urisSentTo(bob.email)).toHaveLength(1);
    const s = await status();
    expect(s.code).toBe(0);
    expect(s.rows.find((x) => x.user === alice.key)?.state).toBe("ok");
    expect((await stack.run(["up", "--yes", "--expect-no-changes"])).code).toBe(0);
    console.log(
      `faults: SMTP reply lost after DATA for 1 of 2: exit 4, credential kept; next up exit 0, ` +
        `messages to that user ${uris.length} (same QR), credentials ${(await credentialIds(alice)).length}`,
    );
  });

  it("a definite refusal (554 to the message after its data) still withdraws, as before", async () => {
    smtp.rejectData(dave.email, 554);
    writeCsv([alice, bob, dave]);
    const r = await up();
    expect(r.code, r.text).toBe(4);
    expect(r.text).toContain(`enrollment message for ${dave.key} to ${dave.email} not delivered`);
    expect(r.text).not.toContain("delivery unconfirmed");
    expect(await credentialIds(dave)).toEqual([]);
    expect(smtp.messagesFor(dave.email)).toHaveLength(0);
    // Dave was never enforced: his password alone logs in as before.
    expect(await loginWith(dave)).toBe(201);
  });

  it("no secret in any output or in the state", async () => {
    const state = await stack.exportText();
    const secrets = [adminEnv().OS_PASSWORD ?? "", ...[alice, bob, dave].map((p) => p.password), secretOf(firstUri)];
    expect(leakedIn(output.join("\n") + state, secrets)).toBe(0);
  });
});
