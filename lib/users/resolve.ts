/**
 * Resolves the users of a CSV to Keystone user IDs with as few requests as possible: one
 * `GET /v3/domains?name=` per domain and one `GET /v3/users?domain_id=` per domain, then
 * `GET /v3/users/{id}` only for `user_id` rows not found in those lists. Where Keystone's
 * `list_limit` cuts a domain's list short, the rows' names missing from it are looked up one
 * by one (`GET /v3/users?domain_id=&name=`, exact names). Users that do not exist are all
 * named in one error.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#list-users
 */
import { UserNotFoundError } from "../errors.ts";
import type { KeystoneClient, KeystoneUser } from "../keystone/client.ts";

/** What resolution needs of a CSV row. */
export interface UserRef {
  readonly username: string;
  readonly domain: string;
  readonly userId: string | undefined;
  readonly key: string;
}

/** A row matched to its Keystone user. */
export interface ResolvedUser<R extends UserRef = UserRef> {
  readonly row: R;
  readonly user: KeystoneUser;
}

interface DomainIndex {
  readonly exact: Map<string, KeystoneUser>;
  /** Users by case-folded name: more than one where Keystone (PostgreSQL) keeps names that differ only in case. */
  readonly folded: Map<string, KeystoneUser[]>;
  readonly byId: Map<string, KeystoneUser>;
}

function fold(s: string): string {
  return s.normalize("NFC").toLowerCase();
}

function groupByFoldedName(users: readonly KeystoneUser[]): Map<string, KeystoneUser[]> {
  const groups = new Map<string, KeystoneUser[]>();
  for (const u of users) {
    const key = fold(u.name);
    const group = groups.get(key);
    if (group) group.push(u);
    else groups.set(key, [u]);
  }
  return groups;
}

/**
 * Looks every row up in Keystone.
 *
 * Names match exactly first, then case-insensitively (Keystone on MySQL compares names
 * case-insensitively; on PostgreSQL it does not). A name that matches no user exactly and
 * several users of its domain case-insensitively (PostgreSQL allows `bob` and `Bob`) is
 * refused as ambiguous rather than folded into one of them.
 *
 * @throws {UserNotFoundError} `E_USER_NOT_FOUND` naming every row whose user (or domain) is
 *   missing, whose `user_id` belongs to another username, or whose name is ambiguous.
 * @throws {KeystoneError} when Keystone cannot be asked.
 */
export async function resolveUsers<R extends UserRef>(
  client: KeystoneClient,
  rows: readonly R[],
): Promise<ResolvedUser<R>[]> {
  const domains = [...new Set(rows.map((r) => r.domain))];
  const byDomain = new Map<string, DomainIndex>();
  await Promise.all(
    domains.map(async (domain) => {
      const id = await client.domainIdByName(domain);
      // The names let the client look users up one by one where Keystone's list_limit cuts
      // the domain's list short; otherwise the domain's users come in one request.
      const names = rows.filter((r) => r.domain === domain).map((r) => r.username);
      const users = id ? await client.listUsers(id, names) : [];
      byDomain.set(domain, {
        exact: new Map(users.map((u) => [u.name, u])),
        folded: groupByFoldedName(users),
        byId: new Map(users.map((u) => [u.id, u])),
      });
    }),
  );
  const missing: string[] = [];
  const out: ResolvedUser<R>[] = [];
  await Promise.all(
    rows.map(async (row) => {
      const d = byDomain.get(row.domain);
      let user: KeystoneUser | undefined;
      if (row.userId) {
        user = d?.byId.get(row.userId) ?? (await client.getUser(row.userId));
        if (user && fold(user.name) !== fold(row.username)) {
          missing.push(`${row.key} (user_id ${row.userId} belongs to '${user.name}')`);
          return;
        }
      } else {
        const alike = d?.folded.get(fold(row.username)) ?? [];
        user = d?.exact.get(row.username);
        if (!user && alike.length > 1) {
          const names = alike.map((u) => `'${u.name}'`).join(", ");
          missing.push(
            `${row.key} (ambiguous: Keystone has the users ${names} in domain ${row.domain}, which differ only in case; write the name exactly as Keystone has it)`,
          );
          return;
        }
        user ??= alike[0];
      }
      if (!user) {
        missing.push(row.userId ? `${row.key} (user_id ${row.userId})` : row.key);
        return;
      }
      out.push({ row, user });
    }),
  );
  if (missing.length > 0) throw new UserNotFoundError(missing.sort());
  const order = new Map(rows.map((r, i) => [r.key, i]));
  return out.sort((a, b) => (order.get(a.row.key) ?? 0) - (order.get(b.row.key) ?? 0));
}
