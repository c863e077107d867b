/**
 * The operator's own account named as a user to enroll: in the users CSV, or in
 * `keystone-totp:credentials`. Staged rules on it would make Keystone 30 refuse the operator's
 * every later MFA change (docs/operator-account.md), so `up` refuses it by name, before anything
 * is written, on every release; and afterwards the operator can still manage MFA (a credential
 * and a user's rules written and removed by the same account). Runs in the compatibility suite.
 */
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { generateSecret } from "../../lib/totp/secret.ts";
import { type FaultFleet, startFaultFleet } from "../support/fleet.ts";
import { adminAuth, keystoneInstance, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { grantRole, projectIdByName, readUserOptions } from "../support/posture.ts";
import { acceptedWrites } from "../support/proxy.ts";
import { registerSecrets } from "../support/secrets.ts";

const tag = uniq();
let f: FaultFleet;
let operator: TestUser;

/** A client logged in as the operator account under test (not the instance's bootstrap admin). */
function operatorClient(): KeystoneClient {
  const inst = keystoneInstance();
  return new KeystoneClient({
    ...adminAuth(inst),
    userName: operator.name,
    userDomainName: "Default",
    password: operator.password,
  });
}

beforeAll(async () => {
  const inst = keystoneInstance();
  const bootstrap = new KeystoneClient(adminAuth(inst));
  operator = await makeUser(bootstrap, `self-operator-${tag}`);
  registerSecrets(operator.password);
  await grantRole(operator.id, await projectIdByName(inst.projectName), "admin");
  bootstrap.close();
  f = await startFaultFleet({
    prefix: "e2e-self",
    people: ["self0", "self1"],
    operator: {
      OS_USERNAME: operator.name,
      OS_PASSWORD: operator.password,
      OS_USER_DOMAIN_NAME: "Default",
      OS_PROJECT_NAME: inst.projectName,
      OS_PROJECT_DOMAIN_NAME: inst.projectDomainName,
    },
  });
});

afterAll(async () => {
  await f?.close();
  if (operator && f) await deleteUser(f.admin, operator.id).catch(() => undefined);
});

/** Nobody holds a credential, and the operator's options are as before. */
async function nothingWritten(): Promise<void> {
  for (const p of f.people) expect(await f.admin.listTotpCredentials(p.user.id), p.user.name).toEqual([]);
  expect(await f.admin.listTotpCredentials(operator.id)).toEqual([]);
  const o = await readUserOptions(f.admin, operator.id);
  expect(o.options.multi_factor_auth_rules).toBeUndefined();
  expect(o.marker).toBeNull();
  expect(f.smtp.received).toHaveLength(0);
}

describe("the operator's own account", () => {
  it("as a row of the users CSV: refused by name, file and line, exit 2, nothing written", async () => {
    const rows = [
      ...f.people.map((p) => `${p.user.name},${p.email},Default`),
      `${operator.name},op-${tag}@example.com,Default`,
    ];
    writeFileSync(f.csv, `username,email,domain\n${rows.join("\n")}\n`);
    const from = f.proxy.exchanges().length;
    const r = await f.up();
    const text = r.stdout + r.stderr;
    expect(r.code, text.slice(-3000)).toBe(2);
    expect(text).toMatch(/E_OPERATOR_SELF/);
    expect(text).toContain(operator.name);
    expect(text).toMatch(/users\.csv[^\n]*line 4|line 4[^\n]*users\.csv/);
    expect(acceptedWrites(f.proxy, from)).toEqual([]);
    await nothingWritten();
  });

  it("in keystone-totp:credentials: refused by its key, exit 2, nothing written", async () => {
    f.writeCsv();
    await f.stack.setJson("keystone-totp:credentials", {
      ops: { userName: operator.name, userDomain: "Default", issuer: "ACME Cloud" },
    });
    const from = f.proxy.exchanges().length;
    const r = await f.up();
    const text = r.stdout + r.stderr;
    expect(r.code, text.slice(-3000)).toBe(2);
    expect(text).toMatch(/E_OPERATOR_SELF/);
    expect(text).toContain("ops");
    expect(acceptedWrites(f.proxy, from)).toEqual([]);
    await nothingWritten();
    await f.stack.setJson("keystone-totp:credentials", {});
  });

  it("afterwards the operator still manages MFA: writes and removes a credential and a user's rules", async () => {
    const op = operatorClient();
    const target = f.people[0]?.user as TestUser;
    try {
      const secret = generateSecret();
      registerSecrets(secret);
      const c = await op.createTotpCredential(target.id, secret);
      await op.writeUserMfa(target.id, { enabled: true, rules: [["password", "totp"]] }, null);
      await op.writeUserMfa(target.id, { enabled: null, rules: null }, null);
      expect(await op.deleteCredential(c.id)).toBe(true);
      expect(await f.admin.listTotpCredentials(target.id)).toEqual([]);
    } finally {
      op.close();
    }
  });
});
