/**
 * A small Keystone v3 client for what keystone-totp needs: tokens, credentials and users.
 *
 * {@link KeystoneClient} puts together the parts that live beside it, one concern each:
 * - session.ts: options, tokens, retries, the in-flight limit, lists and error mapping;
 * - credentials.ts: TOTP credentials, with creates that never leave a duplicate;
 * - users.ts: users, domains and a user's MFA options.
 *
 * The writes only tests and the demo make (creating users and domains, deleting users) are
 * not here: see scripts/demo/keystone-admin.ts and test/support/keystone-admin.ts.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/
 */
import { createHash } from "node:crypto";
import type { KeystoneAuth } from "./auth.ts";
import type { Credential, TotpCredentialIndex } from "./credentials.ts";
import * as credentials from "./credentials.ts";
import { clientOptionsFromEnv, KeystoneSession } from "./session.ts";
import type { KeystoneUser } from "./users.ts";
import * as users from "./users.ts";

export type { Credential, TotpCredentialIndex } from "./credentials.ts";
export {
  BACKOFF_BASE_MS,
  BACKOFF_MAX_MS,
  type ClientStats,
  clientOptionsFromEnv,
  isMfaPasscodeRefusal,
  type KeystoneClientOptions,
  KeystoneSession,
  MAX_ATTEMPTS,
  MAX_IN_FLIGHT,
  MAX_LIST_PAGES,
  MFA_PASSCODE_REFUSAL_HINT,
  RETRY_AFTER_MAX_MS,
  TOKEN_RENEW_MARGIN_MS,
  tokenRequestBody,
} from "./session.ts";
export type { KeystoneUser } from "./users.ts";

/** One client per process and set of credentials (see {@link KeystoneClient.shared}), by hash. */
const sharedClients = new Map<string, KeystoneClient>();

/**
 * A Keystone v3 client bound to one set of operator credentials: a {@link KeystoneSession}
 * (token, retries, limits) with the credential and user operations keystone-totp makes.
 */
export class KeystoneClient extends KeystoneSession {
  /**
   * The process-wide client for these credentials: one token and one connection pool shared
   * by every caller in the process.
   */
  static shared(auth: KeystoneAuth): KeystoneClient {
    const key = createHash("sha256").update(JSON.stringify(auth)).digest("hex");
    let c = sharedClients.get(key);
    if (!c) {
      c = new KeystoneClient(auth, clientOptionsFromEnv());
      sharedClients.set(key, c);
    }
    return c;
  }

  // ---------------------------------------------------------------- credentials (credentials.ts)

  /** A user's TOTP credentials: see {@link credentials.listTotpCredentials}. */
  listTotpCredentials(userId: string): Promise<Credential[]> {
    return credentials.listTotpCredentials(this, userId);
  }

  /** Every TOTP credential, by user: see {@link credentials.listAllTotpCredentials}. */
  listAllTotpCredentials(): Promise<TotpCredentialIndex> {
    return credentials.listAllTotpCredentials(this);
  }

  /** One credential, or undefined: see {@link credentials.getCredential}. */
  getCredential(id: string): Promise<Credential | undefined> {
    return credentials.getCredential(this, id);
  }

  /** Creates a TOTP credential exactly once: see {@link credentials.createTotpCredential}. */
  createTotpCredential(userId: string, blob: string, marker?: unknown): Promise<Credential> {
    return credentials.createTotpCredential(this, userId, blob, marker);
  }

  /** Replaces a credential's blob: see {@link credentials.updateCredentialBlob}. */
  updateCredentialBlob(id: string, blob: string): Promise<Credential> {
    return credentials.updateCredentialBlob(this, id, blob);
  }

  /** Deletes a credential; true if it existed: see {@link credentials.deleteCredential}. */
  deleteCredential(id: string): Promise<boolean> {
    return credentials.deleteCredential(this, id);
  }

  // ---------------------------------------------------------------- users and domains (users.ts)

  /** A domain's ID by name (cached), or undefined: see {@link users.domainIdByName}. */
  domainIdByName(name: string): Promise<string | undefined> {
    return users.domainIdByName(this, name);
  }

  /** A user by ID, or undefined: see {@link users.getUser}. */
  getUser(id: string): Promise<KeystoneUser | undefined> {
    return users.getUser(this, id);
  }

  /** A user by name and domain name, or undefined: see {@link users.findUser}. */
  findUser(name: string, domainName: string): Promise<KeystoneUser | undefined> {
    return users.findUser(this, name, domainName);
  }

  /** The users of a domain: see {@link users.listUsers}. */
  listUsers(domainId: string, names?: Iterable<string>): Promise<KeystoneUser[]> {
    return users.listUsers(this, domainId, names);
  }

  /**
   * Writes a user's MFA options and marker in one request, then reads the user back until
   * Keystone serves them: see {@link users.writeUserMfa}.
   */
  writeUserMfa(id: string, options: users.UserMfaWrite, marker: unknown): Promise<KeystoneUser> {
    return users.writeUserMfa(this, id, options, marker);
  }
}
