/**
 * The fleet's status, one row per user: what the stack's state says (enrolled since, last
 * delivery, next rotation, MFA) checked against the TOTP credentials Keystone actually holds.
 * Plain data in, plain data out: scripts/status.ts reads the state and Keystone, and prints.
 */

import { type Posture, postureOf } from "../../lib/mfa/posture.ts";
import { HOUR_MS } from "../../lib/util/clock.ts";
import { nextRotation } from "../../providers/credential/handlers.ts";
import { DEFAULT_GRACE_HOURS } from "../../providers/shared/retirement.ts";
import { toCsv } from "./csv.ts";

/** A resource as `pulumi stack export` gives it (only what the report reads). */
export interface StateResource {
  readonly urn: string;
  readonly type: string;
  readonly inputs?: Readonly<Record<string, unknown>>;
  readonly outputs?: Readonly<Record<string, unknown>>;
}

/**
 * The state of one user, worst first:
 * - `missing`: the stack's current credential is not in Keystone (deleted by hand: run refresh, then up)
 * - `not-enrolled`: in the CSV, not yet in the stack (the next up enrolls them)
 * - `not-delivered`: enrolled, but the enrollment message did not go out (the next up sends it)
 * - `delivery-unconfirmed`: the message was sent, but the mail server never confirmed it (the
 *   connection ended first): it may or may not have arrived; the secret stays valid and the
 *   next up sends the same one again
 * - `retire-failed`: Keystone refused to delete an old credential past its grace window: it is
 *   still valid (a leaked secret, after `rotate --grace-hours 0`); the next up tries again
 * - `unmanaged`: Keystone holds TOTP credentials for the user that the stack does not manage
 * - `retiring`: an old credential still works until its grace window ends
 * - `ok`: exactly the managed credential, delivered
 */
export type UserState =
  | "missing"
  | "not-enrolled"
  | "not-delivered"
  | "delivery-unconfirmed"
  | "retire-failed"
  | "unmanaged"
  | "retiring"
  | "ok";

/** A failed deletion of old credentials, as the state records it (no secret). */
export interface RetireFailedRecord {
  /** The credentials still valid that should have been deleted. */
  readonly ids: readonly string[];
  /** When the DELETE failed (ISO 8601). */
  readonly at: string;
  /** Our error code, when it was one of ours. */
  readonly code?: string;
  readonly error: string;
}

/** A delivery the mail server never confirmed, as the state records it (no secret). */
export interface UnconfirmedRecord {
  /** When the attempt ended (ISO 8601). */
  readonly at: string;
  /** `E_SMTP_UNCONFIRMED`. */
  readonly code: string;
  readonly error: string;
}

/** Every posture, in the order reports list them (the weakest first). */
export const POSTURES: readonly Posture[] = ["open", "staged", "enforced", "own"];

/** A Keystone user's options and keystone-totp marker, as a user list returns them. */
export interface AccountOptions {
  readonly options: Readonly<Record<string, unknown>>;
  readonly marker?: unknown;
}

/** What the posture column is computed from: one user list per domain and the probed methods. */
export interface PostureSource {
  /** Keystone's `[auth] methods` (see `KeystoneClient.authMethods`). */
  readonly methods: readonly string[];
  /** Options and marker per Keystone user ID. */
  readonly accounts: ReadonlyMap<string, AccountOptions>;
}

/** One line of the report. Times are ISO 8601 UTC. */
export interface StatusRow {
  readonly user: string;
  readonly userId: string | undefined;
  readonly email: string | undefined;
  readonly enrolledSince: string | undefined;
  readonly secretIssuedAt: string | undefined;
  readonly lastDelivery: string | undefined;
  readonly deliveredTo: string | undefined;
  /** When the next scheduled rotation is due; undefined when none is scheduled. */
  readonly nextRotation: string | undefined;
  readonly rotationDays: number;
  readonly mfaEnforced: boolean;
  /** The credential the stack manages as current. */
  readonly credentialId: string | undefined;
  /** Old credentials still valid, deleted by the first run after `retireAfter`. */
  readonly retiring: readonly string[];
  readonly retireAfter: string | undefined;
  /** The last failed deletion of `retiring` credentials still held; undefined when none. */
  readonly retireFailed: RetireFailedRecord | undefined;
  /** The current secret's delivery, when the mail server never confirmed it; undefined otherwise. */
  readonly deliveryUnconfirmed: UnconfirmedRecord | undefined;
  /** What Keystone holds for the user; undefined when Keystone was not asked. */
  readonly keystoneCredentialIds: readonly string[] | undefined;
  /** Credentials in Keystone that the stack neither uses nor retires. */
  readonly unmanagedIds: readonly string[];
  readonly state: UserState;
  /**
   * How the user may log in now (see `postureOf` in mfa/posture.ts): `open` (a TOTP code alone
   * logs in), `staged`, `enforced` (the tool's rules) or `own` (the operator's rules, kept).
   * Undefined when Keystone was not asked or the user was not found, and for a user without
   * any TOTP credential and no rules (no code could log them in: nothing to report).
   */
  readonly posture: Posture | undefined;
}

/** Counts for the report's header. */
export interface StatusCounts {
  readonly users: number;
  readonly byState: Readonly<Record<UserState, number>>;
  /** Users per posture; those without one are not counted. */
  readonly byPosture: Readonly<Record<Posture, number>>;
  readonly mfaEnforced: number;
  /** Users whose scheduled rotation is due within 7 days of `at` (or overdue). */
  readonly rotationsDueIn7Days: number;
  readonly keystoneCredentials: number | undefined;
}

/** A resource's name, the last part of its URN (for our resources, the user key). */
export function resourceName(urn: string): string {
  return urn.slice(urn.lastIndexOf("::") + 2);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

/** A recorded retirement failure, for the credentials still retiring (and held) only. */
function failureOf(v: unknown, retiring: readonly string[]): RetireFailedRecord | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const f = v as Record<string, unknown>;
  const ids = strings(f.ids).filter((id) => retiring.includes(id));
  if (ids.length === 0) return undefined;
  return {
    ids,
    at: String(f.at ?? ""),
    ...(typeof f.code === "string" ? { code: f.code } : {}),
    error: String(f.error ?? ""),
  };
}

/** A recorded unconfirmed delivery, if `v` is one. */
function unconfirmedOf(v: unknown): UnconfirmedRecord | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const u = v as Record<string, unknown>;
  if (typeof u.at !== "string" || typeof u.error !== "string") return undefined;
  return { at: u.at, code: typeof u.code === "string" ? u.code : "E_SMTP_UNCONFIRMED", error: u.error };
}

/**
 * Builds the report.
 *
 * @param resources - the stack's resources (`pulumi stack export`), secrets left encrypted.
 * @param keystone - TOTP credential IDs per Keystone user ID, or undefined to skip the check.
 * @param csvUsers - the users of the CSV (user keys), to list those not yet enrolled.
 * @param postures - the users' options, for the posture column; undefined to leave it empty.
 */
export function buildStatus(
  resources: readonly StateResource[],
  keystone: ReadonlyMap<string, readonly string[]> | undefined,
  csvUsers: readonly string[] = [],
  postures?: PostureSource,
): StatusRow[] {
  const creds = new Map<string, StateResource>();
  const deliveries = new Map<string, StateResource>();
  const mfa = new Map<string, StateResource>();
  for (const r of resources) {
    if (r.type.endsWith(":TotpCredential")) creds.set(resourceName(r.urn), r);
    else if (r.type.endsWith(":TotpDelivery")) deliveries.set(resourceName(r.urn), r);
    else if (r.type.endsWith(":TotpEnrollment")) {
      // One resource holds both the credential and its delivery record.
      creds.set(resourceName(r.urn), r);
      deliveries.set(resourceName(r.urn), r);
    } else if (r.type.endsWith(":MfaEnforcement")) mfa.set(resourceName(r.urn), r);
  }
  // A CSV may spell a user in another case than the resource's name (Keystone's spelling).
  const enrolled = new Set([...creds.keys()].map((n) => n.toLowerCase()));
  const notEnrolled = csvUsers.filter((u) => !enrolled.has(u.toLowerCase()));
  const names = [...new Set([...creds.keys(), ...notEnrolled])].sort((a, b) => a.localeCompare(b));
  return names.map((user) => {
    const c = creds.get(user);
    const d = deliveries.get(user);
    const m = mfa.get(user);
    const co = c?.outputs ?? {};
    const dout = d?.outputs ?? {};
    const userId = str(co.resolvedUserId) ?? str(co.userId);
    const credentialId = str(co.credentialId);
    const rotationDays = typeof c?.inputs?.rotationDays === "number" ? c.inputs.rotationDays : 0;
    const due = c ? nextRotation(co.rotatedAt, rotationDays, c.inputs?.secret) : undefined;
    const retiring = strings(dout.retiring);
    const delivered = str(dout.deliveredAt);
    const graceHours = typeof dout.graceHours === "number" ? dout.graceHours : DEFAULT_GRACE_HOURS;
    const retireAfter =
      retiring.length > 0 && delivered
        ? new Date(Date.parse(delivered) + graceHours * HOUR_MS).toISOString()
        : undefined;
    const held = keystone && userId ? [...(keystone.get(userId) ?? [])].sort() : keystone ? [] : undefined;
    const known = new Set([credentialId, ...retiring, ...strings(co.retiring)]);
    const unmanagedIds = held ? held.filter((id) => !known.has(id)) : strings(co.unmanagedIds);
    const inKeystone = held === undefined || (credentialId !== undefined && held.includes(credentialId));
    const liveRetiring = held ? retiring.filter((id) => held.includes(id)) : retiring;
    const retireFailed = failureOf(dout.retireFailed, liveRetiring);
    const deliveryUnconfirmed = unconfirmedOf(dout.deliveryUnconfirmed);
    const state: UserState = !c
      ? "not-enrolled"
      : !inKeystone
        ? "missing"
        : deliveryUnconfirmed
          ? "delivery-unconfirmed"
          : !d || !delivered || dout.credentialId !== credentialId
            ? "not-delivered"
            : retireFailed
              ? "retire-failed"
              : unmanagedIds.length > 0
                ? "unmanaged"
                : liveRetiring.length > 0
                  ? "retiring"
                  : "ok";
    const account = userId ? postures?.accounts.get(userId) : undefined;
    const found = account ? postureOf(account, postures?.methods ?? []) : undefined;
    // "open" for a user Keystone holds no TOTP credential for means nothing: no code matches.
    const posture = found === "open" && held !== undefined && held.length === 0 ? undefined : found;
    return {
      user,
      userId,
      email: str(d?.inputs?.email) ?? str(dout.email),
      enrolledSince: str(co.createdAt),
      secretIssuedAt: str(co.rotatedAt),
      lastDelivery: delivered,
      deliveredTo: str(dout.deliveredTo) ?? (delivered ? str(dout.email) : undefined),
      nextRotation: due?.toISOString(),
      rotationDays,
      mfaEnforced: Array.isArray(m?.outputs?.rules) && m.outputs.rules.length > 0,
      credentialId,
      retiring: liveRetiring,
      retireAfter: liveRetiring.length > 0 ? retireAfter : undefined,
      retireFailed,
      deliveryUnconfirmed,
      keystoneCredentialIds: held,
      unmanagedIds,
      state,
      posture,
    };
  });
}

/** Totals over the rows, at time `at`. */
export function countStatus(
  rows: readonly StatusRow[],
  at: Date,
  keystone?: ReadonlyMap<string, readonly string[]>,
): StatusCounts {
  const byState: Record<UserState, number> = {
    missing: 0,
    "not-enrolled": 0,
    "not-delivered": 0,
    "delivery-unconfirmed": 0,
    "retire-failed": 0,
    unmanaged: 0,
    retiring: 0,
    ok: 0,
  };
  for (const r of rows) byState[r.state]++;
  const byPosture: Record<Posture, number> = { open: 0, staged: 0, enforced: 0, own: 0 };
  for (const r of rows) if (r.posture) byPosture[r.posture]++;
  const week = at.getTime() + 7 * 24 * HOUR_MS;
  return {
    users: rows.length,
    byState,
    byPosture,
    mfaEnforced: rows.filter((r) => r.mfaEnforced).length,
    rotationsDueIn7Days: rows.filter((r) => r.nextRotation !== undefined && Date.parse(r.nextRotation) <= week).length,
    keystoneCredentials: keystone ? [...keystone.values()].reduce((n, ids) => n + ids.length, 0) : undefined,
  };
}

/** Columns of the table and CSV forms, in order. */
export const STATUS_COLUMNS = [
  "user",
  "state",
  "enrolledSince",
  "lastDelivery",
  "nextRotation",
  "mfaEnforced",
  "posture",
  "keystoneCredentials",
  "retiring",
  "unmanaged",
  "email",
] as const;

/** A row as the flat cells of {@link STATUS_COLUMNS} (dates shortened to the minute). */
export function flatRow(r: StatusRow): string[] {
  const t = (iso: string | undefined) => (iso ? `${iso.slice(0, 16).replace("T", " ")}Z` : "-");
  return [
    r.user,
    r.state,
    t(r.enrolledSince),
    t(r.lastDelivery),
    t(r.nextRotation),
    r.mfaEnforced ? "yes" : "no",
    r.posture ?? "-",
    r.keystoneCredentialIds === undefined ? "?" : String(r.keystoneCredentialIds.length),
    String(r.retiring.length),
    String(r.unmanagedIds.length),
    r.email ?? "-",
  ];
}

/** A plain-text table, columns padded to their widest cell. */
export function formatTable(rows: readonly StatusRow[]): string {
  const header = [
    "USER",
    "STATE",
    "ENROLLED",
    "LAST DELIVERY",
    "NEXT ROTATION",
    "MFA",
    "POSTURE",
    "KS",
    "RETIRING",
    "UNMGD",
    "EMAIL",
  ];
  const cells = [header, ...rows.map(flatRow)];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => [...(r[i] ?? "")].length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - [...c].length)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

/** The report as CSV (see report/csv.ts: safe to open in a spreadsheet), with the IDs. */
export function statusCsv(rows: readonly StatusRow[]): string {
  return toCsv(
    [...STATUS_COLUMNS, "userId", "credentialId", "retireAfter"],
    rows.map((r) => [
      r.user,
      r.state,
      r.enrolledSince,
      r.lastDelivery,
      r.nextRotation,
      r.mfaEnforced,
      r.posture,
      r.keystoneCredentialIds?.length,
      r.retiring.length,
      r.unmanagedIds.length,
      r.email,
      r.userId,
      r.credentialId,
      r.retireAfter,
    ]),
  );
}
