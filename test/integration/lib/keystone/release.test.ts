/**
 * Keystone 30 (2026.2) never returns TOTP blobs (LP#2158970): a credential created with a
 * secret comes back from GET and from the list without `blob`. Runs against the instance
 * named by KEYSTONE_TOTP_TEST_INSTANCE when that instance runs release 30 (start one with
 * `scripts/keystone.sh start --name r30 --release 30`, see docs/releases.md); skipped, with
 * the reason in its title, otherwise.
 */
import { afterAll, describe, expect, it } from "vitest";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { generateSecret } from "../../../../lib/totp/secret.ts";
import { adminAuth, keystoneInstance, keystoneRelease, makeUser, uniq } from "../../../support/keystone.ts";
import { deleteUser } from "../../../support/keystone-admin.ts";
import { registerSecrets } from "../../../support/secrets.ts";

const NAMED = process.env.KEYSTONE_TOTP_TEST_INSTANCE;
/** Read only when an instance is named: an absent named instance fails loudly. */
const inst = NAMED ? keystoneInstance(NAMED) : undefined;
const release = inst ? keystoneRelease(inst) : undefined;
const reason =
  inst === undefined
    ? "skipped: KEYSTONE_TOTP_TEST_INSTANCE names no instance (set it to a release 30 instance)"
    : release !== 30
      ? `skipped: instance '${inst.name}' runs Keystone ${release}, not 30`
      : `instance '${inst.name}'`;

describe.skipIf(inst === undefined || release !== 30)(`Keystone 30 hides TOTP blobs (${reason})`, () => {
  const users: string[] = [];
  let admin: KeystoneClient;

  afterAll(async () => {
    for (const id of users) if (admin) await deleteUser(admin, id).catch(() => undefined);
  });

  it("returns no blob for a created TOTP credential, by id or in the user's list", async () => {
    if (inst === undefined) throw new Error("unreachable: skipped without an instance");
    admin = new KeystoneClient(adminAuth(inst));
    const user = await makeUser(admin, `release-${uniq()}`);
    users.push(user.id);
    const secret = generateSecret();
    registerSecrets(user.password, secret);

    const created = await admin.createTotpCredential(user.id, secret);
    expect(created.id).toBeTruthy();

    const read = await admin.getCredential(created.id);
    expect(read?.type).toBe("totp");
    expect(read?.blob).toBeUndefined();

    const listed = await admin.listTotpCredentials(user.id);
    expect(listed.map((c) => c.id)).toContain(created.id);
    expect(listed.every((c) => c.blob === undefined)).toBe(true);
  });
});
