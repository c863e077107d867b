/**
 * The program's settings from stack config, normalised once into a fully-filled type.
 *
 * @see README.md, Configuration
 */
import { isAbsolute, resolve } from "node:path";
import { ConfigError } from "../../lib/errors.ts";
import { validateLabel } from "../../lib/totp/uri.ts";
import { DEFAULT_UNMANAGED, MAX_ROTATION_DAYS, type UnmanagedPolicy } from "../../providers/credential/types.ts";
import { DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS } from "../../providers/delivery/types.ts";
import { parseShard, type Shard } from "./shard.ts";

/** Default users CSV, relative to the project. */
export const DEFAULT_USERS_CSV = "users.csv";
/** Default issuer shown in authenticator apps. */
export const DEFAULT_ISSUER = "OpenStack";

export { MAX_GRACE_HOURS };

/** How the account label shown in the app is formed. */
export type AccountLabelStyle = "username@domain" | "username" | "email";

/** Fleet settings. */
export interface FleetSettings {
  /** Absolute path of the users CSV. */
  readonly usersCsv: string;
  /** Whether `usersCsv` was set explicitly (a missing explicit file is an error). */
  readonly usersCsvExplicit: boolean;
  readonly issuer: string;
  readonly accountLabel: AccountLabelStyle;
  /** Enforce password + TOTP on users whose enrollment was delivered. Default false. */
  readonly enforceMfa: boolean;
  /** Let a TOTP code alone log users in (no staged rules; the 0.2 behaviour). Default false. */
  readonly allowTotpOnlyLogin: boolean;
  /** Under enforcement, refuse users' application credentials too. Default false. */
  readonly refuseApplicationCredentials: boolean;
  /** Replace users' own MFA rules that let a TOTP code alone in. Default false (such users are refused). */
  readonly replaceOwnRules: boolean;
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
    enforceMfa: bool("enforceMfa", get("enforceMfa"), false),
    allowTotpOnlyLogin: bool("allowTotpOnlyLogin", get("allowTotpOnlyLogin"), false),
    refuseApplicationCredentials: bool("refuseApplicationCredentials", get("refuseApplicationCredentials"), false),
    replaceOwnRules: bool("replaceOwnRules", get("replaceOwnRules"), false),
    resendOnLabelChange: bool("resendOnLabelChange", get("resendOnLabelChange"), false),
    smtp: (get("smtpUrl") ?? "") !== "",
    outboxDir: at(get("outboxDir") ?? "outbox"),
    rotationDays: wholeNumber("rotationDays", get("rotationDays"), 0, MAX_ROTATION_DAYS),
    rotationGraceHours: wholeNumber(
      "rotationGraceHours",
      get("rotationGraceHours"),
      DEFAULT_GRACE_HOURS,
      MAX_GRACE_HOURS,
    ),
    unmanagedCredentials: unmanaged(get("unmanagedCredentials")),
    shard: parseShard(get("shard")),
  };
}
