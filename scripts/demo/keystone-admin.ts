/**
 * Keystone writes the demo makes and keystone-totp never does: creating domains and users.
 * Plain functions over a {@link KeystoneSession}, kept out of the shipped client; the tests use
 * them too (test/support/keystone-admin.ts).
 */
import type { KeystoneSession } from "../../lib/keystone/session.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { forgetDomainId, type KeystoneUser, toUser } from "../../lib/keystone/users.ts";

/** Creates an enabled domain and returns its ID; the session's cached lookup of it is dropped. */
export async function createDomain(s: KeystoneSession, name: string): Promise<string> {
  const res = await s.call("POST", "/domains", { json: { domain: { name, enabled: true } }, retry: false });
  const id = asRecord(asRecord(res.body).domain).id;
  forgetDomainId(s, name);
  return String(id);
}

/** Creates a user with a password (kept out of any error message). */
export async function createUser(
  s: KeystoneSession,
  u: { name: string; domainId: string; password: string; email?: string },
): Promise<KeystoneUser> {
  const res = await s.call("POST", "/users", {
    json: {
      user: { name: u.name, domain_id: u.domainId, password: u.password, ...(u.email ? { email: u.email } : {}) },
    },
    retry: false,
    secrets: [u.password],
  });
  return toUser(asRecord(res.body).user);
}
