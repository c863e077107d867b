/**
 * Login posture checks of the CSV's users (see mfa/posture.ts for the rules themselves):
 *
 * - `users.totp-alone`: enrolled users (holding a TOTP credential) whose options let a TOTP
 *   code alone log them in: Keystone keeps no lockout for TOTP, so 6 digits guessed at
 *   leisure open the account.
 * - `users.app-credentials`: users with application credentials that MFA rules block (their
 *   scripts get 401): enrolled users against their current rules, the others against the
 *   rules the tool would write with the stack's settings.
 * - `users.rule-methods`: rules naming methods missing from `[auth] methods`; before Keystone
 *   28.0.0 (LP#2102096) a rule made only of such methods lets ANY login in.
 * - `users.stageable`: users whose options the tool cannot write (the LDAP identity backend
 *   returns no options and refuses option writes with 403), found without writing anything.
 *
 * Like every check, none throws for what it finds and none changes anything in Keystone.
 */
import { KeystoneError } from "../../lib/errors.ts";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import {
  admits,
  admitsTotpAlone,
  decidePosture,
  effectiveRules,
  enforcedRules,
  type MfaRule,
  optionsOf,
  type PostureSettings,
  previousOptions,
  stagedRules,
} from "../../lib/mfa/posture.ts";
import { TOTP_DIGITS } from "../../lib/totp/secret.ts";
import type { ResolvedUser } from "../../lib/users/resolve.ts";
import type { ProbeSession } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";
import { nameSome, totpCredentialCounts } from "./users.ts";

/** Requests in flight when listing application credentials, one request per user. */
export const APP_CREDENTIAL_CONCURRENCY = 8;
/** The login method of an application credential, as MFA rules name it. */
export const APP_CREDENTIAL_METHOD = "application_credential";
/** The command that writes the tool's rules again on every user of the stack. */
export const REAPPLY_COMMAND = "npm run provision -- up --refresh";
/** The identity driver whose users carry options the tool can write. */
const WRITABLE_DRIVER = "sql";

/** Stable check ids of this module. */
export const POSTURE_CHECK_IDS = {
  totpAlone: "users.totp-alone",
  appCredentials: "users.app-credentials",
  ruleMethods: "users.rule-methods",
  stageable: "users.stageable",
} as const;

/** Titles of the checks, for the skipped lines. */
export const POSTURE_CHECK_TITLES: Readonly<Record<string, string>> = {
  [POSTURE_CHECK_IDS.totpAlone]: "TOTP alone",
  [POSTURE_CHECK_IDS.appCredentials]: "application credentials",
  [POSTURE_CHECK_IDS.ruleMethods]: "rule methods",
  [POSTURE_CHECK_IDS.stageable]: "options writable",
};

/** The stack's posture settings the checks compare against (all default false). */
export interface DoctorPostureSettings {
  /** keystone-totp:enforceMfa: the rules the tool writes are the enforced ones. */
  readonly enforceMfa?: boolean | undefined;
  readonly allowTotpOnlyLogin?: boolean | undefined;
  readonly refuseApplicationCredentials?: boolean | undefined;
  readonly replaceOwnRules?: boolean | undefined;
}

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
}

function skippedAll(why: string): CheckResult[] {
  return Object.entries(POSTURE_CHECK_TITLES).map(([id, title]) => result(id, title, "skipped", why));
}

function failureOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs the four checks on the resolved users of the CSV.
 *
 * @param canReadCredentials - false when the account cannot see other users' credentials:
 *   enrolled users cannot be told from the others, so `users.totp-alone` is skipped.
 */
export async function checkPosture(
  session: ProbeSession,
  client: KeystoneClient,
  users: readonly ResolvedUser[],
  canReadCredentials: boolean,
  settings: DoctorPostureSettings = {},
): Promise<CheckResult[]> {
  let methods: string[];
  try {
    methods = await client.authMethods();
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    return skippedAll(`Keystone's [auth] methods could not be read: ${e.message}`);
  }
  const s: PostureSettings = {
    methods,
    allowTotpOnlyLogin: settings.allowTotpOnlyLogin === true,
    refuseApplicationCredentials: settings.refuseApplicationCredentials === true,
    replaceOwnRules: settings.replaceOwnRules === true,
  };
  let credentials: Map<string, number> | undefined;
  let credentialsFailure: string | undefined;
  if (canReadCredentials) {
    try {
      credentials = await totpCredentialCounts(session, client, users);
    } catch (e) {
      if (!(e instanceof KeystoneError || e instanceof TransportError)) throw e;
      credentialsFailure = `listing TOTP credentials failed: ${e.message}`;
    }
  } else {
    credentialsFailure = "the account cannot read other users' credentials (see keystone.credentials)";
  }
  return [
    credentials
      ? checkTotpAlone(users, credentials, s)
      : result(POSTURE_CHECK_IDS.totpAlone, "TOTP alone", "skipped", credentialsFailure ?? "no credentials"),
    await checkAppCredentials(session, users, credentials, s, settings.enforceMfa === true),
    checkRuleMethods(users, s, settings.enforceMfa === true),
    await checkStageable(session, users),
  ];
}

/** `users.totp-alone`: enrolled users a TOTP code alone logs in. */
export function checkTotpAlone(
  users: readonly ResolvedUser[],
  credentials: ReadonlyMap<string, number>,
  s: PostureSettings,
): CheckResult {
  const id = POSTURE_CHECK_IDS.totpAlone;
  const title = "TOTP alone";
  const enrolled = users.filter((u) => (credentials.get(u.user.id) ?? 0) > 0);
  const open = enrolled.filter((u) => admitsTotpAlone(optionsOf(u.user.options), s.methods)).map((u) => u.row.key);
  // Not enrolled yet, but their own rules let TOTP alone in: enrollment refuses them by default.
  const ownOpen = users
    .filter((u) => (credentials.get(u.user.id) ?? 0) === 0)
    .filter((u) => {
      const o = optionsOf(u.user.options);
      return effectiveRules(o).length > 0 && admitsTotpAlone(o, s.methods);
    })
    .map((u) => u.row.key);
  const details = { enrolled: enrolled.length, open, ownRulesOpen: ownOpen, allowTotpOnlyLogin: s.allowTotpOnlyLogin };
  const own =
    ownOpen.length > 0
      ? `; ${ownOpen.length} not enrolled yet whose own rules let TOTP alone in (enrollment refuses them unless ` +
        `keystone-totp:replaceOwnRules): ${nameSome(ownOpen)}`
      : "";
  if (open.length === 0) {
    return result(
      id,
      title,
      ownOpen.length > 0 ? "warning" : "ok",
      `no enrolled user (of ${enrolled.length}) can log in with a TOTP code alone${own}`,
      {
        details,
        ...(ownOpen.length > 0
          ? { fix: "Fix their rules (each must refuse TOTP alone), or set keystone-totp:replaceOwnRules." }
          : {}),
      },
    );
  }
  const message =
    `${open.length} of ${enrolled.length} enrolled user(s) can log in with a TOTP code alone (user ID and ${TOTP_DIGITS} digits, ` +
    `no password; Keystone has no lockout for TOTP): ${nameSome(open)}${own}`;
  if (s.allowTotpOnlyLogin) {
    return result(id, title, "warning", `${message}; keystone-totp:allowTotpOnlyLogin is set, so this is by choice`, {
      fix: "Unset keystone-totp:allowTotpOnlyLogin unless TOTP-only logins are wanted; see README, security model.",
      details,
    });
  }
  return result(id, title, "failure", message, {
    fix:
      `Run ${REAPPLY_COMMAND}: the refresh reads the users' options and the up writes the tool's rules again ` +
      "(staged: TOTP alone refused, every other login as before).",
    details,
  });
}

/** A user with application credentials, and the rules that will apply to them. */
interface AppCredentialHolder {
  readonly key: string;
  readonly count: number;
  readonly rules: readonly MfaRule[];
}

/** Lists each user's application credentials, a few requests at a time. */
async function appCredentialCounts(
  session: ProbeSession,
  users: readonly ResolvedUser[],
): Promise<{ counts: Map<string, number>; refused: HttpResponse | undefined }> {
  const counts = new Map<string, number>();
  let refused: HttpResponse | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < users.length && refused === undefined; i = next++) {
      const u = users[i] as ResolvedUser;
      const res = await session.request("GET", `/users/${encodeURIComponent(u.user.id)}/application_credentials`);
      if (res.status === 403) refused = res;
      else if (res.status !== 200) {
        throw new KeystoneError(
          "E_KEYSTONE_HTTP",
          { method: "GET", path: `/v3/users/${u.user.id}/application_credentials`, status: res.status },
          "Keystone refused to list the user's application credentials; check its logs.",
        );
      } else {
        const list = asRecord(res.body).application_credentials;
        counts.set(u.user.id, Array.isArray(list) ? list.length : 0);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(APP_CREDENTIAL_CONCURRENCY, users.length) }, worker));
  return { counts, refused };
}

/** The rules that will apply to a user not yet enrolled, with the stack's settings. */
function plannedRules(user: ResolvedUser["user"], s: PostureSettings, enforceMfa: boolean): readonly MfaRule[] {
  const previous = previousOptions(user);
  try {
    const decision = decidePosture(previous, enforceMfa ? "enforced" : "staged", s);
    return decision.write ? effectiveRules(decision.write) : effectiveRules(previous);
  } catch (e) {
    // A refused user (PostureRefusal) keeps their own rules; so does every user when
    // enforcement is impossible on this Keystone (users.rule-methods reports that).
    if (!(e instanceof Error)) throw e;
    return effectiveRules(previous);
  }
}

/** `users.app-credentials`: users whose application credentials MFA rules block. */
export async function checkAppCredentials(
  session: ProbeSession,
  users: readonly ResolvedUser[],
  credentials: ReadonlyMap<string, number> | undefined,
  s: PostureSettings,
  enforceMfa: boolean,
): Promise<CheckResult> {
  const id = POSTURE_CHECK_IDS.appCredentials;
  const title = "application credentials";
  let counts: Map<string, number>;
  try {
    const listed = await appCredentialCounts(session, users);
    if (listed.refused) {
      return result(
        id,
        title,
        "skipped",
        "the account may not list other users' application credentials (403), so blocked ones cannot be counted",
      );
    }
    counts = listed.counts;
  } catch (e) {
    if (!(e instanceof KeystoneError || e instanceof TransportError)) throw e;
    return result(id, title, "failure", `listing application credentials failed: ${failureOf(e)}`, {
      fix: "See the message; then run the doctor again.",
      code: e instanceof KeystoneError ? e.code : "E_KEYSTONE_NETWORK",
    });
  }
  const holders: AppCredentialHolder[] = users
    .filter((u) => (counts.get(u.user.id) ?? 0) > 0)
    .map((u) => {
      const enrolled = (credentials?.get(u.user.id) ?? 0) > 0;
      return {
        key: u.row.key,
        count: counts.get(u.user.id) ?? 0,
        rules: enrolled ? effectiveRules(optionsOf(u.user.options)) : plannedRules(u.user, s, enforceMfa),
      };
    });
  const blocked = holders.filter((h) => h.rules.length > 0 && !admits(h.rules, [APP_CREDENTIAL_METHOD], s.methods));
  const details = {
    withApplicationCredentials: holders.map((h) => ({ user: h.key, count: h.count })),
    blocked: blocked.map((h) => h.key),
    refuseApplicationCredentials: s.refuseApplicationCredentials,
  };
  const refusing =
    s.refuseApplicationCredentials && holders.length > 0
      ? `; keystone-totp:refuseApplicationCredentials is set, so enforcement blocks the application credentials of ` +
        `all ${holders.length} user(s) that have some: ${nameSome(holders.map((h) => h.key))}`
      : "";
  if (blocked.length === 0 && refusing === "") {
    return result(
      id,
      title,
      "ok",
      `${holders.length} user(s) have application credentials; MFA rules block none of them`,
      { details },
    );
  }
  const message =
    blocked.length > 0
      ? `${blocked.length} of ${holders.length} user(s) with application credentials are (or will be) refused with ` +
        `them, because no MFA rule admits ${APP_CREDENTIAL_METHOD}; their scripts, CI jobs and Terraform get 401: ` +
        `${nameSome(blocked.map((h) => h.key))}${refusing}`
      : `${holders.length} user(s) have application credentials${refusing}`;
  return result(id, title, "warning", message, {
    fix:
      'Add the rule ["application_credential"] to their MFA rules (the tool\'s rules have it unless ' +
      "keystone-totp:refuseApplicationCredentials is set), or tell their owners to move to password + TOTP.",
    details,
  });
}

/**
 * `users.rule-methods`: the users' rules naming methods Keystone does not have, and whether the
 * rules the tool would write can be written on this Keystone (they are made of enabled methods
 * only, but enforcement needs both `password` and `totp`).
 */
export function checkRuleMethods(users: readonly ResolvedUser[], s: PostureSettings, enforceMfa: boolean): CheckResult {
  const id = POSTURE_CHECK_IDS.ruleMethods;
  const title = "rule methods";
  const methods = s.methods;
  let toolRules: MfaRule[] = stagedRules(methods);
  let toolFailure: string | undefined;
  if (enforceMfa) {
    try {
      toolRules = enforcedRules(s);
    } catch (e) {
      if (!(e instanceof Error)) throw e;
      toolFailure = `keystone-totp:enforceMfa cannot be applied: ${e.message}`;
    }
  }
  const enabled = new Set(methods);
  const voided: string[] = [];
  const cut: string[] = [];
  const missing = new Set<string>();
  for (const u of users) {
    const rules = effectiveRules(optionsOf(u.user.options));
    const absent = rules.flat().filter((m) => !enabled.has(m));
    if (absent.length === 0) continue;
    for (const m of absent) missing.add(m);
    if (rules.some((r) => r.every((m) => !enabled.has(m)))) voided.push(u.row.key);
    else cut.push(u.row.key);
  }
  const details = { methods, missing: [...missing], voided, cut, toolRules };
  const tool = `the tool writes ${JSON.stringify(toolRules)}`;
  if (voided.length === 0 && cut.length === 0 && toolFailure === undefined) {
    return result(
      id,
      title,
      "ok",
      `every MFA rule of the users names only enabled methods (${methods.join(", ")}); ${tool}`,
      { details },
    );
  }
  const list = [...missing].join(", ");
  const parts: string[] = toolFailure ? [toolFailure] : [];
  if (voided.length > 0) {
    parts.push(
      `${voided.length} user(s) have a rule made only of methods missing from [auth] methods (${list}): before ` +
        `Keystone 28.0.0 (LP#2102096) such a rule lets ANY login in, a TOTP code alone included: ${nameSome(voided)}`,
    );
  }
  if (cut.length > 0) {
    parts.push(
      `${cut.length} user(s) have rules naming methods missing from [auth] methods (${list}), which Keystone leaves ` +
        `out, so the rule asks for less than it says: ${nameSome(cut)}`,
    );
  }
  return result(id, title, voided.length > 0 || toolFailure ? "failure" : "warning", parts.join("; "), {
    fix:
      `Rewrite the rules with enabled methods only (${methods.join(", ")}), or enable the method in keystone.conf ` +
      `[auth] methods on every Keystone node; then run ${REAPPLY_COMMAND}.`,
    ...(toolFailure ? { code: "E_CONFIG" as const } : {}),
    details,
  });
}

/** A domain's identity driver, from its domain-specific configuration or Keystone's default. */
async function identityDriver(session: ProbeSession, domainId: string): Promise<string | undefined> {
  const driverOf = (res: HttpResponse): string | undefined => {
    const d = asRecord(asRecord(res.body).config).driver;
    return res.status === 200 && typeof d === "string" ? d : undefined;
  };
  const own = await session.request("GET", `/domains/${encodeURIComponent(domainId)}/config/identity/driver`);
  if (own.status === 200) return driverOf(own);
  // 404: no domain-specific identity driver; the one in keystone.conf applies.
  if (own.status !== 404) return undefined;
  return driverOf(await session.request("GET", "/domains/config/identity/driver/default"));
}

/**
 * `users.stageable`: users whose options the tool cannot write, found without writing: users
 * in a domain whose identity driver is not SQL (LDAP: read-only, options refused with 403),
 * and users Keystone returns without any `options` (the LDAP driver's answer), as opposed to
 * empty ones (SQL users without options).
 */
export async function checkStageable(session: ProbeSession, users: readonly ResolvedUser[]): Promise<CheckResult> {
  const id = POSTURE_CHECK_IDS.stageable;
  const title = "options writable";
  const domains = [...new Set(users.map((u) => u.user.domainId))];
  const drivers = new Map<string, string | undefined>();
  const withoutOptions = new Set<string>();
  try {
    for (const d of domains) {
      drivers.set(d, await identityDriver(session, d));
      const res = await session.request("GET", `/users?${new URLSearchParams({ domain_id: d })}`);
      const list = asRecord(res.body).users;
      if (res.status !== 200 || !Array.isArray(list)) continue;
      for (const raw of list) {
        const u = asRecord(raw);
        if (typeof u.id === "string" && !("options" in u)) withoutOptions.add(u.id);
      }
    }
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    return result(id, title, "failure", `reading domains and users failed: ${e.message}`, {
      fix: "See the message; then run the doctor again.",
      code: "E_KEYSTONE_NETWORK",
    });
  }
  const readOnlyDomains = domains.filter((d) => {
    const driver = drivers.get(d);
    return driver !== undefined && driver !== WRITABLE_DRIVER;
  });
  const byDriver = users.filter((u) => readOnlyDomains.includes(u.user.domainId)).map((u) => u.row.key);
  const byAnswer = users
    .filter((u) => withoutOptions.has(u.user.id) && !readOnlyDomains.includes(u.user.domainId))
    .map((u) => u.row.key);
  const unknown = domains.filter((d) => drivers.get(d) === undefined);
  const details = {
    drivers: Object.fromEntries([...drivers].map(([d, v]) => [d, v ?? null])),
    readOnlyDomains,
    byDriver,
    withoutOptions: byAnswer,
  };
  const how = "found without writing to any user (the doctor changes nothing)";
  const unknownText =
    unknown.length > 0
      ? `; the identity driver of ${unknown.length} domain(s) could not be read (${unknown.join(", ")})`
      : "";
  if (byDriver.length === 0 && byAnswer.length === 0) {
    return result(
      id,
      title,
      "ok",
      `the users' domains use the ${WRITABLE_DRIVER} identity driver and every user has options, so their MFA ` +
        `rules can be written (${how})${unknownText}`,
      { details },
    );
  }
  const parts: string[] = [];
  if (byDriver.length > 0) {
    const names = readOnlyDomains.map((d) => `${d}: ${drivers.get(d)}`).join(", ");
    parts.push(
      `${byDriver.length} user(s) are in domains with a read-only identity driver (${names}): ${nameSome(byDriver)}`,
    );
  }
  if (byAnswer.length > 0) {
    parts.push(
      `${byAnswer.length} user(s) come back from Keystone without any options (not even empty ones), as from the ` +
        `LDAP driver: ${nameSome(byAnswer)}`,
    );
  }
  return result(
    id,
    title,
    "warning",
    `${parts.join("; ")}. Keystone will likely refuse to write their MFA rules (403), so the tool cannot stage them ` +
      `and does not enroll them (${how}; a refused write is the only proof)${unknownText}`,
    {
      fix: "Remove them from the CSV, or enroll them where their options are stored in SQL; see README, security model.",
      details,
    },
  );
}
