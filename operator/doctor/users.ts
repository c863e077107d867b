/**
 * Preflight checks of the users CSV against Keystone: the file is valid, its users exist, how
 * many already have TOTP credentials, and whose MFA rules and credentials disagree (users who
 * must present TOTP but have no credential cannot log in at all).
 */
import { CsvError, KeystoneError, MAX_LISTED_USERS, UserNotFoundError } from "../../lib/errors.ts";
import type { KeystoneClient, KeystoneUser } from "../../lib/keystone/client.ts";
import { TransportError } from "../../lib/keystone/http.ts";
import { admits, effectiveRules, optionsOf } from "../../lib/mfa/posture.ts";
import { readMarker } from "../../lib/ownership.ts";
import { readUsersCsv, type UserRow } from "../../lib/users/csv.ts";
import { type ResolvedUser, resolveUsers } from "../../lib/users/resolve.ts";
import type { ProbeSession } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** Most users named in one line of output; `--json` has them all. */
export const MAX_NAMED_USERS = 10;
/** Most CSV problems shown in the text line; `--json` has them all. */
export const MAX_SHOWN_PROBLEMS = 5;

/** Stable check ids of this module. */
export const USERS_CHECK_IDS = {
  csv: "users.csv",
  found: "users.found",
  credentials: "users.credentials",
  mfa: "users.mfa",
  passwordExpiry: "users.password-expiry",
} as const;

/** `a, b, c and 7 more`. */
export function nameSome(names: readonly string[], max = MAX_NAMED_USERS): string {
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/** A user's MFA settings, as far as TOTP is concerned. */
export interface MfaFacts {
  /**
   * The rules are on: `options.multi_factor_auth_enabled` is not `false`. Keystone treats an
   * unset option as on (only `false` turns rules off).
   */
  readonly enabled: boolean;
  /** `options.multi_factor_auth_rules`, each a list of method names. */
  readonly rules: readonly (readonly string[])[];
  /**
   * Keystone applies at least one rule, and no login without TOTP passes them: the user cannot
   * log in without a TOTP code.
   */
  readonly requiresTotp: boolean;
}

/**
 * Reads a user's MFA options (see {@link MfaFacts}).
 *
 * @param methods - Keystone's `[auth] methods`; default every method the rules name (a rule
 *   of methods Keystone lacks is then not known to be void).
 */
export function mfaFacts(user: Pick<KeystoneUser, "options">, methods?: readonly string[]): MfaFacts {
  const options = optionsOf(user.options);
  const rules = effectiveRules(options);
  const named = [...new Set(rules.flat())];
  const enabledMethods = methods ?? named;
  // The strongest login without TOTP: every enabled method but totp.
  const withoutTotp = [...new Set([...enabledMethods, ...named])].filter((m) => m !== "totp");
  return {
    enabled: options.enabled !== false,
    rules: options.rules ?? [],
    requiresTotp: rules.length > 0 && !admits(rules, withoutTotp, enabledMethods),
  };
}

/** How the users of the CSV stand, counted. */
export interface EnrollmentCounts {
  /** Users looked at. */
  readonly users: number;
  /** Keys (`name@domain`) of users with at least one TOTP credential. */
  readonly withCredential: readonly string[];
  /** Keys of users with more than one TOTP credential (normal during a rotation). */
  readonly withSeveralCredentials: readonly string[];
  /** Keys of users whose MFA rules require TOTP but who have no TOTP credential. */
  readonly mfaWithoutCredential: readonly string[];
  /** Keys of users with a TOTP credential but no MFA rule requiring it (TOTP is optional). */
  readonly credentialWithoutMfa: readonly string[];
  /** Keys of users disabled in Keystone. */
  readonly disabled: readonly string[];
}

/**
 * Counts enrollment states.
 *
 * @param users - the resolved users.
 * @param credentialCount - TOTP credentials per Keystone user id.
 */
export function countEnrollment(
  users: readonly ResolvedUser[],
  credentialCount: ReadonlyMap<string, number>,
): EnrollmentCounts {
  const withCredential: string[] = [];
  const withSeveralCredentials: string[] = [];
  const mfaWithoutCredential: string[] = [];
  const credentialWithoutMfa: string[] = [];
  const disabled: string[] = [];
  for (const { row, user } of users) {
    const n = credentialCount.get(user.id) ?? 0;
    const mfa = mfaFacts(user);
    if (n > 0) withCredential.push(row.key);
    if (n > 1) withSeveralCredentials.push(row.key);
    if (mfa.requiresTotp && n === 0) mfaWithoutCredential.push(row.key);
    if (!mfa.requiresTotp && n > 0) credentialWithoutMfa.push(row.key);
    if (!user.enabled) disabled.push(row.key);
  }
  return {
    users: users.length,
    withCredential,
    withSeveralCredentials,
    mfaWithoutCredential,
    credentialWithoutMfa,
    disabled,
  };
}

/**
 * Reads the users CSV.
 *
 * @returns the result, and the rows when the file is valid.
 */
export function checkCsv(file: string): { result: CheckResult; rows: UserRow[] | undefined } {
  const id = USERS_CHECK_IDS.csv;
  const title = "users CSV";
  try {
    const rows = readUsersCsv(file);
    const domains = new Set(rows.map((r) => r.domain));
    return {
      result: result(id, title, "ok", `${file}: ${rows.length} user(s) in ${domains.size} domain(s)`, {
        details: { file, users: rows.length, domains: [...domains] },
      }),
      rows,
    };
  } catch (e) {
    if (!(e instanceof CsvError)) throw e;
    const shown = e.problems
      .slice(0, MAX_SHOWN_PROBLEMS)
      .map((p) => `${p.line > 0 ? `line ${p.line}` : "file"}${p.column ? ` (${p.column})` : ""}: ${p.message}`);
    const more = e.problems.length > MAX_SHOWN_PROBLEMS ? `; and ${e.problems.length - MAX_SHOWN_PROBLEMS} more` : "";
    return {
      result: result(
        id,
        title,
        "failure",
        `${file} is invalid: ${e.problems.length} problem(s): ${shown.join("; ")}${more}`,
        {
          fix: "Fix the file (every problem is listed with --json) and run the doctor again.",
          code: e.code,
          details: { file, problems: e.problems },
        },
      ),
      rows: undefined,
    };
  }
}

/**
 * Finds the CSV's users in Keystone. Users that are missing are named in a failure, and the
 * others are still returned so that the checks after this one can count them.
 */
export async function checkUsersFound(
  client: KeystoneClient,
  rows: readonly UserRow[],
): Promise<{ result: CheckResult; users: ResolvedUser<UserRow>[] }> {
  const id = USERS_CHECK_IDS.found;
  const title = "users in Keystone";
  let missing: readonly string[] = [];
  let users: ResolvedUser<UserRow>[];
  try {
    try {
      users = await resolveUsers(client, rows);
    } catch (e) {
      if (!(e instanceof UserNotFoundError)) throw e;
      missing = e.users;
      // Entries are `key` or `key (user_id ...)`: resolve the rest so they can still be counted.
      const missingKeys = new Set(missing.map((m) => m.split(" (")[0]));
      users = await resolveUsers(
        client,
        rows.filter((r) => !missingKeys.has(r.key)),
      );
    }
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    return {
      result: result(id, title, "failure", `looking the users up failed: ${e.message}`, {
        fix: "See the message; then run the doctor again.",
        code: e.code,
      }),
      users: [],
    };
  }
  const disabled = users.filter((u) => !u.user.enabled).map((u) => u.row.key);
  const details = { found: users.length, missing, disabled };
  if (missing.length > 0) {
    return {
      result: result(
        id,
        title,
        "failure",
        `${missing.length} of ${rows.length} user(s) not found in Keystone: ${nameSome(missing, MAX_LISTED_USERS)}`,
        {
          fix: "Create them first, or fix their names, domains or user_id in the CSV.",
          code: "E_USER_NOT_FOUND",
          details,
        },
      ),
      users,
    };
  }
  if (disabled.length > 0) {
    return {
      result: result(
        id,
        title,
        "warning",
        `all ${rows.length} user(s) found; ${disabled.length} disabled in Keystone: ${nameSome(disabled)}`,
        { fix: "Disabled users cannot log in at all: enable them, or remove them from the CSV.", details },
      ),
      users,
    };
  }
  return { result: result(id, title, "ok", `all ${rows.length} user(s) found in Keystone`, { details }), users };
}

/**
 * TOTP credentials per user id, in one request (`GET /v3/credentials?type=totp`), or one per
 * user when Keystone truncates the list (`list_limit`). Blobs are read and dropped at once.
 */
export async function totpCredentialCounts(
  session: ProbeSession,
  client: KeystoneClient,
  users: readonly ResolvedUser[],
  ids: Map<string, string[]> = new Map(),
): Promise<Map<string, number>> {
  const wanted = new Set(users.map((u) => u.user.id));
  const counts = new Map<string, number>();
  const add = (userId: string, id: string) => {
    counts.set(userId, (counts.get(userId) ?? 0) + 1);
    ids.set(userId, [...(ids.get(userId) ?? []), id]);
  };
  const res = await session.request("GET", "/credentials?type=totp");
  const body = (res.body ?? {}) as { credentials?: unknown; truncated?: unknown };
  if (res.status === 200 && Array.isArray(body.credentials) && body.truncated !== true) {
    for (const c of body.credentials) {
      const userId = (c as { user_id?: unknown }).user_id;
      const type = (c as { type?: unknown }).type;
      const id = (c as { id?: unknown }).id;
      if (typeof userId === "string" && type === "totp" && wanted.has(userId)) add(userId, String(id ?? ""));
    }
    return counts;
  }
  await Promise.all(
    [...wanted].map(async (userId) => {
      counts.set(userId, 0);
      for (const c of await client.listTotpCredentials(userId)) add(userId, c.id);
    }),
  );
  return counts;
}

/** Credentials a stack manages, to tell them from ones made by hand or left by a crash. */
export interface ManagedCredentials {
  /** The stack's name, for messages. */
  readonly stack: string;
  /** Keystone credential IDs in the stack's state. */
  readonly ids: ReadonlySet<string>;
}

/**
 * Counts the users' TOTP credentials and MFA rules: two results, `users.credentials` (how
 * many are enrolled) and `users.mfa` (a failure for users whose MFA rules require TOTP but who
 * have no credential: they cannot log in at all; a warning for users with a credential but no
 * rule requiring it: password alone still logs them in).
 *
 * @param canReadCredentials - false when the account may not read other users' credentials
 *   (Keystone would silently show none): the counts are then skipped.
 */
export async function checkEnrollment(
  session: ProbeSession,
  client: KeystoneClient,
  users: readonly ResolvedUser[],
  canReadCredentials: boolean,
  managed?: ManagedCredentials,
): Promise<CheckResult[]> {
  const credId = USERS_CHECK_IDS.credentials;
  const credTitle = "TOTP credentials";
  const mfaId = USERS_CHECK_IDS.mfa;
  const mfaTitle = "MFA rules";
  if (!canReadCredentials) {
    const why = "the account cannot read other users' credentials (see keystone.credentials)";
    return [result(credId, credTitle, "skipped", why), result(mfaId, mfaTitle, "skipped", why)];
  }
  let counts: EnrollmentCounts;
  const idsByUser = new Map<string, string[]>();
  try {
    counts = countEnrollment(users, await totpCredentialCounts(session, client, users, idsByUser));
  } catch (e) {
    if (!(e instanceof KeystoneError || e instanceof TransportError)) throw e;
    const failed = result(credId, credTitle, "failure", `listing TOTP credentials failed: ${e.message}`, {
      fix: "See the message; then run the doctor again.",
      code: e instanceof KeystoneError ? e.code : "E_KEYSTONE_NETWORK",
    });
    return [failed, result(mfaId, mfaTitle, "skipped", "credentials could not be listed")];
  }
  const several =
    counts.withSeveralCredentials.length > 0
      ? `; ${counts.withSeveralCredentials.length} have more than one (normal during a rotation)`
      : "";
  // Credentials of these users that the stack does not know: made by hand, or left by a crash.
  const keyById = new Map(users.map((u) => [u.user.id, u.row.key]));
  const unmanaged = managed
    ? [...idsByUser.entries()]
        .filter(([, ids]) => ids.some((id) => !managed.ids.has(id)))
        .map(([u]) => keyById.get(u) ?? u)
    : [];
  const unmanagedText = managed
    ? `; ${unmanaged.length} of them hold credentials stack ${managed.stack} does not manage${unmanaged.length > 0 ? ` (${nameSome(unmanaged)})` : ""}`
    : "";
  const credResult = result(
    credId,
    credTitle,
    unmanaged.length > 0 ? "warning" : "ok",
    `${counts.withCredential.length} of ${counts.users} user(s) already have a TOTP credential${several}${unmanagedText}`,
    {
      details: {
        users: counts.users,
        withCredential: counts.withCredential.length,
        withSeveralCredentials: counts.withSeveralCredentials,
        ...(managed ? { stack: managed.stack, unmanaged } : {}),
      },
      ...(unmanaged.length > 0
        ? {
            fix: "Credentials the stack does not manage still log their users in: delete them (openstack credential delete ID) once the stack's own is delivered, or leave them if they were enrolled on purpose.",
          }
        : {}),
    },
  );
  const details = {
    mfaWithoutCredential: counts.mfaWithoutCredential,
    credentialWithoutMfa: counts.credentialWithoutMfa,
  };
  let mfaResult: CheckResult;
  if (counts.mfaWithoutCredential.length > 0) {
    const also =
      counts.credentialWithoutMfa.length > 0
        ? `; also ${counts.credentialWithoutMfa.length} with a credential but no MFA rule requiring it`
        : "";
    mfaResult = result(
      mfaId,
      mfaTitle,
      "failure",
      `${counts.mfaWithoutCredential.length} user(s) have MFA rules requiring TOTP but no TOTP credential, so they ` +
        `cannot log in at all: ${nameSome(counts.mfaWithoutCredential)}${also}`,
      {
        fix:
          "Enroll them now (npm run provision -- up), or lift their rules until they are enrolled: " +
          "openstack user set --disable-multi-factor-auth USER.",
        details,
      },
    );
  } else if (counts.credentialWithoutMfa.length > 0) {
    mfaResult = result(
      mfaId,
      mfaTitle,
      "warning",
      `${counts.credentialWithoutMfa.length} user(s) have a TOTP credential but no MFA rule requiring it, so a ` +
        `password alone still logs them in: ${nameSome(counts.credentialWithoutMfa)}`,
      {
        fix: "Once they have set up their app, require TOTP: set keystone-totp:enforceMfa to true and run provision up.",
        details,
      },
    );
  } else {
    mfaResult = result(mfaId, mfaTitle, "ok", "MFA rules and TOTP credentials agree for every user", { details });
  }
  return [credResult, mfaResult];
}

/**
 * `users.password-expiry`: enrolled users (carrying keystone-totp's marker) whose password
 * expires (`password_expires_at` set). On Keystone 2026.2 (30) the self-service password change
 * (`POST /v3/users/{id}/password`) needs a TOTP code once the user has MFA rules: a user who has
 * not set up the app cannot change an expired password alone. Reads only what the users lookup
 * returned.
 */
export function checkPasswordExpiry(users: readonly ResolvedUser[]): CheckResult {
  const id = USERS_CHECK_IDS.passwordExpiry;
  const title = "expiring passwords";
  const expiring = users.filter((u) => readMarker(u.user.marker) !== undefined && u.user.passwordExpiresAt);
  const names = expiring.map((u) => u.row.key);
  const details = {
    enrolled: users.filter((u) => readMarker(u.user.marker) !== undefined).length,
    expiring: expiring.map((u) => ({ user: u.row.key, passwordExpiresAt: u.user.passwordExpiresAt })),
  };
  if (expiring.length === 0) {
    return result(id, title, "ok", "no enrolled user has a password that expires", { details });
  }
  return result(
    id,
    title,
    "warning",
    `${expiring.length} enrolled user(s) have a password that expires (password_expires_at): on Keystone 2026.2 (30) ` +
      "changing one's own password needs a TOTP code once MFA rules are set, so one who has not set up the app " +
      `cannot change an expired password alone: ${nameSome(names)}`,
    {
      fix: "Ask them to set up the app before their password expires; an administrator can still reset a password (openstack user set --password-prompt USER).",
      details,
    },
  );
}
