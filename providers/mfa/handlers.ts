/**
 * The logic behind the `MfaEnforcement` dynamic provider: password + TOTP required for one
 * user, once its enrollment message was delivered (see posture.ts for the rules).
 *
 *   create  PATCH /v3/users/{id}  the enforced rules (`["password","totp"]` plus one rule per
 *           other enabled login method: application credentials and federation keep working)
 *           and the marker recording the user's options before keystone-totp. Only once the
 *           enrollment's message was delivered: while its delivery is unconfirmed (no
 *           `deliveredAt`: the user may not hold the QR code) nothing is written, the
 *           enforcement is recorded as `waiting`, and the run that confirms the delivery enforces
 *   read    GET /v3/users/{id}    rules changed out of band show as drift; a deleted user is gone
 *   update  PATCH /v3/users/{id}  the rules for new settings (also a 0.1/0.2 state, whose rules
 *           `[["password","totp"]]` refused application credentials); a waiting enforcement is
 *           created now if the delivery is confirmed, else keeps waiting. An enforcement in force
 *           stays in force whatever the delivery (loosening it would let a password alone in)
 *   delete  GET + PATCH /v3/users/{id}  back to the enrollment's staged rules, never to options
 *           that let a TOTP code alone in while the user still holds a credential; the
 *           enrollment's own delete then restores the options from before; a waiting one wrote
 *           nothing and takes nothing back; nor does one whose rules another enforcement has
 *           written since (the user's marker names that one: a renamed user's new enforcement,
 *           created before this one is deleted, or the stack's a user moved to): only a GET
 *
 * @see https://docs.openstack.org/keystone/latest/admin/multi-factor-authentication.html
 */
import { randomUUID } from "node:crypto";
import { UserNotFoundError, withErrorCodes } from "../../lib/errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { applyPosture, POSTURE_KEYS, type PostureInputs, postureSettings } from "../../lib/mfa/apply.ts";
import {
  decidePosture,
  effectiveRules,
  type MfaOptions,
  type MfaRule,
  markerOf,
  NO_OPTIONS,
  optionsOf,
  type Posture,
  postureMarker,
  previousOptions,
  sameRules,
} from "../../lib/mfa/posture.ts";
import { now as clockNow } from "../../lib/util/clock.ts";
import { defined, sameValue } from "../../lib/util/props.ts";

/** The rule 0.1 and 0.2 wrote (it refused application credentials); kept for their states. */
export const PASSWORD_AND_TOTP: readonly MfaRule[] = [["password", "totp"]];

/** Resolved inputs. */
export interface MfaInputs extends PostureInputs {
  readonly userId: string;
  /** The user as `name@domain`, for messages. */
  readonly userKey: string;
  /**
   * When the enrollment this depends on was delivered (ISO 8601); enforcement waits for it.
   * Absent (or empty) while the enrollment's delivery is unconfirmed.
   */
  readonly deliveredAt?: string | undefined;
  /** The program has just listed the user (`previousMfa` is then what it found). */
  readonly userChecked?: boolean | undefined;
}

/** Outputs: what was set, and what to restore. */
export interface MfaOutputs extends Omit<MfaInputs, "previousMfa"> {
  /** `multi_factor_auth_enabled` before keystone-totp (null when unset); absent while waiting. */
  readonly previousEnabled?: boolean | null;
  /** `multi_factor_auth_rules` before keystone-totp (null when unset); absent while waiting. */
  readonly previousRules?: readonly MfaRule[] | null;
  /** When the rules were first written; absent while waiting. */
  readonly enforcedAt?: string | undefined;
  /**
   * Nothing enforced yet: the enrollment's delivery is unconfirmed, so the user may not hold the
   * QR code; the run that delivers it enforces.
   */
  readonly waiting?: true | undefined;
  /** `enforced`, or `own` when the user's own rules already required it (absent in 0.1/0.2 states). */
  readonly posture?: Posture | undefined;
  /** The rules in force for the user: those written, or the user's own. */
  readonly rules?: readonly MfaRule[] | undefined;
  /** A refresh found other rules on the user: the next update writes them again. */
  readonly drift?: boolean | undefined;
  /**
   * This enforcement's mark, written in the user's marker with its rules (a random UUID, not a
   * secret); absent when it wrote nothing, and in states written before it existed. Its delete
   * loosens the rules only while the marker still carries it.
   */
  readonly enforcedBy?: string | undefined;
}

/** Where the handlers get their Keystone client; tests substitute their own. */
export interface MfaContext {
  readonly client: () => KeystoneClient;
  readonly now: () => Date;
}

let configGetter: ConfigGetter = () => undefined;

export const defaultContext: MfaContext = {
  client: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
  now: () => clockNow(),
};

/** Receives the stack configuration. */
export function configure(get: ConfigGetter): void {
  configGetter = get;
}

/** Settings whose change rewrites the rules. */
const RULE_KEYS = [...POSTURE_KEYS, "refuseApplicationCredentials"] as const;

/** Whether an enrollment's `deliveredAt` says its message was delivered (confirmed). */
export function isDelivered(deliveredAt: unknown): boolean {
  return typeof deliveredAt === "string" && deliveredAt !== "";
}

/**
 * User changed -> replace (the old user back to staged, the new one enforced); new settings,
 * a 0.1/0.2 state, or rules changed out of band -> update; a waiting enforcement -> update once
 * the delivery is confirmed.
 */
export function diff(olds: Record<string, unknown>, news: Record<string, unknown>) {
  const replaces = sameValue(olds.userId, news.userId) ? [] : ["userId"];
  const settings = RULE_KEYS.some((k) => !sameValue(olds[k], news[k]));
  const changes =
    olds.waiting === true
      ? replaces.length > 0 || settings || isDelivered(news.deliveredAt)
      : replaces.length > 0 || olds.posture === undefined || olds.drift === true || settings;
  return { changes, replaces, deleteBeforeReplace: false };
}

function previousOf(o: { previousEnabled?: unknown; previousRules?: unknown }): MfaOptions {
  return optionsOf({ multi_factor_auth_enabled: o.previousEnabled, multi_factor_auth_rules: o.previousRules });
}

function outputs(
  i: MfaInputs,
  previous: MfaOptions,
  posture: Posture,
  rules: readonly MfaRule[] | undefined,
  at: string,
  enforcedBy: string | undefined,
) {
  const { previousMfa: _observed, ...kept } = i;
  return defined({
    ...kept,
    previousEnabled: previous.enabled,
    previousRules: previous.rules,
    enforcedAt: at,
    posture,
    rules,
    enforcedBy,
  }) as MfaOutputs;
}

/** Writes the enforced rules marked `by`; `by` is returned only when rules were written. */
async function enforceOn(i: MfaInputs, previous: MfaOptions, ctx: MfaContext, by: string) {
  const client = ctx.client();
  const s = await postureSettings(i, client);
  const st = await applyPosture(client, { id: i.userId, key: i.userKey }, previous, "enforced", s, by);
  return { st, rules: st.rules ?? effectiveRules(previous), by: st.rules === undefined ? undefined : by };
}

/** The outputs of an enforcement that waits for a confirmed delivery: the inputs, nothing written. */
function waitingOutputs(i: MfaInputs): MfaOutputs {
  const { previousMfa: _observed, ...kept } = i;
  return defined({ ...kept, waiting: true }) as MfaOutputs;
}

/**
 * Enforces the rules, remembering the user's options from before keystone-totp; waits, writing
 * nothing, while the enrollment's delivery is unconfirmed.
 */
async function createImpl(i: MfaInputs, ctx: MfaContext = defaultContext): Promise<{ id: string; outs: MfaOutputs }> {
  if (!isDelivered(i.deliveredAt)) return { id: i.userId, outs: waitingOutputs(i) };
  let previous: MfaOptions;
  if (i.userChecked === true) {
    previous = i.previousMfa ?? NO_OPTIONS;
  } else {
    const user = await ctx.client().getUser(i.userId);
    if (!user) throw new UserNotFoundError([`${i.userKey} (${i.userId})`]);
    previous = previousOptions(user);
  }
  const { st, rules, by } = await enforceOn(i, previous, ctx, randomUUID());
  return { id: i.userId, outs: outputs(i, previous, st.posture, rules, ctx.now().toISOString(), by) };
}

/** Reads the user's rules back: other rules than those in force are drift. */
async function readImpl(id: string, props: MfaOutputs, ctx: MfaContext = defaultContext) {
  const user = await ctx.client().getUser(id);
  if (!user) return {};
  const now = effectiveRules(optionsOf(user.options));
  const drift = props.rules !== undefined && !sameRules(now, props.rules);
  return { id, props: defined({ ...props, drift: drift || undefined }) };
}

/**
 * Writes the rules for new settings; the options from before stay those recorded at create. A
 * waiting enforcement is created now if the delivery is confirmed.
 */
async function updateImpl(id: string, olds: MfaOutputs, news: MfaInputs, ctx: MfaContext = defaultContext) {
  if (olds.waiting === true) return { outs: (await createImpl({ ...news, userId: id }, ctx)).outs };
  const previous = previousOf(olds);
  const { st, rules, by } = await enforceOn({ ...news, userId: id }, previous, ctx, olds.enforcedBy ?? randomUUID());
  if (st.rules === undefined) {
    // The user's own rules suffice: take back the tool's rules an earlier run wrote.
    await ctx.client().writeUserMfa(id, previous, postureMarker(previous));
  }
  return { outs: outputs(news, previous, st.posture, rules, olds.enforcedAt ?? ctx.now().toISOString(), by) };
}

/**
 * Takes enforcement back: the user returns to the enrollment's posture (staged rules, or its
 * own), with the marker kept, so that a TOTP code alone never logs in while the user still
 * holds a credential; the enrollment's delete restores the options from before. A deleted user
 * counts as done. Rules another enforcement wrote since stay: it takes them back when it goes
 * (loosening them here would let a password alone in while that enforcement is in force).
 */
async function removeImpl(id: string, props: MfaOutputs, ctx: MfaContext = defaultContext): Promise<void> {
  if (props.waiting === true) return;
  const client = ctx.client();
  const user = await client.getUser(id);
  if (!user) return;
  const held = markerOf(user.marker);
  if (held?.enforcedBy !== undefined && held.enforcedBy !== props.enforcedBy) return;
  const previous = held?.previous ?? previousOf(props);
  const s = await postureSettings(props, client);
  let target: MfaOptions = previous;
  try {
    target = decidePosture(previous, "staged", s).write ?? previous;
  } catch {
    // The user's own rules let TOTP alone in: they are what the user had, and get them back.
  }
  await client.writeUserMfa(id, target, postureMarker(previous));
}

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);

/** {@link readImpl}, with error codes kept in messages (see withErrorCodes). */
export const read = withErrorCodes(readImpl);

/** {@link updateImpl}, with error codes kept in messages (see withErrorCodes). */
export const update = withErrorCodes(updateImpl);

/** {@link removeImpl}, with error codes kept in messages (see withErrorCodes). */
export const remove = withErrorCodes(removeImpl);
