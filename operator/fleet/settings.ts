/**
 * The program's settings from stack config, normalised once into a fully-filled type.
 *
 * @see README.md, Configuration
 */
import { isAbsolute, resolve } from "node:path";
import { ConfigError } from "../../lib/errors.ts";
import { DEFAULT_OUTBOX_DIR } from "../../lib/mail/config.ts";
import { validateLabel } from "../../lib/totp/uri.ts";
import {
  DEFAULT_ISSUER,
  DEFAULT_UNMANAGED,
  MAX_ROTATION_DAYS,
  type UnmanagedPolicy,
} from "../../providers/credential/types.ts";
import { DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS } from "../../providers/shared/retirement.ts";
import { parseShard, type Shard } from "./shard.ts";

/** Default users CSV, relative to the project. */
export const DEFAULT_USERS_CSV = "users.csv";
/** Scheduled rotation when neither the CSV nor `keystone-totp:rotationDays` gives one: never. */
export const DEFAULT_ROTATION_DAYS = 0;

export { DEFAULT_GRACE_HOURS, DEFAULT_ISSUER, MAX_GRACE_HOURS };

/** How the account label shown in the app is formed. */
export type AccountLabelStyle = "username@domain" | "username" | "email";

/** Fleet settings (the posture flags included). */
export interface FleetSettings extends PostureFlags {
  /** Absolute path of the users CSV. */
  readonly usersCsv: string;
  /** Whether `usersCsv` was set explicitly (a missing explicit file is an error). */
  readonly usersCsvExplicit: boolean;
  readonly issuer: string;
  readonly accountLabel: AccountLabelStyle;
  /** Send the message again when the issuer or display name changes. Default false. */
  readonly resendOnLabelChange: boolean;
  /** Whether mail goes over SMTP (else to the outbox folder). */
  readonly smtp: boolean;
  /** Outbox folder (absolute), used when `smtp` is false. */
  readonly outboxDir: string;
  /** Scheduled rotation for users without a `rotation_days` cell, in days; 0 = never. */
  readonly rotationDays: number;
  /** Hours a replaced credential keeps working after its successor was delivered. */
  readonly rotationGraceHours: number;
  /** What happens to TOTP credentials Pulumi did not create: `remove` or `keep`. */
  readonly unmanagedCredentials: UnmanagedPolicy;
  /** The share of the CSV's users this stack manages (`keystone-totp:shard`); undefined: all. */
  readonly shard: Shard | undefined;
}

function wholeNumber(key: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined || v === "") return dflt;
  if (!/^[0-9]{1,9}$/.test(v.trim()) || Number(v) > max) {
    throw new ConfigError(`keystone-totp:${key} must be a whole number from 0 to ${max}, not '${v}'`);
  }
  return Number(v);
}

/** The stack's login posture settings (`keystone-totp:*`), each false by default. */
export interface PostureFlags {
  /** Enforce password + TOTP on users whose enrollment was delivered. */
  readonly enforceMfa: boolean;
  /** Let a TOTP code alone log users in (no staged rules; the 0.2 behaviour). */
  readonly allowTotpOnlyLogin: boolean;
  /** Under enforcement, refuse users' application credentials too. */
  readonly refuseApplicationCredentials: boolean;
  /** Replace users' own MFA rules that let a TOTP code alone in (else such users are refused). */
  readonly replaceOwnRules: boolean;
}

/**
 * Reads the posture settings: the one reader for the program, `status` and `doctor`, so that a
 * value one of them refuses is never taken as `false` by another.
 *
 * @param get - reads `keystone-totp:<key>` (plain text).
 * @throws {ConfigError} naming the key, for a value other than true/false/1/0/yes/no.
 */
export function resolvePostureFlags(get: (key: string) => string | undefined): PostureFlags {
  return {
    enforceMfa: bool("enforceMfa", get("enforceMfa"), false),
    allowTotpOnlyLogin: bool("allowTotpOnlyLogin", get("allowTotpOnlyLogin"), false),
    refuseApplicationCredentials: bool("refuseApplicationCredentials", get("refuseApplicationCredentials"), false),
    replaceOwnRules: bool("replaceOwnRules", get("replaceOwnRules"), false),
  };
}

/**
 * Reads `keystone-totp:rotationGraceHours`, as the program does.
 *
 * @throws {ConfigError} for a value that is not a whole number from 0 to {@link MAX_GRACE_HOURS}.
 */
export function resolveRotationGraceHours(get: (key: string) => string | undefined): number {
  return wholeNumber("rotationGraceHours", get("rotationGraceHours"), DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS);
}

function bool(key: string, v: string | undefined, dflt: boolean): boolean {
  if (v === undefined || v === "") return dflt;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new ConfigError(`keystone-totp:${key} must be true or false, not '${v}'`);
}

function unmanaged(v: string | undefined): UnmanagedPolicy {
  if (v === undefined || v === "") return DEFAULT_UNMANAGED;
  if (v === "remove") return "remove";
  if (v === "keep") return "keep";
  throw new ConfigError(`keystone-totp:unmanagedCredentials must be remove or keep, not '${v}'`);
}

/**
 * Reads the fleet settings.
 *
 * @param get - reads `keystone-totp:<key>` (plain text; secrets are only checked for presence).
 * @param projectDir - folder of Pulumi.yaml, against which relative paths resolve.
 * @throws {ConfigError} naming the key at fault.
 */
export function resolveFleetSettings(get: (key: string) => string | undefined, projectDir: string): FleetSettings {
  const csv = get("usersCsv");
  const label = (get("accountLabel") ?? "username@domain") as AccountLabelStyle;
  if (!["username@domain", "username", "email"].includes(label)) {
    throw new ConfigError(`keystone-totp:accountLabel must be username@domain, username or email, not '${label}'`);
  }
  const issuer = get("issuer") ?? DEFAULT_ISSUER;
  try {
    validateLabel("issuer", issuer);
  } catch (e) {
    throw new ConfigError(`keystone-totp:issuer: ${(e as Error).message}`);
  }
  const at = (p: string) => (isAbsolute(p) ? p : resolve(projectDir, p));
  return {
    usersCsv: at(csv ?? DEFAULT_USERS_CSV),
    usersCsvExplicit: csv !== undefined,
    issuer,
    accountLabel: label,
    ...resolvePostureFlags(get),
    resendOnLabelChange: bool("resendOnLabelChange", get("resendOnLabelChange"), false),
    smtp: (get("smtpUrl") ?? "") !== "",
    outboxDir: at(get("outboxDir") ?? DEFAULT_OUTBOX_DIR),
    rotationDays: wholeNumber("rotationDays", get("rotationDays"), DEFAULT_ROTATION_DAYS, MAX_ROTATION_DAYS),
    rotationGraceHours: resolveRotationGraceHours(get),
    unmanagedCredentials: unmanaged(get("unmanagedCredentials")),
    shard: parseShard(get("shard")),
  };
}
