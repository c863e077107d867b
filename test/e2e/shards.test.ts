/**
 * A fleet split across stacks through `scripts/shards.ts` and the real Pulumi CLI: one users
 * CSV, 12 users, 3 stacks. Every user is enrolled exactly once and by exactly one stack, a
 * rerun changes nothing, and changing the number of stacks is refused unless asked for, and
 * then re-enrolls only the users who move, never leaving anyone with two credentials.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { parseOtpauthUri } from "../../lib/totp/uri.ts";
import { userKey } from "../../lib/users/csv.ts";
import { shardOf } from "../../operator/fleet/shard.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser, updateUserOptions } from "../support/keystone-admin.ts";
import { pulumiBinDir } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";
import { decodeQrPng, parseMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const USERS = 12;
const tag = uniq();
const prefix = `e2e-shards-${tag}`;
const base = `${prefix}-base`;
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let dir: string;
let env: Record<string, string>;
let csv: string;
const users: TestUser[] = [];
const emailOf = (u: TestUser) => `${u.name}@example.com`;
const keyOf = (u: TestUser) => userKey(u.domain, u.name);

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString("utf8");
    });
    child.stderr.on("data", (b: Buffer) => {
      out += b.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code: code ?? -1, out }));
  });
}

const shards = (...args: string[]) => run("node", [join(REPO, "scripts/shards.ts"), ...args]);
const pulumi = (...args: string[]) => run("pulumi", ["--non-interactive", ...args]);

/** Names of the users whose credential each stack holds, from `pulumi stack export`. */
async function managedBy(stack: string): Promise<string[]> {
  const r = await pulumi("stack", "export", "--stack", stack);
  expect(r.code, r.out).toBe(0);
  const dep = JSON.parse(r.out) as { deployment: { resources?: { urn: string; type: string }[] } };
  return (dep.deployment.resources ?? [])
    .filter((res) => res.type.endsWith(":TotpEnrollment"))
    .map((res) => res.urn.split("::").pop() as string)
    .sort();
}

/** Logs the user in with password + the code of the QR in their last message. */
async function logsInWithLastMessage(u: TestUser): Promise<number> {
  const msgs = smtp.messagesFor(emailOf(u));
  const mail = await parseMessage(msgs[msgs.length - 1] as Buffer);
  const png = mail.attachments.find((a) => a.contentType === "image/png");
  const uri = decodeQrPng(png?.content as Buffer);
  const { secret } = parseOtpauthUri(uri);
  registerSecrets(secret, uri);
  const res = await login(
    admin.auth.authUrl,
    { name: u.name, domain: u.domain },
    { password: u.password, passcode: await freshCode(secret) },
  );
  return res.status;
}

async function credentialIds(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const u of users) out.set(u.name, (await admin.listTotpCredentials(u.id)).map((c) => c.id).sort());
  return out;
}

/**
 * Names chosen so that the test shows something whatever the random tag: every one of the 3
 * stacks gets 4 users, and 3 of them move when a fourth stack is added.
 */
function pickNames(): string[] {
  const picked: string[] = [];
  const perShard = [0, 0, 0];
  let movers = 0;
  for (let i = 0; picked.length < USERS && i < 10_000; i++) {
    const name = `shard${i}-${tag}`;
    const of3 = shardOf(userKey("Default", name), 3);
    const moves = shardOf(userKey("Default", name), 4) === 3;
    if (
      (perShard[of3] as number) >= USERS / 3 ||
      (moves ? movers >= 3 : (perShard[of3] as number) >= USERS / 3 - 1 && movers < 3)
    )
      continue;
    picked.push(name);
    perShard[of3] = (perShard[of3] as number) + 1;
    if (moves) movers++;
  }
  return picked;
}

beforeAll(async () => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-shards-"));
  mkdirSync(join(dir, "backend"));
  for (const name of pickNames()) {
    const u = await makeUser(admin, name);
    registerSecrets(u.password);
    users.push(u);
  }
  csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email,domain\n${users.map((u) => `${u.name},${emailOf(u)},${u.domain}`).join("\n")}\n`);
  smtp = await startSmtpServer();
  const passphrase = `pp-${randomBytes(16).toString("hex")}`;
  registerSecrets(passphrase);
  const ks = adminEnv();
  registerSecrets(ks.OS_PASSWORD ?? "");
  env = {
    ...(process.env as Record<string, string>),
    ...ks,
    PATH: `${join(REPO, "node_modules/.bin")}:${pulumiBinDir()}:${process.env.PATH}`,
    PULUMI_BACKEND_URL: `file://${join(dir, "backend")}`,
    PULUMI_CONFIG_PASSPHRASE: passphrase,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
  };
  // The settings are made once, on a stack that is never deployed, and copied to the shards.
  expect((await pulumi("stack", "init", base, "--secrets-provider", "passphrase")).code).toBe(0);
  for (const [k, v, secret] of [
    ["keystone-totp:usersCsv", csv, false],
    ["keystone-totp:smtpUrl", smtp.url, true],
    ["keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>", false],
    ["keystone-totp:issuer", "ACME Cloud", false],
  ] as const) {
    const r = await pulumi("config", "set", "--stack", base, secret ? "--secret" : "--plaintext", k, "--", v);
    expect(r.code, r.out).toBe(0);
  }
});

afterAll(async () => {
  const left = await pulumi("stack", "ls", "--json");
  const stacks = left.code === 0 ? (JSON.parse(left.out) as { name: string }[]).map((s) => s.name) : [];
  for (const s of stacks.filter((n) => n.startsWith(`${prefix}-`) && n !== base)) {
    await run("node", [join(REPO, "scripts/provision.ts"), "destroy", "--stack", s, "--yes"]);
  }
  for (const s of stacks) await pulumi("stack", "rm", "--yes", "--force", "--stack", s);
  for (const f of readdirSync(REPO)) if (f.startsWith(`Pulumi.${prefix}-`)) rmSync(join(REPO, f), { force: true });
  await smtp?.close();
  for (const u of users) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a fleet split across stacks", () => {
  it("3 stacks enroll each of 12 users exactly once, each user in the stack of their bucket", async () => {
    const r = await shards(
      "up",
      "--stack-prefix",
      prefix,
      "--shards",
      "3",
      "--concurrency",
      "2",
      "--config-from",
      base,
      "--yes",
    );
    expect(r.code, r.out).toBe(0);
    expect(smtp.received).toHaveLength(USERS);
    for (const u of users) {
      expect(smtp.messagesFor(emailOf(u)), u.name).toHaveLength(1);
      expect(await admin.listTotpCredentials(u.id), u.name).toHaveLength(1);
      expect(await logsInWithLastMessage(u), u.name).toBe(201);
    }
    const owners = await Promise.all([0, 1, 2].map((i) => managedBy(`${prefix}-${i}`)));
    expect(owners.flat().sort()).toEqual(users.map(keyOf).sort());
    for (const [i, names] of owners.entries()) {
      expect(names.length, `stack ${i} is not empty`).toBeGreaterThan(0);
      for (const n of names) expect(shardOf(n, 3), n).toBe(i);
    }
  });

  it("a rerun of every stack changes nothing and sends nothing", async () => {
    const r = await shards(
      "up",
      "--stack-prefix",
      prefix,
      "--shards",
      "3",
      "--concurrency",
      "3",
      "--yes",
      "--expect-no-changes",
    );
    expect(r.code, r.out).toBe(0);
    expect(smtp.received).toHaveLength(USERS);
    // One check of the whole fleet found nothing to do: no engine started.
    expect(r.out).toMatch(/shards: 0 stack\(s\) run, 3 skipped/);
  });

  it("a user changed in Keystone runs the stack of that user alone", async () => {
    const u = users[0] as TestUser;
    await updateUserOptions(admin, u.id, { lock_password: true });
    try {
      const r = await shards("up", "--stack-prefix", prefix, "--shards", "3", "--yes", "--expect-no-changes");
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/shards: 1 stack\(s\) run, 2 skipped/);
      expect(r.out).toContain(`${prefix}-${shardOf(keyOf(u), 3)}: runs: its inputs changed`);
      expect(smtp.received).toHaveLength(USERS);
    } finally {
      await updateUserOptions(admin, u.id, { lock_password: null });
    }
  });

  it("a bad row anywhere in the CSV stops every stack before anything changes", async () => {
    writeFileSync(
      csv,
      `username,email,domain\n${users.map((u, i) => `${u.name},${i === 5 ? "not-an-address" : emailOf(u)},${u.domain}`).join("\n")}\n`,
    );
    const before = await credentialIds();
    const r = await shards("up", "--stack-prefix", prefix, "--shards", "3", "--yes");
    expect(r.code).toBe(2);
    for (const i of [0, 1, 2]) expect(r.out).toMatch(new RegExp(`\\[${prefix}-${i}\\].*E_CSV`));
    expect(await credentialIds()).toEqual(before);
    writeFileSync(
      csv,
      `username,email,domain\n${users.map((u) => `${u.name},${emailOf(u)},${u.domain}`).join("\n")}\n`,
    );
  });

  it("another number of stacks is refused without --reshard, and changes nothing", async () => {
    const before = await credentialIds();
    const r = await shards("up", "--stack-prefix", prefix, "--shards", "4", "--yes");
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/NEW secret/);
    expect(await credentialIds()).toEqual(before);
    expect(smtp.received).toHaveLength(USERS);
  });

  it("--reshard from 3 to 4 stacks re-enrolls exactly the users who move, each still with one credential", async () => {
    const before = await credentialIds();
    const moving = users.filter((u) => shardOf(keyOf(u), 4) !== shardOf(keyOf(u), 3));
    expect(moving.length).toBeGreaterThan(0);
    const r = await shards("up", "--stack-prefix", prefix, "--shards", "4", "--reshard", "--concurrency", "2", "--yes");
    expect(r.code, r.out).toBe(0);
    expect(smtp.received).toHaveLength(USERS + moving.length);
    const after = await credentialIds();
    for (const u of users) {
      expect(after.get(u.name), u.name).toHaveLength(1);
      const moved = moving.includes(u);
      expect(after.get(u.name)?.[0] === before.get(u.name)?.[0], u.name).toBe(!moved);
      expect(smtp.messagesFor(emailOf(u)), u.name).toHaveLength(moved ? 2 : 1);
      if (moved) expect(await logsInWithLastMessage(u), u.name).toBe(201);
    }
    const owners = await Promise.all([0, 1, 2, 3].map((i) => managedBy(`${prefix}-${i}`)));
    expect(owners.flat().sort()).toEqual(users.map(keyOf).sort());
    const again = await shards("up", "--stack-prefix", prefix, "--shards", "4", "--yes", "--expect-no-changes");
    expect(again.code, again.out).toBe(0);
  });

  it("--reshard back to 3 stacks destroys the fourth first, then re-enrolls its users elsewhere", async () => {
    const moving = users.filter((u) => shardOf(keyOf(u), 4) === 3);
    const sent = smtp.received.length;
    const r = await shards("up", "--stack-prefix", prefix, "--shards", "3", "--reshard", "--yes");
    expect(r.code, r.out).toBe(0);
    expect(r.out.indexOf(`destroy ${prefix}-3`)).toBeLessThan(r.out.indexOf(`up ${prefix}-0`));
    expect(smtp.received.length - sent).toBe(moving.length);
    for (const u of users) expect(await admin.listTotpCredentials(u.id), u.name).toHaveLength(1);
    const ls = await pulumi("stack", "ls", "--json");
    expect((JSON.parse(ls.out) as { name: string }[]).map((s) => s.name)).not.toContain(`${prefix}-3`);
    const owners = await Promise.all([0, 1, 2].map((i) => managedBy(`${prefix}-${i}`)));
    expect(owners.flat().sort()).toEqual(users.map(keyOf).sort());
  });
});
