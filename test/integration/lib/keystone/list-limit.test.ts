/**
 * A real Keystone with `[DEFAULT] list_limit = 5` (the `limited` instance of
 * scripts/keystone.sh, started here and stopped afterwards): its lists of more than 5 entries
 * come back cut short with `"truncated": true`, and Keystone 22 has no paging. Resolving a CSV
 * still finds every user of a domain with more than 5 users; the fleet-wide list of TOTP
 * credentials `status` takes and the per-user lists the handlers take still hold every credential.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { generateSecret } from "../../../../lib/totp/secret.ts";
import { resolveUsers } from "../../../../lib/users/resolve.ts";
import { configure, defaultContext } from "../../../../providers/credential/handlers.ts";
import {
  adminAuth,
  type KeystoneInstance,
  keystoneInstance,
  REPO,
  randomPassword,
  uniq,
} from "../../../support/keystone.ts";
import { createDomain, createUser, deleteUser } from "../../../support/keystone-admin.ts";

const run = promisify(execFile);
/**
 * The instance's name, port (KEYSTONE_TOTP_LIMITED_PORT; by default a free one, as the other
 * instances the tests start: a fixed 5003 was once taken by the compatibility lane's
 * `nototp_r27`, which runs beside this suite, and this instance could not start) and list limit.
 */
const NAME = "limited";
const PORT = process.env.KEYSTONE_TOTP_LIMITED_PORT ?? "auto";
const LIST_LIMIT = 5;
/** Users in the test's domain: more than one list holds. */
const USERS = 8;
/** First start creates a database and bootstraps Keystone: about 90 s on 2 busy cores. */
const START_TIMEOUT_MS = 240_000;

let inst: KeystoneInstance;
let admin: KeystoneClient;
const made: string[] = [];

beforeAll(async () => {
  await run(
    "bash",
    [join(REPO, "scripts/keystone.sh"), "start", "--name", NAME, "--port", PORT, "--list-limit", String(LIST_LIMIT)],
    { timeout: START_TIMEOUT_MS },
  );
  inst = keystoneInstance(NAME);
  admin = new KeystoneClient(adminAuth(inst));
}, START_TIMEOUT_MS);

afterAll(async () => {
  for (const id of made) if (admin) await deleteUser(admin, id);
  admin?.close();
  await run("bash", [join(REPO, "scripts/keystone.sh"), "stop", "--name", NAME], { timeout: 60_000 });
}, 120_000);

describe(`Keystone with list_limit = ${LIST_LIMIT}`, () => {
  it("resolves every user of a domain with more users than one list holds", async () => {
    const domain = `it-limit-${uniq()}`;
    const domainId = await createDomain(admin, domain);
    const users = [];
    for (let i = 0; i < USERS; i++) {
      const u = await createUser(admin, { name: `u${i}-${uniq()}`, domainId, password: randomPassword() });
      made.push(u.id);
      users.push(u);
    }
    // The premise: Keystone does cut this domain's list short.
    expect(await admin.listUsers(domainId).catch((e: Error) => e.message)).toMatch(/list_limit/);

    const rows = users.map((u) => ({ username: u.name, domain, userId: undefined, key: `${u.name}@${domain}` }));
    const client = new KeystoneClient(adminAuth(inst));
    const resolved = await resolveUsers(client, rows);
    expect(resolved.map((r) => [r.row.username, r.user.id])).toEqual(users.map((u) => [u.name, u.id]));
    // one domain lookup, the cut list, then one lookup per user it did not hold
    expect(client.stats.byMethod.GET).toBe(2 + (USERS - LIST_LIMIT));
    client.close();
  });

  it("lists TOTP credentials, fleet-wide and per user, missing none", async () => {
    const domainId = (await admin.domainIdByName("Default")) ?? "default";
    const held = new Map<string, string[]>();
    for (let i = 0; i < USERS; i++) {
      const u = await createUser(admin, { name: `it-limit-${uniq()}`, domainId, password: randomPassword() });
      made.push(u.id);
      // one user holds two, as during a rotation
      const ids = [];
      for (let j = 0; j < (i === 0 ? 2 : 1); j++)
        ids.push((await admin.createTotpCredential(u.id, generateSecret())).id);
      held.set(u.id, ids);
    }
    // Measured on Keystone 22: the credential list is never cut short (its manager only applies
    // list_limit to hints passed by keyword, and the credential API passes them positionally),
    // so here the fleet-wide list is whole; the per-user fallback for a Keystone that does cut
    // it is covered in test/unit/keystone/client.test.ts.
    expect((await admin.listAllTotpCredentials()).all?.size ?? 0).toBeGreaterThanOrEqual(USERS);

    const config: Record<string, string> = {
      "openstack:authUrl": inst.authUrl,
      "openstack:userName": inst.username,
      "openstack:password": inst.password,
      "openstack:tenantName": inst.projectName,
      "openstack:userDomainName": inst.userDomainName,
      "openstack:projectDomainName": inst.projectDomainName,
    };
    configure((k) => config[k]);
    // The handlers list each created user's credentials (no fleet-wide list of their own).
    expect(defaultContext.existing).toBeUndefined();
    for (const [userId, ids] of held) {
      const listed = await defaultContext.client().listTotpCredentials(userId);
      expect(listed.map((c) => c.id).sort()).toEqual([...ids].sort());
    }
  });
});
