/**
 * Keeps the doctor's own round trip (a TOTP credential created and deleted on the operator's
 * user) from opening a TOTP-only login on the operator's account.
 *
 * Keystone lets a user with a TOTP credential and no MFA rules log in with a 6-digit code
 * alone. The doctor's credential has a random secret that is never shown, but the operator's
 * account is the most valuable one in the cloud, and the tool promises that no user holds a
 * TOTP credential without rules that refuse TOTP alone. So, before the credential exists,
 * the operator's rules are made to refuse TOTP alone (staged rules and the tool's marker,
 * written in one PATCH, see mfa/posture.ts), and afterwards the options are put back exactly
 * as they were, whatever happened in between.
 */
import { KeystoneError } from "../../lib/errors.ts";
import type { KeystoneClient, KeystoneUser } from "../../lib/keystone/client.ts";
import { admitsTotpAlone, type MfaOptions, optionsOf, postureMarker, stagedRules } from "../../lib/mfa/posture.ts";

/** How the operator's user was protected during the round trip. */
export type GuardOutcome =
  /** Its own options already refused a TOTP code alone: nothing was written. */
  | "already-refused"
  /** Staged rules were written for the round trip and the previous options put back. */
  | "staged-and-restored"
  /** Staged rules were written and kept, as `keep` asked (a credential could not be deleted). */
  | "staged-and-kept";

/** Why the round trip could not be protected, or its options not restored. */
export class GuardError extends Error {
  /** The Keystone failure behind it. */
  readonly keystone: KeystoneError;
  /** Options to put back by hand when the restore failed; undefined when nothing is left to undo. */
  readonly leftover: MfaOptions | undefined;

  constructor(message: string, keystone: KeystoneError, leftover?: MfaOptions) {
    super(message, { cause: keystone });
    this.name = "GuardError";
    this.keystone = keystone;
    this.leftover = leftover;
  }
}

/**
 * Runs `fn` while a TOTP code alone cannot log `userId` in.
 *
 * - The user's current options already refuse TOTP alone (on this Keystone's `[auth] methods`):
 *   `fn` runs, nothing is written.
 * - Otherwise staged rules (one rule per enabled login method but TOTP and token, so the
 *   operator's password login keeps working) are written with the tool's marker recording the
 *   previous options; `fn` runs; the previous options and marker are written back, also when
 *   `fn` throws; unless `keep(value)` says the rules must stay (e.g. the credential `fn`
 *   made could not be deleted: removing the rules would leave it able to log in alone).
 *
 * @throws {GuardError} when the rules could not be written (`fn` did not run) or the options
 *   could not be put back (named in `leftover`).
 * @throws whatever `fn` throws, after the restore.
 */
export async function withTotpAloneRefused<T>(
  client: KeystoneClient,
  userId: string,
  fn: () => Promise<T>,
  keep: (value: T) => boolean = () => false,
): Promise<{ value: T; outcome: GuardOutcome }> {
  let before: KeystoneUser | undefined;
  let methods: string[];
  try {
    methods = await client.authMethods();
    before = await client.getUser(userId);
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    throw new GuardError(`reading the operator's user ${userId} or Keystone's [auth] methods failed: ${e.message}`, e);
  }
  if (before === undefined) {
    const missing = new KeystoneError(
      "E_KEYSTONE_NOT_FOUND",
      { method: "GET", path: `/v3/users/${userId}`, status: 404 },
      "The token's user does not exist.",
    );
    throw new GuardError(`the operator's user ${userId} was not found`, missing);
  }
  const previous = optionsOf(before.options);
  if (!admitsTotpAlone(previous, methods)) return { value: await fn(), outcome: "already-refused" };

  const marker = postureMarker(previous);
  try {
    await client.writeUserMfa(userId, { enabled: true, rules: stagedRules(methods) }, marker);
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    // Whether a failed PATCH was applied is unknown: put the options back to be sure.
    await client.writeUserMfa(userId, previous, before.marker ?? null).catch(() => undefined);
    throw new GuardError(`writing MFA rules that refuse TOTP alone on the operator's user failed: ${e.message}`, e);
  }
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    await restore(client, userId, previous, before.marker);
    throw e;
  }
  if (keep(value)) return { value, outcome: "staged-and-kept" };
  await restore(client, userId, previous, before.marker);
  return { value, outcome: "staged-and-restored" };
}

async function restore(client: KeystoneClient, userId: string, previous: MfaOptions, marker: unknown): Promise<void> {
  try {
    await client.writeUserMfa(userId, previous, marker ?? null);
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    throw new GuardError(
      `putting the operator's MFA options back failed (${e.message}); they are still the staged rules, which ` +
        "refuse TOTP alone and keep password logins working",
      e,
      previous,
    );
  }
}
