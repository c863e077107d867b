/**
 * Rotation without lock-out, through the real Pulumi CLI, the real Keystone and a real SMTP
 * server, with the clock moved by KEYSTONE_TOTP_NOW: a due rotation delivers a new secret;
 * the old code keeps logging in during the grace window and is refused after the first run
 * past it; a rotation not due does nothing; `rotate` touches only the users named; `status`
 * agrees with Keystone.
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
import { registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = Date.now();
/** The pretend time `days` + `hours` after the start, for KEYSTONE_TOTP_NOW. */
const at = (days: number, hours = 0) => ({ KEYSTONE_TOTP_NOW: new Date(T0 + days * DAY + hours * HOUR).toISOString() });

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
const users: Record<"alice" | "bob" | "carol", TestUser & { email: string; key: string }> = {} as never;
/** Every secret each user was sent, in order. */
const sent: Record<string, string[]> = {};

async function secretsFromMail(u: { email: string }): Promise<string[]> {
  const out: string[] = [];
  for (const raw of smtp.messagesFor(u.email)) out.push(await secretOfMessage(raw));
  return out;
}

async function loginWith(u: TestUser, secret: string): Promise<number> {
  const res = await login(
    admin.auth.authUrl,
    { name: u.name, domain: u.domain },
    { password: u.password, passcode: await freshCode(secret) },
  );
  return res.status;
}

async function credentialIds(u: TestUser): Promise<string[]> {
  return (await admin.listTotpCredentials(u.id)).map((c) => c.id).sort();
}

async function refreshSent(): Promise<void> {
  for (const [k, u] of Object.entries(users)) sent[k] = await secretsFromMail(u);
}

beforeAll(async () => {
  admin = adminClient();
  for (const k of ["alice", "bob", "carol"] as const) {
    const u = await makeUser(admin, `${k}${tag}`);
    registerSecrets(u.password);
    users[k] = { ...u, email: `${k}.${tag}@example.com`, key: `${u.name}@Default` };
  }
  const dir = mkdtempSync(join(tmpdir(), "kt-rotation-"));
  const csv = join(dir, "users.csv");
  writeFileSync(
    csv,
    [
      "username,email,rotation_days",
      `${users.alice.name},${users.alice.email},`,
      `${users.bob.name},${users.bob.email},`,
      // carol's own schedule overrides the stack's
      `${users.carol.name},${users.carol.email},10`,
      "",
    ].join("\n"),
  );
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-rotation", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "noreply@example.com");
  await stack.set("keystone-totp:rotationDays", "30");
  await stack.set("keystone-totp:rotationGraceHours", "48");
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const u of Object.values(users)) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("scheduled rotation with a grace window", () => {
  it("enrolls everyone once", async () => {
    const r = await stack.run(["up", "--yes", "--skip-preview"], { env: at(0) });
    expect(r.stdout).toMatch(/enrolled 3/);
    await refreshSent();
    for (const [k, u] of Object.entries(users)) {
      expect(sent[k], k).toHaveLength(1);
      expect(await credentialIds(u)).toHaveLength(1);
      expect(await loginWith(u, sent[k]?.[0] as string), k).toBe(201);
    }
  });

  it("does nothing while no rotation is due", async () => {
    await stack.run(["preview", "--expect-no-changes"], { env: at(9) });
    const r = await stack.run(["up", "--yes", "--skip-preview", "--expect-no-changes"], { env: at(9) });
    expect(r.stdout).toMatch(/enrollment messages sent 0/);
    await refreshSent();
    for (const k of Object.keys(users)) expect(sent[k]).toHaveLength(1);
  });

  it("preview names exactly the users due (carol, rotation_days 10) and changes nothing", async () => {
    const r = await stack.run(["preview"], { env: at(11) });
    const line = r.stdout.split("\n").find((l) => l.includes("to update (rotate, relabel or retire old)")) ?? "";
    expect(line).toContain(users.carol.key);
    expect(line).not.toContain(users.alice.key);
    expect(line).not.toContain(users.bob.key);
    expect(await credentialIds(users.carol)).toHaveLength(1);
  });

  it("a due rotation delivers a new secret; the old code still logs in during the grace window", async () => {
    const before = { alice: await credentialIds(users.alice), bob: await credentialIds(users.bob) };
    const r = await stack.run(["up", "--yes", "--skip-preview"], { env: at(11) });
    expect(r.stdout).toMatch(/rotated 1: /);
    await refreshSent();
    expect(sent.carol).toHaveLength(2);
    expect(sent.alice).toHaveLength(1);
    expect(sent.bob).toHaveLength(1);
    const [oldSecret, newSecret] = sent.carol as [string, string];
    expect(newSecret).not.toBe(oldSecret);
    expect(await credentialIds(users.carol)).toHaveLength(2);
    expect(await loginWith(users.carol, newSecret)).toBe(201);
    expect(await loginWith(users.carol, oldSecret)).toBe(201);
    // nobody else was touched
    expect(await credentialIds(users.alice)).toEqual(before.alice);
    expect(await credentialIds(users.bob)).toEqual(before.bob);
  });

  it("a run inside the grace window keeps the old credential", async () => {
    await stack.run(["up", "--yes", "--skip-preview"], { env: at(11, 47) });
    expect(await credentialIds(users.carol)).toHaveLength(2);
    expect(await loginWith(users.carol, sent.carol?.[0] as string)).toBe(201);
  });

  it("the first run past the grace window deletes the old credential: old code refused, new accepted", async () => {
    const r = await stack.run(["up", "--yes", "--skip-preview"], { env: at(11, 49) });
    expect(r.stdout).toMatch(/old credentials retired 1: /);
    expect(await credentialIds(users.carol)).toHaveLength(1);
    expect(await loginWith(users.carol, sent.carol?.[0] as string)).toBe(401);
    expect(await loginWith(users.carol, sent.carol?.[1] as string)).toBe(201);
    await refreshSent();
    expect(sent.carol).toHaveLength(2); // retiring sends nothing
    await stack.run(["up", "--yes", "--expect-no-changes"], { env: at(11, 50) });
  });
});

describe("operator commands", () => {
  it("status --json agrees with Keystone's credentials for every user", async () => {
    const r = await stack.script("status", ["--json"], at(11, 50));
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      users: {
        user: string;
        userId: string;
        state: string;
        keystoneCredentialIds: string[];
        credentialId: string;
        nextRotation?: string;
        lastDelivery?: string;
      }[];
    };
    expect(report.users).toHaveLength(3);
    for (const u of Object.values(users)) {
      const row = report.users.find((x) => x.user === u.key);
      expect(row, u.key).toBeDefined();
      expect(row?.userId).toBe(u.id);
      expect(row?.keystoneCredentialIds).toEqual(await credentialIds(u));
      expect(row?.keystoneCredentialIds).toEqual([row?.credentialId]);
      expect(row?.state).toBe("ok");
      expect(row?.lastDelivery).toBeTruthy();
    }
    const carol = report.users.find((x) => x.user === users.carol.key);
    const alice = report.users.find((x) => x.user === users.alice.key);
    // carol rotated at day 11 with rotation_days 10; alice enrolled at day 0 with the stack's 30
    expect(Date.parse(carol?.nextRotation ?? "")).toBe(T0 + 21 * DAY);
    expect(Date.parse(alice?.nextRotation ?? "")).toBe(T0 + 30 * DAY);
  });

  it("status as a table and as CSV: one line per user", async () => {
    const table = await stack.script("status", [], at(11, 50));
    expect(table.code, table.stderr).toBe(0);
    for (const u of Object.values(users)) expect(table.stdout).toMatch(new RegExp(`^${u.key} +ok `, "m"));
    expect(table.stdout).toContain("3 users: 3 ok");
    const csv = await stack.script("status", ["--csv"], at(11, 50));
    const lines = csv.stdout.trimEnd().split("\r\n");
    expect(lines[0]).toMatch(/^user,state,enrolledSince,lastDelivery,nextRotation,mfaEnforced,/);
    expect(lines).toHaveLength(4);
    for (const u of Object.values(users)) expect(lines.some((l) => l.startsWith(`${u.key},ok,`))).toBe(true);
  });

  it("status and rotate on a mistyped stack name: an error naming it, and no new stack", async () => {
    const missing = `${stack.name}-typo`;
    for (const [cmd, args] of [
      ["status", []],
      ["rotate", ["--all", "--yes"]],
    ] as const) {
      const r = await stack.script(cmd, [...args], at(11, 50), missing);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${cmd}: [E_CONFIG] there is no stack named '${missing}'`);
    }
    const ls = await stack.run(["stack", "ls", "--json"]);
    expect((JSON.parse(ls.stdout) as { name: string }[]).map((s) => s.name)).not.toContain(missing);
    await refreshSent();
    expect(sent.bob).toHaveLength(1);
  });

  it("rotate refuses an unknown user and changes nothing", async () => {
    const r = await stack.script("rotate", ["nosuchuser@Default", "--yes"], at(12));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("nosuchuser@Default");
    await refreshSent();
    expect(sent.bob).toHaveLength(1);
  });

  it("rotate for one user touches only that user, and the old code keeps working", async () => {
    const before = { alice: await credentialIds(users.alice), carol: await credentialIds(users.carol) };
    const r = await stack.script("rotate", [users.bob.key, "--yes"], at(12));
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/rotated 1: /);
    await refreshSent();
    expect(sent.bob).toHaveLength(2);
    expect(sent.alice).toHaveLength(1);
    expect(sent.carol).toHaveLength(2);
    expect(await credentialIds(users.alice)).toEqual(before.alice);
    expect(await credentialIds(users.carol)).toEqual(before.carol);
    expect(await credentialIds(users.bob)).toHaveLength(2);
    expect(await loginWith(users.bob, sent.bob?.[0] as string)).toBe(201);
    expect(await loginWith(users.bob, sent.bob?.[1] as string)).toBe(201);
    // the same request is not applied twice: a plain run afterwards changes nothing
    await stack.run(["up", "--yes", "--expect-no-changes"], { env: at(12) });
    const status = await stack.script("status", ["--json"], at(12));
    const bob = (
      JSON.parse(status.stdout) as { users: { user: string; state: string; retiring: string[] }[] }
    ).users.find((x) => x.user === users.bob.key);
    expect(bob?.state).toBe("retiring");
    expect(bob?.retiring).toHaveLength(1);
  });

  it("rotate --grace-hours 0 revokes the old secret as soon as the new one is delivered", async () => {
    const r = await stack.script("rotate", [users.alice.key, "--grace-hours", "0", "--yes"], at(13));
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    await refreshSent();
    expect(sent.alice).toHaveLength(2);
    expect(await credentialIds(users.alice)).toHaveLength(1);
    expect(await loginWith(users.alice, sent.alice?.[0] as string)).toBe(401);
    expect(await loginWith(users.alice, sent.alice?.[1] as string)).toBe(201);
  });
});
