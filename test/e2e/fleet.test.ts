/**
 * The main job through the real Pulumi CLI: a users CSV becomes one credential and one QR
 * email per user, against the real Keystone and a real SMTP server. Each user logs in with
 * password + the code from the QR they were emailed; reruns send nothing; edits do exactly
 * what they say; SMTP outages are repaired by running again; bad CSVs change nothing.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { totpCode } from "../../lib/totp/secret.ts";
import { parseOtpauthUri } from "../../lib/totp/uri.ts";
import { hostileFixtures } from "../fixtures/csv/corpus.ts";
import { writeOversizedCsv } from "../fixtures/csv/make-large.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { createDomain, createUser, deleteUser } from "../support/keystone-admin.ts";
import { type FaultProxy, startFaultProxy } from "../support/proxy.ts";
import { TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { decodeQrPng, parseMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

interface Person {
  user: TestUser;
  email: string;
  displayName: string;
}

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let proxy: FaultProxy;
let stack: TestStack;
let dir: string;
let engDomainId: string;
const people: Person[] = [];
const output: string[] = [];

const AWKWARD = [
  "alice",
  "Zoë Ødegård",
  "o'brien",
  "ops+1@corp.example",
  "李小龙",
  "name with  spaces",
  'quote"inside',
  "comma,name",
  "Ünïcödé-Ñame",
  "dash-first",
  "dots.in.name",
  "UPPER",
  "x",
  "émile",
  "tab-free_underscore",
  "percent%name",
  "colon:name",
  "emoji-🙂",
  `long-${"l".repeat(60)}`,
  "alice", // the same name again, in another domain: another user
];

function csvCell(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function writeCsv(
  rows: { username: string; email: string; domain: string; displayName: string }[],
  name = "users.csv",
) {
  const lines = [
    "Display_Name,EMAIL,username,domain",
    ...rows.map((r) => [r.displayName, r.email, r.username, r.domain].map(csvCell).join(",")),
  ];
  const path = join(dir, name);
  writeFileSync(path, `${lines.join("\r\n")}\r\n`);
  return path;
}

function rowsOf(ps: Person[]) {
  return ps.map((p) => ({ username: p.user.name, email: p.email, domain: p.user.domain, displayName: p.displayName }));
}

async function loginFromMessage(p: Person, raw: Buffer): Promise<number> {
  const mail = await parseMessage(raw);
  const png = mail.attachments.find((a) => a.contentType === "image/png");
  expect(png, `QR attachment for ${p.user.name}`).toBeDefined();
  const uri = decodeQrPng(png?.content as Buffer);
  const parsed = parseOtpauthUri(uri);
  registerSecrets(parsed.secret, uri);
  expect(mail.html).toContain(`cid:${png?.cid}`);
  const res = await login(
    admin.auth.authUrl,
    { name: p.user.name, domain: p.user.domain },
    { password: p.user.password, passcode: await freshCode(parsed.secret) },
  );
  return res.status;
}

beforeAll(async () => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-fleet-"));
  const engName = `eng${tag}`;
  engDomainId = (await admin.domainIdByName(engName)) ?? (await createDomain(admin, engName));
  for (const [i, base] of AWKWARD.entries()) {
    const inEng = i === AWKWARD.length - 1;
    const name = base === "alice" && !inEng ? `alice${tag}` : inEng ? `alice${tag}` : `${base}${tag}`;
    let user: TestUser;
    if (inEng) {
      const password = `Pw-${uniq()}${uniq()}`;
      const u = await createUser(admin, { name, domainId: engDomainId, password });
      user = { id: u.id, name, domain: engName, password };
    } else {
      user = await makeUser(admin, name);
    }
    registerSecrets(user.password);
    const email = [`user${i}+totp@example.com`, `O'Brien.${i}@Example.COM`, `dots.and-dash_${i}@sub.example.co.uk`][
      i % 3
    ] as string;
    people.push({ user, email, displayName: i % 2 ? `${base}, the "${i}th"` : `Zoë <b>${i}</b>` });
  }
  smtp = await startSmtpServer();
  proxy = await startFaultProxy(keystoneInstance().port);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-fleet", { ...env, OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3` });
  await stack.init();
  await stack.set("keystone-totp:usersCsv", writeCsv(rowsOf(people)));
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:issuer", "ACME Cloud");
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  await proxy?.close();
  for (const p of people) await deleteUser(admin, p.user.id).catch(() => undefined);
  admin?.close();
});

describe("fleet onboarding through the real Pulumi CLI", () => {
  it("enrolls 20 awkward users: 20 messages, and each QR's code logs its user in with password + TOTP", async () => {
    const up = await stack.up();
    output.push(up.stdout, up.stderr);
    expect(smtp.received).toHaveLength(20);
    for (const p of people) {
      const msgs = smtp.messagesFor(p.email);
      expect(msgs, p.email).toHaveLength(1);
      expect(await loginFromMessage(p, msgs[0] as Buffer), p.user.name).toBe(201);
      expect(await admin.listTotpCredentials(p.user.id)).toHaveLength(1);
    }
    expect(smtp.connections).toBeLessThanOrEqual(2);
  });

  it("a rerun changes nothing and sends nothing; reordered rows change nothing", async () => {
    const again = await stack.run(["up", "--yes", "--expect-no-changes"]);
    output.push(again.stdout);
    writeCsv(rowsOf([...people].reverse()));
    const reordered = await stack.run(["up", "--yes", "--expect-no-changes"]);
    output.push(reordered.stdout);
    expect(smtp.received).toHaveLength(20);
  });

  it("two rows removed, one added, one email changed: exactly those operations and 2 messages", async () => {
    const removed = people.splice(3, 2);
    const added = {
      user: await makeUser(admin, `newcomer${tag}`),
      email: `newcomer${tag}@example.org`,
      displayName: "New Comer",
    };
    registerSecrets(added.user.password);
    people.push(added);
    const changed = people[0] as Person;
    const oldRaw = smtp.messagesFor(changed.email)[0] as Buffer;
    changed.email = `moved${tag}@example.net`;
    writeCsv(rowsOf(people));
    // Everyone else keeps the credential (and so the secret) they were sent.
    const stays = people.filter((p) => p !== added && p !== changed);
    const kept = async () => Promise.all(stays.map(async (p) => (await admin.listTotpCredentials(p.user.id))[0]?.id));
    const keptBefore = await kept();
    const before = smtp.received.length;
    const up = await stack.up();
    output.push(up.stdout);
    expect(smtp.received.length - before).toBe(2);
    expect(await kept()).toEqual(keptBefore);
    for (const r of removed) expect(await admin.listTotpCredentials(r.user.id)).toEqual([]);
    expect(await loginFromMessage(added, smtp.messagesFor(added.email)[0] as Buffer)).toBe(201);
    expect(smtp.messagesFor(changed.email)).toHaveLength(1);
    expect(await loginFromMessage(changed, smtp.messagesFor(changed.email)[0] as Buffer)).toBe(201);
    expect(await admin.listTotpCredentials(changed.user.id)).toHaveLength(1);
    // the secret sent to the old address no longer works
    const oldUri = decodeQrPng((await parseMessage(oldRaw)).attachments[0]?.content as Buffer);
    const newUri = decodeQrPng(
      (await parseMessage(smtp.messagesFor(changed.email)[0] as Buffer)).attachments[0]?.content as Buffer,
    );
    if (totpCode(parseOtpauthUri(oldUri).secret) !== totpCode(parseOtpauthUri(newUri).secret)) {
      expect(await loginFromMessage(changed, oldRaw)).toBe(401);
    }
    for (const r of removed) await deleteUser(admin, r.user.id);
  });

  it("SMTP down: the run fails naming the users not reached; SMTP back: the next run delivers exactly to them", async () => {
    const late: Person[] = [];
    for (const n of ["late1", "late2", "late3"]) {
      const p = { user: await makeUser(admin, `${n}${tag}`), email: `${n}${tag}@example.com`, displayName: n };
      registerSecrets(p.user.password);
      late.push(p);
    }
    people.push(...late);
    writeCsv(rowsOf(people));
    const before = smtp.received.length;
    await smtp.down();
    const failed = await stack.run(["up", "--yes", "--skip-preview", "--continue-on-error"], { allowFail: true });
    output.push(failed.stdout, failed.stderr);
    expect(failed.code).not.toBe(0);
    // every user not reached is named, with the address, and the exit code says "mail"
    expect(failed.code).toBe(4);
    for (const p of late) {
      expect(failed.stdout + failed.stderr).toMatch(
        new RegExp(`enrollment message for \\S+ to ${p.email.replace(/[.+]/g, "\\$&")} not delivered`),
      );
    }
    await smtp.up();
    const repaired = await stack.up();
    output.push(repaired.stdout);
    expect(smtp.received.length - before).toBe(3);
    for (const p of late) {
      expect(smtp.messagesFor(p.email)).toHaveLength(1);
      expect(await loginFromMessage(p, smtp.messagesFor(p.email)[0] as Buffer)).toBe(201);
      expect(await admin.listTotpCredentials(p.user.id)).toHaveLength(1);
    }
    const again = await stack.run(["up", "--yes", "--expect-no-changes"]);
    output.push(again.stdout);
  });

  it("MFA enforcement after delivery, and restoring the user's options when the row goes", async () => {
    const p = people[1] as Person;
    await stack.set("keystone-totp:enforceMfa", "true");
    const up = await stack.up();
    output.push(up.stdout);
    const who = { name: p.user.name, domain: p.user.domain };
    const pwOnly = await login(admin.auth.authUrl, who, { password: p.user.password });
    expect(pwOnly.status).toBe(401);
    expect(pwOnly.receipt).toBe(true);
    expect(await loginFromMessage(p, smtp.messagesFor(p.email)[0] as Buffer)).toBe(201);
    people.splice(1, 1);
    writeCsv(rowsOf(people));
    const up2 = await stack.up();
    output.push(up2.stdout);
    expect((await login(admin.auth.authUrl, who, { password: p.user.password })).status).toBe(201);
    expect(await admin.listTotpCredentials(p.user.id)).toEqual([]);
    await stack.set("keystone-totp:enforceMfa", "false");
    await stack.up();
  });

  // Each hostile file is refused by the CSV reader (test/unit/lib/users/csv.test.ts, the whole
  // corpus); here, one of each kind goes through the engine: what the operator sees, and that
  // nothing reaches Keystone or SMTP.
  it("hostile CSVs fail preview and up with a clear error and zero requests to Keystone or SMTP", async () => {
    const big = join(dir, "ten-megabytes.csv");
    writeOversizedCsv(big);
    const kinds = ["binary-junk.bin", "bad-rows.csv", "duplicate-users.csv"];
    const files = [...hostileFixtures().filter((f) => kinds.includes(basename(f))), big];
    expect(files).toHaveLength(kinds.length + 1);
    for (const file of files) {
      await stack.set("keystone-totp:usersCsv", file);
      const k0 = proxy.connections();
      const s0 = smtp.connections;
      for (const cmd of [["preview"], ["up", "--yes", "--skip-preview"]]) {
        const r = await stack.run(cmd, { allowFail: true });
        output.push(r.stdout, r.stderr);
        expect(r.code, `${cmd[0]} ${file}`).not.toBe(0);
        expect(r.stdout + r.stderr, file).toMatch(/E_CSV/);
        expect(r.stdout + r.stderr, file).toContain(basename(file));
      }
      expect(proxy.connections(), file).toBe(k0);
      expect(smtp.connections, file).toBe(s0);
    }
    await stack.set("keystone-totp:usersCsv", writeCsv(rowsOf(people)));
    await stack.run(["up", "--yes", "--expect-no-changes"]);
  });

  it("no secret in state or in any output", async () => {
    const state = await stack.exportText();
    const secrets = readFileSync(join(REPO, ".local/test-secrets.txt"), "utf8")
      .split("\n")
      .filter((s) => s.length >= 8);
    expect(leakedIn(state, secrets)).toBe(0);
    expect(leakedIn(output.join("\n"), secrets)).toBe(0);
    expect(state).not.toContain("smtp://");
  });
});
