/**
 * Users and domains, as far as keystone-totp reads and writes them: users by ID, by name and
 * by domain, a domain's ID by name, and a user's MFA options with keystone-totp's marker.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#users
 */
import { KeystoneError } from "../errors.ts";
import { MARKER_ATTRIBUTE } from "../ownership.ts";
import { sortedKeys } from "../util/props.ts";
import { asRecord, type KeystoneSession, truncatedError } from "./session.ts";

/**
 * Rounds of a user's MFA write (each sends it twice, then reads the user back) before Keystone
 * is taken to keep serving the earlier options (see {@link writeUserMfa}).
 */
export const MFA_WRITE_ATTEMPTS = 4;
/**
 * Least pause between the two sendings of one round, ms; the pause is as long as the first
 * sending took when that is longer (up to {@link MFA_SETTLE_MAX_MS}): a read of the user that
 * began before the first sending was applied finishes meanwhile, before the second drops what
 * it cached.
 */
export const MFA_SETTLE_MIN_MS = 100;
/** Most pause between the two sendings of one round, ms. */
export const MFA_SETTLE_MAX_MS = 2_000;

/** A Keystone user, as far as keystone-totp cares. */
export interface KeystoneUser {
  readonly id: string;
  readonly name: string;
  readonly domainId: string;
  readonly email: string | undefined;
  readonly enabled: boolean;
  /** `options` as Keystone returns them (MFA rules live here). */
  readonly options: Readonly<Record<string, unknown>>;
  /** The user's `keystone_totp` attribute as Keystone returns it: keystone-totp's marker, if any. */
  readonly marker?: unknown;
  /** `password_expires_at` (ISO 8601) when Keystone returns one: the password expires then. */
  readonly passwordExpiresAt?: string;
}

/** Domain IDs by name, per session: a domain is looked up once per session. */
const domainIdCache = new WeakMap<KeystoneSession, Map<string, Promise<string | undefined>>>();

/** A domain's ID by name (cached per session); undefined if there is none. */
export async function domainIdByName(s: KeystoneSession, name: string): Promise<string | undefined> {
  let ids = domainIdCache.get(s);
  if (!ids) {
    ids = new Map();
    domainIdCache.set(s, ids);
  }
  let p = ids.get(name);
  if (!p) {
    const path = `/domains?${new URLSearchParams({ name })}`;
    p = s.list(path, "domains").then((list) => {
      // Domain names are unique, so a cut-short answer can only be a Keystone fault.
      if (list.truncated) throw truncatedError(path, `domain names are unique, yet the list for '${name}' was cut`);
      const d = list.items.map(asRecord).find((x) => x.name === name) ?? asRecord(list.items[0]);
      return typeof d.id === "string" ? d.id : undefined;
    });
    const cached = ids;
    p.catch(() => cached.delete(name));
    ids.set(name, p);
  }
  return p;
}

/**
 * Forgets the cached ID of domain `name`, so that the next {@link domainIdByName} asks
 * Keystone again: for a caller that has just created that domain.
 */
export function forgetDomainId(s: KeystoneSession, name: string): void {
  domainIdCache.get(s)?.delete(name);
}

/** A user by ID; undefined if there is none. */
export async function getUser(s: KeystoneSession, id: string): Promise<KeystoneUser | undefined> {
  const res = await s.call("GET", `/users/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
  return res.status === 404 ? undefined : toUser(asRecord(res.body).user);
}

/** A user by name in a domain (by domain name); undefined if the user or domain is missing. */
export async function findUser(
  s: KeystoneSession,
  name: string,
  domainName: string,
): Promise<KeystoneUser | undefined> {
  const domainId = await domainIdByName(s, domainName);
  if (!domainId) return undefined;
  return findUserInDomain(s, name, domainId);
}

/** A user by name in a domain (by domain ID): one request, whatever Keystone's list_limit. */
async function findUserInDomain(s: KeystoneSession, name: string, domainId: string): Promise<KeystoneUser | undefined> {
  const path = `/users?${new URLSearchParams({ name, domain_id: domainId })}`;
  const list = await s.list(path, "users");
  // Names are unique in a domain, so a cut-short answer can only be a Keystone fault.
  if (list.truncated)
    throw truncatedError(path, `user names are unique in a domain, yet the list for '${name}' was cut`);
  return list.items.map(toUser).find((u) => u.name === name);
}

/**
 * The users of a domain: one request when Keystone gives the whole list, far cheaper than
 * one lookup per user for fleets. When Keystone cuts the list short at its `list_limit`
 * (Keystone 22 has no paging), each of `names` not in the part received is looked up on its
 * own (`GET /v3/users?domain_id=&name=`), so every user asked for is found; where Keystone
 * pages (27.0+), the pages are followed instead.
 *
 * @param names - the user names the caller needs; without them a cut-short list is an error.
 * @returns every user of the domain, or (list cut short) those received plus those of
 *   `names` that exist.
 * @throws {KeystoneError} `E_KEYSTONE_HTTP` when the list was cut short and no names were given.
 */
export async function listUsers(
  s: KeystoneSession,
  domainId: string,
  names?: Iterable<string>,
): Promise<KeystoneUser[]> {
  const path = `/users?${new URLSearchParams({ domain_id: domainId })}`;
  const list = await s.list(path, "users");
  const users = list.items.map(toUser);
  if (!list.truncated) return users;
  if (names === undefined) throw truncatedError(path, "this caller cannot narrow it by user name");
  const have = new Set(users.map((u) => u.name));
  const more = await Promise.all(
    [...new Set(names)].filter((n) => !have.has(n)).map((n) => findUserInDomain(s, n, domainId)),
  );
  return [...users, ...more.filter((u): u is KeystoneUser => u !== undefined)];
}

/** The options and marker a write gives a user: `null` removes an option, or the marker. */
export interface UserMfaWrite {
  readonly enabled: boolean | null;
  readonly rules: readonly (readonly string[])[] | null;
}

/**
 * Writes a user's MFA options and keystone-totp's marker in ONE request, so that no crash can
 * leave the tool's rules without the record of what they replaced (see mfa/posture.ts); sends
 * that request again after a pause; then reads the user back until Keystone serves what was
 * written.
 *
 * Why twice: Keystone drops its cached copy of the user BEFORE it writes (identity
 * `update_user`, releases 22 to 30 alike), so a read of that user that reached the database
 * before the write was applied (the user's own login or token validation, any admin) caches the
 * earlier options again, and every login is then checked against that copy for
 * `[identity] cache_time` (600 s by default): rules just written would not hold, and a TOTP
 * credential created next would open a login by code alone. A read back cannot see a copy put
 * there AFTER it (seen once in six raced writes under load, test/integration/lib/keystone/
 * cache.test.ts). The second sending, after {@link MFA_SETTLE_MIN_MS} or as long as the first
 * took, drops any copy such a read left; reads it races can only find the new options in the
 * database. What is left is a read that began before the first sending was applied and stores
 * its copy only after the second: docs/security.md says what closes that too.
 *
 * @returns the user as Keystone serves it after the write (the write's answer if the user was
 *   deleted meanwhile).
 * @throws {KeystoneError} `E_KEYSTONE_FORBIDDEN` when the identity backend refuses user
 *   writes (LDAP) or the account may not make them; `E_KEYSTONE_STALE` when Keystone still
 *   serves other options after {@link MFA_WRITE_ATTEMPTS} rounds (nothing else is written then:
 *   the caller creates no credential on top).
 */
export async function writeUserMfa(
  s: KeystoneSession,
  id: string,
  options: UserMfaWrite,
  marker: unknown,
): Promise<KeystoneUser> {
  const path = `/users/${encodeURIComponent(id)}`;
  const body = {
    user: {
      options: { multi_factor_auth_enabled: options.enabled, multi_factor_auth_rules: options.rules },
      [MARKER_ATTRIBUTE]: marker,
    },
  };
  for (let attempt = 1; ; attempt++) {
    const started = s.clock();
    const first = await s.call("PATCH", path, { json: body, retry: true });
    const took = s.clock() - started;
    await s.pause(Math.min(MFA_SETTLE_MAX_MS, Math.max(MFA_SETTLE_MIN_MS * 2 ** (attempt - 1), took)));
    const res = await s.call("PATCH", path, { json: body, retry: true, accept: [404] });
    if (res.status === 404) return toUser(asRecord(first.body).user);
    const seen = await getUser(s, id);
    if (!seen) return toUser(asRecord(res.body).user);
    if (servesMfa(seen, options, marker)) return seen;
    if (attempt >= MFA_WRITE_ATTEMPTS) {
      throw new KeystoneError(
        "E_KEYSTONE_STALE",
        { method: "PATCH", path: `/v3${path}`, status: res.status, attempts: attempt },
        `Keystone still answers with the user's earlier MFA options after ${attempt * 2} writes of the ` +
          "new ones: its identity cache keeps a copy from before the write, and logins are checked against it " +
          "(or its identity backend does not store the options or the keystone_totp attribute). Nothing else " +
          "was written for this user; run again in a few minutes, and if it persists check that every Keystone " +
          "node uses the same [cache] memcache_servers.",
      );
    }
  }
}

/** Whether `user` as Keystone serves it holds exactly the MFA options and marker of a write. */
export function servesMfa(user: KeystoneUser, options: UserMfaWrite, marker: unknown): boolean {
  const enabled = user.options.multi_factor_auth_enabled;
  const rules = user.options.multi_factor_auth_rules;
  return (
    (enabled ?? null) === options.enabled &&
    sameJson(sortedRuleSet(rules), sortedRuleSet(options.rules)) &&
    sameJson(user.marker ?? null, marker ?? null)
  );
}

/**
 * MFA rules in one order, to compare as sets: Keystone 30 lists a rule's methods in any order,
 * and the order of rules means nothing either. Anything but a list comes back as it is (null
 * for none).
 */
export function sortedRuleSet(rules: unknown): unknown {
  if (!Array.isArray(rules)) return rules ?? null;
  return rules
    .map((r) => (Array.isArray(r) ? [...r].map(String).sort() : r))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/** JSON equality with object keys in any order. */
function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortedKeys(a)) === JSON.stringify(sortedKeys(b));
}

/** A user from Keystone's JSON. */
export function toUser(raw: unknown): KeystoneUser {
  const u = asRecord(raw);
  return {
    id: String(u.id ?? ""),
    name: String(u.name ?? ""),
    domainId: String(u.domain_id ?? ""),
    email: typeof u.email === "string" ? u.email : undefined,
    enabled: u.enabled !== false,
    options: asRecord(u.options),
    marker: u[MARKER_ATTRIBUTE] ?? undefined,
    ...(typeof u.password_expires_at === "string" ? { passwordExpiresAt: u.password_expires_at } : {}),
  };
}
