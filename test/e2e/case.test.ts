/**
 * Case-only edits of user names through the real Pulumi CLI and the real Keystone (PostgreSQL:
 * names are case-sensitive there). `user03` -> `USER03` in the CSV keeps the enrollment: no new
 * secret, no new message, the same credential. A stack whose resource was named with the CSV's
 * spelling (as before names followed Keystone's) keeps it through an alias. A name that
 * matches two Keystone users differing only in case is refused, and nothing changes.
 */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { adminClient, adminEnv, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { TestStack } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";

const tag = uniq();
let admin: KeystoneClient;
let dir: string;
let stack: TestStack;
const users: TestUser[] = [];
let user03: TestUser;

function writeCsv(names: readonly string[]): void {
  const rows = names.map((n, i) => `${n},case${i}-${tag}@example.com`);
  writeFileSync(join(dir, "users.csv"), `username,email\n${rows.join("\n")}\n`);
}

/** Messages written so far (the stack mails to the outbox folder). */
function messages(): number {
  const outbox = join(dir, "outbox");
  return existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith(".eml")).length : 0;
}

/** The TotpEnrollment resources of the state: resource name -> credential ID. */
async function enrollments(): Promise<Record<string, unknown>> {
  const outputs = await stack.resourceOutputs(":TotpEnrollment");
  return Object.fromEntries(Object.entries(outputs).map(([name, o]) => [name, o.credentialId]));
}

async function keystoneCredentials(u: TestUser): Promise<string[]> {
  return (await admin.listTotpCredentials(u.id)).map((c) => c.id);
}

beforeAll(async () => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-case-"));
  user03 = await makeUser(admin, `user03-${tag}`);
  users.push(user03);
  for (const u of users) registerSecrets(u.password);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-case", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", join(dir, "users.csv"));
  await stack.set("keystone-totp:outboxDir", join(dir, "outbox"));
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  for (const u of users) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
});

describe("case-only edits of user names", () => {
  let credentialId: unknown;

  it("user03 -> USER03 in the CSV: no new message, the same credential, nothing left to change", async () => {
    writeCsv([user03.name]);
    await stack.up();
    expect(messages()).toBe(1);
    const before = await enrollments();
    expect(Object.keys(before)).toEqual([`${user03.name}@Default`]);
    credentialId = before[`${user03.name}@Default`];
    expect(typeof credentialId).toBe("string");

    writeCsv([user03.name.toUpperCase()]);
    await stack.up();
    expect(messages()).toBe(1);
    expect(await enrollments()).toEqual(before);
    expect(await keystoneCredentials(user03)).toEqual([credentialId]);
    await stack.run(["preview", "--expect-no-changes"]);
  });

  it("a resource named with the CSV's spelling (before this change) is kept through an alias, not replaced", async () => {
    // What a stack enrolled from a CSV spelling USER03-... holds: the resource named that way,
    // and the CSV's spelling in its username and account label.
    const oldName = `${user03.name.toUpperCase()}@Default`;
    const state = (await stack.exportText()).replaceAll(user03.name, user03.name.toUpperCase());
    expect(state).toContain(`::${oldName}"`);
    const file = join(dir, "renamed-state.json");
    writeFileSync(file, state, { mode: 0o600 });
    await stack.run(["stack", "import", "--file", file]);
    expect(Object.keys(await enrollments())).toEqual([oldName]);

    await stack.up();
    expect(messages()).toBe(1);
    expect(await enrollments()).toEqual({ [`${user03.name}@Default`]: credentialId });
    expect(await keystoneCredentials(user03)).toEqual([credentialId]);
    await stack.run(["preview", "--expect-no-changes"]);
  });

  it("a name matching two Keystone users that differ only in case is refused, naming them; nothing changes", async () => {
    const lower = await makeUser(admin, `amb-${tag}`);
    const upper = await makeUser(admin, `AMB-${tag}`);
    users.push(lower, upper);
    registerSecrets(lower.password, upper.password);
    writeCsv([user03.name, `Amb-${tag}`]);
    const r = await stack.up({ allowFail: true });
    expect(r.code).not.toBe(0);
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).toContain("E_USER_NOT_FOUND");
    expect(out).toContain(`Amb-${tag}@Default (ambiguous`);
    expect(out).toContain(`'amb-${tag}'`);
    expect(out).toContain(`'AMB-${tag}'`);
    expect(messages()).toBe(1);
    expect(await keystoneCredentials(lower)).toEqual([]);
    expect(await keystoneCredentials(upper)).toEqual([]);
    expect(await enrollments()).toEqual({ [`${user03.name}@Default`]: credentialId });

    // An exact match of one of them is not ambiguous: that user is enrolled.
    writeCsv([user03.name, `AMB-${tag}`]);
    await stack.up();
    expect(messages()).toBe(2);
    expect(await keystoneCredentials(upper)).toHaveLength(1);
    expect(await keystoneCredentials(lower)).toEqual([]);
  });
});
