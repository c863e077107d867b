/**
 * Everyone at once, as after an incident: `rotate --all` on 50 users rotates 50 and sends 50
 * messages; every user can log in with the new code while the old one still works; without
 * --yes off a terminal it refuses and changes nothing.
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

const N = 50;
const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
const users: (TestUser & { email: string })[] = [];

async function secretsOf(email: string): Promise<string[]> {
  const out: string[] = [];
  for (const raw of smtp.messagesFor(email)) out.push(await secretOfMessage(raw));
  return out;
}

beforeAll(async () => {
  admin = adminClient();
  for (let i = 0; i < N; i++) {
    const u = await makeUser(admin, `all${i}${tag}`);
    registerSecrets(u.password);
    users.push({ ...u, email: `all${i}.${tag}@example.com` });
  }
  const dir = mkdtempSync(join(tmpdir(), "kt-rotate-all-"));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email\n${users.map((u) => `${u.name},${u.email}`).join("\n")}\n`);
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-rotate-all", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "noreply@example.com");
  await stack.up();
  expect(smtp.received.length).toBe(N);
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const u of users) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("rotate --all", () => {
  it("refuses without --yes when not on a terminal, and changes nothing", async () => {
    const r = await stack.script("rotate", ["--all"]);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain("--yes");
    expect(smtp.received.length).toBe(N);
  });

  it(`rotates all ${N} users and sends ${N} messages; old and new codes both log in`, async () => {
    const r = await stack.script("rotate", ["--all", "--yes"]);
    expect(r.code, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`).toBe(0);
    expect(r.stdout).toContain(`rotated ${N}`);
    expect(r.stdout).toContain(`enrollment messages sent ${N}`);
    expect(smtp.received.length).toBe(2 * N);
    for (const u of users) {
      const [oldSecret, newSecret] = (await secretsOf(u.email)) as [string, string];
      expect(newSecret).not.toBe(oldSecret);
      expect(await admin.listTotpCredentials(u.id), u.name).toHaveLength(2);
      const as = async (secret: string) =>
        login(
          admin.auth.authUrl,
          { name: u.name, domain: u.domain },
          { password: u.password, passcode: await freshCode(secret) },
        );
      expect((await as(newSecret)).status, u.name).toBe(201);
      expect((await as(oldSecret)).status, u.name).toBe(201);
    }
    // applied once: the next plain run changes nothing and sends nothing
    await stack.upNoChanges();
    expect(smtp.received.length).toBe(2 * N);
  });
});
