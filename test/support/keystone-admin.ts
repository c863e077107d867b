/**
 * Keystone writes only tests make, kept out of the shipped client: deleting users and setting
 * a user's `options` directly. Creating users and domains is the demo's (re-exported here so
 * that tests have one place to import the fixtures from).
 */
import type { KeystoneSession } from "../../lib/keystone/session.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { type KeystoneUser, toUser } from "../../lib/keystone/users.ts";

export { createDomain, createUser } from "../../scripts/demo/keystone-admin.ts";

/** Deletes a user (Keystone deletes the user's credentials with it); 404 counts as done. */
export async function deleteUser(s: KeystoneSession, id: string): Promise<void> {
  await s.call("DELETE", `/users/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
}

/**
 * Replaces a user's `options` (MFA rules live there), as an operator would by hand.
 *
 * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
 */
export async function updateUserOptions(
  s: KeystoneSession,
  id: string,
  options: Readonly<Record<string, unknown>>,
): Promise<KeystoneUser> {
  const res = await s.call("PATCH", `/users/${encodeURIComponent(id)}`, { json: { user: { options } }, retry: true });
  return toUser(asRecord(res.body).user);
}
