/**
 * The Keystone side of a user's login posture (see `posture.ts` for the rules themselves):
 * the settings a resource carries, writing the tool's rules with its marker, and giving the
 * user's options back.
 *
 *   stage / enforce  PATCH /v3/users/{id}  options + `keystone_totp` marker, ONE request,
 *                    before the first TOTP credential exists (stage) or after delivery (enforce),
 *                    sent twice a settling pause apart, then GET /v3/users/{id} until Keystone
 *                    serves them (users.writeUserMfa)
 *   release          GET /v3/users/{id}, then PATCH the options recorded in the marker back
 *                    and clear the marker (read back the same way); only after the user's
 *                    credentials are gone
 *
 * Order is what makes every crash safe: rules before the credential (a credential never exists
 * without them; rules without a credential change no login), credentials deleted before the
 * rules are released, and the marker written in the same PATCH as the rules (a rerun after a
 * crash reads the real previous options from it, never the tool's own rules).
 */
import { KeystoneError, PostureError } from "../errors.ts";
import type { KeystoneClient } from "../keystone/client.ts";
import { defined } from "../util/props.ts";
import {
  decidePosture,
  type MfaOptions,
  type MfaRule,
  markerOf,
  NO_OPTIONS,
  type Posture,
  PostureRefusal,
  type PostureSettings,
  parseMethods,
  postureMarker,
} from "./posture.ts";

/** Posture inputs of a resource (all optional; absent = the safe default). */
export interface PostureInputs {
  /** Keystone's `[auth] methods`, comma-separated, as the program probed them; absent: probed here. */
  readonly authMethods?: string | undefined;
  /** Let a TOTP code alone log the user in (no staged rules). Default false. */
  readonly allowTotpOnlyLogin?: boolean | undefined;
  /** Replace own rules that let TOTP alone in. Default false (the user is refused). */
  readonly replaceOwnRules?: boolean | undefined;
  /** Under enforcement, refuse application credentials too. Default false. */
  readonly refuseApplicationCredentials?: boolean | undefined;
  /**
   * The user's options before the tool (the marker's record, else the options), as the fleet
   * program just listed them; absent: none were set. Read only with `userChecked`.
   */
  readonly previousMfa?: MfaOptions | undefined;
}

/** What a resource records of the posture it gave its user. */
export interface MfaState {
  readonly posture: Posture;
  /** The options before, when the tool wrote its own (absent: none were set). */
  readonly previous?: MfaOptions | undefined;
  /** The rules the tool wrote; absent when it wrote none (not stored by the credential: derivable). */
  readonly rules?: readonly MfaRule[] | undefined;
}

/**
 * What a credential keeps of a posture in its state: every byte is stored per user and
 * rewritten at every checkpoint, and the rules follow from the methods and the posture.
 */
export function storedPosture(st: MfaState): MfaState {
  return defined({ posture: st.posture, previous: st.previous });
}

/** The posture inputs' keys: a change of any of them re-applies the posture. */
export const POSTURE_KEYS = ["authMethods", "allowTotpOnlyLogin", "replaceOwnRules"] as const;

/** Normalises a resource's posture inputs, probing Keystone's methods when not given. */
export async function postureSettings(i: PostureInputs, client: KeystoneClient): Promise<PostureSettings> {
  const given = parseMethods(i.authMethods);
  return {
    methods: given.length > 0 ? given : await client.authMethods(),
    allowTotpOnlyLogin: i.allowTotpOnlyLogin === true,
    refuseApplicationCredentials: i.refuseApplicationCredentials === true,
    replaceOwnRules: i.replaceOwnRules === true,
  };
}

/** Whether options are worth recording (anything set). */
function recorded(o: MfaOptions): MfaOptions | undefined {
  return o.enabled === null && o.rules === null ? undefined : o;
}

/**
 * Gives a user the posture `want` (see `decidePosture`), writing the tool's rules and the
 * marker in one PATCH when the user's options must change.
 *
 * @param previous - the user's options before the tool ever touched them.
 * @param enforcedBy - with `enforced`: the enforcement writing the rules, recorded in the marker
 *   (see `PostureMarker.enforcedBy`).
 * @throws {PostureError} `E_POSTURE` naming the user when its own rules let TOTP alone in, or
 *   enforcement is impossible on this Keystone.
 * @throws {KeystoneError} `E_KEYSTONE_FORBIDDEN` naming the user when Keystone refuses the write
 *   (the account lacks `identity:update_user`, or an LDAP identity backend refuses option
 *   writes: such users cannot be staged).
 */
export async function applyPosture(
  client: KeystoneClient,
  user: { readonly id: string; readonly key: string },
  previous: MfaOptions,
  want: "staged" | "enforced",
  s: PostureSettings,
  enforcedBy?: string,
): Promise<MfaState> {
  let d: ReturnType<typeof decidePosture>;
  try {
    d = decidePosture(previous, want, s);
  } catch (e) {
    throw new PostureError(user.key, e instanceof Error ? e.message : String(e), { cause: e });
  }
  // No undefined inside: the engine's wire format has none ("Unexpected struct type").
  if (!d.write) return defined({ posture: d.posture, previous: recorded(previous) });
  const marker = postureMarker(previous, want === "enforced" ? enforcedBy : undefined);
  try {
    await client.writeUserMfa(user.id, d.write, marker);
  } catch (e) {
    if (e instanceof KeystoneError && e.code === "E_KEYSTONE_FORBIDDEN") {
      // Kept as E_KEYSTONE_FORBIDDEN (exit 3): Keystone cannot say which of the two it is.
      e.message =
        `user ${user.key}: Keystone refused to write its MFA rules (403), so no credential was created or changed ` +
        "for it. Either the operator account lacks identity:update_user, or the user's identity backend is " +
        "read-only (LDAP), and such users cannot be staged; keystone-totp:allowTotpOnlyLogin enrolls those " +
        `without rules. ${e.message}`;
    }
    if (e instanceof KeystoneError && e.code === "E_KEYSTONE_STALE") {
      e.message = `user ${user.key}: its MFA rules are written, but no credential was created or changed for it. ${e.message}`;
    }
    throw e;
  }
  return defined({ posture: d.posture, previous: recorded(previous), rules: d.write.rules ?? undefined });
}

/**
 * Gives the user back the options it had before the tool: those recorded in the marker (the
 * truth, even after a crash or from another resource), else those the state recorded when the
 * tool wrote rules. Call only once the user's TOTP credentials are gone. A deleted user, or
 * one the tool never wrote rules on, counts as done.
 *
 * @throws {KeystoneError} when Keystone fails; the resource stays, and the next run retries.
 */
export async function releasePosture(client: KeystoneClient, userId: string, stored?: MfaState): Promise<void> {
  const user = await client.getUser(userId);
  if (!user) return;
  const marker = markerOf(user.marker);
  if (marker) {
    await client.writeUserMfa(userId, marker.previous, null);
  } else if (stored?.posture === "staged" || stored?.posture === "enforced") {
    // The marker was removed by hand: the state's record is the next best.
    await client.writeUserMfa(userId, stored.previous ?? NO_OPTIONS, null);
  }
}

export { PostureRefusal };
