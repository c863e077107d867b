/**
 * A failed retirement through the real engine, the real Keystone (behind a fault proxy that
 * answers 503 to every DELETE of a credential) and a real SMTP server: `rotate --grace-hours 0`
 * for a leaked secret delivers the new one, but the old one cannot be deleted. The run must
 * not look green: exit 3 naming the user and the credential, `status` showing it, and the
 * state keeping the delivery, so that the next run (with Keystone working) deletes the old
 * credential without sending anything again.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { type FaultProxy, startFaultProxy } from "../support/proxy.ts";
import { TestStack } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

/** DELETEs of credentials the proxy refuses: more than the client's attempts of one run. */
const REFUSED_DELETES = 50;
const DELETE_CREDENTIAL = /^DELETE \/v3\/credentials\//;

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let proxy: FaultProxy;
let stack: TestStack;
let alice: TestUser & { email: string; key: string };
let bob: TestUser & { email: string; key: string };

async function credentialIds(u: TestUser): Promise<string[]> {
  return (await admin.listTotpCredentials(u.id)).map((c) => c.id).sort();
}

async function secretsSentTo(email: string): Promise<string[]> {
  return Promise.all(smtp.messagesFor(email).map((raw) => secretOfMessage(raw)));
}

async function loginWith(u: TestUser, secret: string): Promise<number> {
  const res = await login(
    admin.auth.authUrl,
    { name: u.name, domain: u.domain },
    { password: u.password, passcode: await freshCode(secret) },
  );
  return res.status;
}

interface StatusRowJson {
  user: string;
  state: string;
  retireFailed?: { ids: string[]; error: string };
}

async function statusOf(key: string): Promise<{ code: number; row: StatusRowJson | undefined }> {
  const r = await stack.script("status", ["--json"]);
  const rows = (JSON.parse(r.stdout) as { users: StatusRowJson[] }).users;
  return { code: r.code, row: rows.find((x) => x.user === key) };
}

beforeAll(async () => {
  admin = adminClient();
  for (const name of ["alice", "bob"] as const) {
    const u = await makeUser(admin, `${name}-rf-${tag}`);
    registerSecrets(u.password);
    const person = { ...u, email: `${name}-rf-${tag}@example.com`, key: `${u.name}@Default` };
    if (name === "alice") alice = person;
    else bob = person;
  }
  const dir = mkdtempSync(join(tmpdir(), "kt-retire-failed-"));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email\n${alice.name},${alice.email}\n${bob.name},${bob.email}\n`);
  smtp = await startSmtpServer();
  proxy = await startFaultProxy(keystoneInstance().port);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  stack = new TestStack("e2e-retire-failed", {
    ...env,
    OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3`,
    // The doctor's probes would meet the armed faults; it has its own tests.
    KEYSTONE_TOTP_SKIP_DOCTOR: "1",
    // Six attempts per call still, but at most 1 s apart.
    KEYSTONE_TOTP_BACKOFF_MAX_MS: "1000",
  });
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "noreply@example.com");
});

afterAll(async () => {
  proxy?.disarm();
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  await proxy?.close();
  for (const u of [alice, bob]) if (u) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("rotate --grace-hours 0 while Keystone refuses DELETEs", () => {
  let leaked: string;

  it("enrolls both users", async () => {
    const r = await stack.up();
    expect(r.code).toBe(0);
    expect(await secretsSentTo(alice.email)).toHaveLength(1);
    [leaked] = (await credentialIds(alice)) as [string];
  });

  it("exits 3 naming the user and the leaked credential, after sending the new secret exactly once", async () => {
    proxy.arm(DELETE_CREDENTIAL, { status: 503 }, REFUSED_DELETES);
    const r = await stack.script("rotate", [alice.key, "--grace-hours", "0", "--yes"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(3);
    expect(r.stderr).toContain(`retire failed: ${alice.key}: old credential ${leaked} still valid`);
    expect(proxy.count(DELETE_CREDENTIAL)).toBeGreaterThan(0);
    const sent = await secretsSentTo(alice.email);
    expect(sent).toHaveLength(2);
    // The leaked secret still logs in: that is what the operator is being told.
    expect(await credentialIds(alice)).toHaveLength(2);
    expect(await loginWith(alice, sent[0] as string)).toBe(201);
    expect(await loginWith(alice, sent[1] as string)).toBe(201);
    // The state records the delivery and the failure; bob is untouched.
    const outs = await stack.resourceOutputs(":TotpEnrollment");
    const a = outs[alice.key] as { deliveredAt?: string; retiring?: string[]; retireFailed?: { ids: string[] } };
    expect(a.deliveredAt).toBeTruthy();
    expect(a.retiring).toEqual([leaked]);
    expect(a.retireFailed?.ids).toEqual([leaked]);
    expect(outs[bob.key]?.retireFailed).toBeUndefined();
    expect(await secretsSentTo(bob.email)).toHaveLength(1);
  });

  it("status shows the user as retire-failed with the credential, and exits 1", async () => {
    const { code, row } = await statusOf(alice.key);
    expect(code).toBe(1);
    expect(row?.state).toBe("retire-failed");
    expect(row?.retireFailed?.ids).toEqual([leaked]);
    expect((await statusOf(bob.key)).row?.state).toBe("ok");
  });

  it("with DELETEs working, the next up retires the leaked credential, sends nothing, exits 0; status is ok", async () => {
    proxy.disarm();
    const r = await stack.up();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/old credentials retired 1: /);
    expect(r.stderr).not.toContain("retire failed");
    const sent = await secretsSentTo(alice.email);
    expect(sent).toHaveLength(2);
    expect(await credentialIds(alice)).toHaveLength(1);
    expect(await loginWith(alice, sent[0] as string)).toBe(401);
    expect(await loginWith(alice, sent[1] as string)).toBe(201);
    const { code, row } = await statusOf(alice.key);
    expect(code).toBe(0);
    expect(row?.state).toBe("ok");
    expect(row?.retireFailed).toBeUndefined();
    // Cleared for good: a further run changes nothing.
    expect((await stack.run(["up", "--yes", "--expect-no-changes"])).code).toBe(0);
  });
});
