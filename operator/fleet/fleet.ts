/**
 * Turns resolved CSV rows into the arguments of each user's resources. Plain data in, plain
 * data out: index.ts declares the resources from it.
 */
import type { KeystoneUser } from "../../lib/keystone/client.ts";
import { isUnset, type MfaOptions, previousOptions } from "../../lib/mfa/posture.ts";
import { type UserRow, userKey } from "../../lib/users/csv.ts";
import type { FleetSettings } from "./settings.ts";
import { inShard } from "./shard.ts";

/** What to declare for one user. */
export interface FleetMember {
  /**
   * Resource name: the user's stable identity, never the row number. Built from the user
   * name as Keystone has it (and the CSV's domain), so that a case-only edit of the CSV
   * (`user03` -> `USER03`, as spreadsheets and directory exports do) names the same resource
   * instead of replacing it: a new secret, a new message and the old credential gone at once.
   */
  readonly name: string;
  /**
   * Earlier names of the same resources, declared as Pulumi aliases: the CSV's own spelling,
   * which named them before names followed Keystone's, so that existing stacks keep them.
   */
  readonly aliases: readonly string[];
  readonly userId: string;
  readonly username: string;
  readonly domain: string;
  readonly email: string;
  readonly displayName: string;
  readonly issuer: string;
  readonly account: string;
  /** Changes when the operator asked for a resend on label changes. */
  readonly resendTrigger: string | undefined;
  /** Scheduled rotation in days (the row's `rotation_days`, else the stack's); 0 = never. */
  readonly rotationDays: number;
  /** A rotate request for this user in this run, if any. */
  readonly rotateRequest: string | undefined;
  /**
   * The user's MFA options before keystone-totp (from the marker of an earlier run, else as
   * listed now); undefined when none are set.
   */
  readonly previousMfa: MfaOptions | undefined;
}

/** Users to rotate now, on demand (`npm run rotate`): their keys, or everyone. */
export interface RotateRequest {
  /** Any string not used before, e.g. the time of the request. */
  readonly token: string;
  readonly users: ReadonlySet<string> | "all";
}

/** Builds one member per row of this stack's shard (every row when the stack is not sharded). */
export function planFleet(
  users: readonly { row: UserRow; user: KeystoneUser }[],
  s: FleetSettings,
  rotate?: RotateRequest,
): FleetMember[] {
  // After validation and resolution of the whole CSV: every stack refuses the same bad file.
  const mine = users.filter(({ row }) => inShard(row.key, s.shard));
  return mine.map(({ row, user }) => {
    // Keystone's spelling, which the user types to log in; the CSV's may differ in case only.
    const username = user.name;
    const name = userKey(row.domain, username);
    const displayName = row.displayName ?? username;
    const account =
      s.accountLabel === "email" ? row.email : s.accountLabel === "username" ? username : `${username}@${row.domain}`;
    const asked = (key: string) => rotate !== undefined && (rotate.users === "all" || rotate.users.has(key));
    return {
      name,
      aliases: row.key === name ? [] : [row.key],
      userId: user.id,
      username,
      domain: row.domain,
      email: row.email,
      displayName,
      issuer: s.issuer,
      account,
      resendTrigger: s.resendOnLabelChange ? JSON.stringify([s.issuer, displayName, account]) : undefined,
      rotationDays: row.rotationDays ?? s.rotationDays,
      // `rotate` names users by resource name: today's, or the CSV's spelling before an upgrade.
      rotateRequest: asked(name) || asked(row.key) ? rotate?.token : undefined,
      previousMfa: recordedOptions(user),
    };
  });
}

/** The user's options before keystone-totp (the marker's record, else the options); undefined when none. */
function recordedOptions(user: KeystoneUser): MfaOptions | undefined {
  const o = previousOptions(user);
  return isUnset(o) ? undefined : o;
}
