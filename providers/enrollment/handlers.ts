/**
 * The logic behind the `TotpEnrollment` dynamic provider: one user's TOTP credential and the
 * message that delivers its secret, as plain functions built on the credential handlers
 * (Keystone), the enrollment message (mail.ts) and the retirement of replaced credentials
 * (../shared/retirement.ts). `resource.ts` wires them to the engine.
 *
 *   check   credential inputs as for TotpCredential, plus a valid address (no network)
 *   diff    user changed -> replace; new secret (address changed, rotation due, rotate request),
 *           resend trigger, labels, or retiring credentials past the grace window -> update
 *   create  PATCH the user's MFA rules (staged: a TOTP code alone never logs in), POST the
 *           credential (or take over its own leftover, see lib/ownership.ts), then send its message; if the message fails, DELETE the credential
 *           again and fail (the rules stay: they change no other login, and the rerun needs
 *           them): nothing half-done stays, the next run starts over. If the message may have
 *           gone (E_SMTP_UNCONFIRMED: sent, but no final reply), nothing is undone: the
 *           credential is recorded with `deliveryUnconfirmed`, and the next run sends the same
 *           secret again (a second copy of a working QR code beats a dead one)
 *   read    GET the credential (as TotpCredential); the delivery record is kept as it is
 *   update  as TotpCredential (PATCH in place, or POST a new credential beside the old one),
 *           then send the new secret; a new credential whose message fails is deleted again,
 *           so the old one stays current and keeps working (an in-place secret is PATCHed
 *           back; if that undoing fails too, the error says so). Past the grace window after
 *           the delivery (the window the rotation was given), DELETE each retiring credential;
 *           a failed DELETE is recorded in `retireFailed` (not thrown: the update's record of
 *           a message already sent must be kept) and tried again by the next run. A message
 *           that may have gone is not undone either: recorded in `deliveryUnconfirmed`, and
 *           while it is, every run sends the current secret again (and retires nothing) until
 *           one is confirmed
 *   delete  DELETE the current and every retiring credential (404 = done), then give the user
 *           back the MFA options it had before (from the marker written with the rules)
 *
 * A state written by 0.1 (a TotpCredential plus a TotpDelivery, moved here by an alias) has
 * no delivery record: its secret counts as delivered when it was issued, and the first update
 * records the new shape without sending anything, unless old credentials are still retiring
 * (0.1 may have failed to deliver that rotation): then the current secret is sent once more
 * before anything is retired.
 */

import { isUnconfirmedDelivery, withErrorCodes } from "../../lib/errors.ts";
import type { ConfigGetter } from "../../lib/keystone/auth.ts";
import { ownerId } from "../../lib/ownership.ts";
import { userKey } from "../../lib/users/csv.ts";
import { now as clockNow } from "../../lib/util/clock.ts";
import { defined, sameValue } from "../../lib/util/props.ts";
import * as credential from "../credential/handlers.ts";
import type { TotpCredentialInputs, TotpCredentialOutputs } from "../credential/types.ts";
import { errorRecord } from "../shared/error-record.ts";
import {
  carriedFailure,
  graceHoursOf,
  type RetireContext,
  type RetireFailure,
  retire,
  retireAfter as retireAfterSince,
  retireAtDelivery,
  retireDue,
} from "../shared/retirement.ts";
import { checkEmail, configureMail, defaultMailContext, type MailContext, sendEnrollment } from "./mail.ts";
import type { TotpEnrollmentInputs, TotpEnrollmentOutputs, UnconfirmedDelivery } from "./types.ts";

/** Where the handlers get Keystone, the mailer and the clock; tests substitute their own. */
export type EnrollmentContext = credential.HandlerContext & MailContext & RetireContext;

/** The default context: Keystone and mail from the stack configuration. */
export const defaultContext: EnrollmentContext = {
  ...credential.defaultContext,
  ...defaultMailContext,
  keystone: credential.defaultContext.client,
  now: () => clockNow(),
};

/** Receives the stack configuration: Keystone and SMTP settings never travel as inputs. */
export function configure(get: ConfigGetter): void {
  credential.configure(get);
  configureMail(get);
}

/**
 * The rotation trigger of an enrollment without an explicit one: its address, case-folded.
 * A new address gets a new secret in place (the old mailbox must not keep a working one); a
 * new spelling of the same address does not. Derived rather than stored: it would repeat the
 * address in the state of every user.
 */
export function addressTrigger(email: unknown): string {
  return `email:${String(email ?? "").toLowerCase()}`;
}

function triggerOf(o: { readonly rotationTrigger?: unknown; readonly email?: unknown }): unknown {
  return o.rotationTrigger ?? addressTrigger(o.email);
}

/** The credential's view of the inputs: the fleet program has just listed `userId`. */
function credentialInputs(i: TotpEnrollmentInputs): TotpCredentialInputs {
  return defined({
    userId: i.userId,
    // For messages only (`userChecked`: no lookup by name is made).
    userName: i.username,
    userDomain: i.domain,
    issuer: i.issuer,
    account: i.account,
    rotationTrigger: triggerOf(i),
    rotationDays: i.rotationDays,
    rotateRequest: i.rotateRequest,
    unmanaged: i.unmanaged,
    userChecked: true,
    authMethods: i.authMethods,
    allowTotpOnlyLogin: i.allowTotpOnlyLogin,
    replaceOwnRules: i.replaceOwnRules,
    previousMfa: i.previousMfa,
    // The resource's name is this key: a renamed resource of the same user is another owner.
    owner: ownerId(i.stack, "enrollment", userKey(i.domain, i.username)),
  });
}

/** The credential's view of the stored outputs (also of a state from an earlier version). */
function credentialOutputs(id: string, o: TotpEnrollmentOutputs): TotpCredentialOutputs {
  const raw = o as TotpEnrollmentOutputs & Partial<TotpCredentialOutputs>;
  return {
    ...raw,
    credentialId: o.credentialId ?? id,
    // A 0.1 state stored the trigger (`email:<address>`); this version derives the same value.
    rotationTrigger: triggerOf(o),
    resolvedUserId: raw.resolvedUserId ?? o.userId,
    accountLabel: o.account,
    otpauthUri: "",
    retiring: o.retiring ?? [],
    unmanagedIds: o.unmanagedIds ?? [],
  };
}

/**
 * When the current secret was delivered; for a state of an earlier version, when it was issued.
 * Undefined for a first enrollment whose delivery is unconfirmed (it was never delivered).
 */
function deliveredAtOf(o: Record<string, unknown>): string | undefined {
  const at = o.deliveredAt ?? (unconfirmedOf(o.deliveryUnconfirmed) ? undefined : o.rotatedAt);
  return typeof at === "string" ? at : undefined;
}

/** A recorded unconfirmed delivery, if `v` is one. */
export function unconfirmedOf(v: unknown): UnconfirmedDelivery | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const u = v as Record<string, unknown>;
  return typeof u.at === "string" && typeof u.error === "string"
    ? {
        at: u.at,
        code: typeof u.code === "string" ? u.code : "E_SMTP_UNCONFIRMED",
        error: u.error,
        reason: u.reason === "rotation" ? "rotation" : "new",
      }
    : undefined;
}

/** The record of a delivery that may have gone (no secret in it). */
function unconfirmedRecord(e: unknown, reason: "new" | "rotation", at: Date): UnconfirmedDelivery {
  return { at: at.toISOString(), ...errorRecord(e, "E_SMTP_UNCONFIRMED"), reason };
}

/**
 * The grace window of credentials already retiring: the one they were given (so that a
 * `rotate --grace-hours N` holds until they are deleted, whatever the next run's setting),
 * else the current setting.
 */
function pendingGrace(olds: Record<string, unknown>, news: Record<string, unknown>): unknown {
  const pending = Array.isArray(olds.retiring) && olds.retiring.length > 0;
  return pending && typeof olds.graceHours === "number" ? olds.graceHours : news.graceHours;
}

/** A state written by 0.1 (a TotpCredential adopted by the alias): it has no delivery record. */
function isEarlierShape(olds: { readonly email?: unknown }): boolean {
  return olds.email === undefined;
}

/** When this enrollment's retiring credentials may be deleted; undefined when none are. */
export function retireAfter(olds: Record<string, unknown>, graceHours: unknown): Date | undefined {
  return retireAfterSince(olds.retiring, deliveredAtOf(olds), graceHours);
}

/**
 * The first time at which the clock alone makes {@link diff} report a change: the scheduled
 * rotation of the secret or the end of the grace window of the credentials it retires.
 * Undefined when no time does. `operator/skip` reads it to know until when a run can change
 * nothing.
 */
export function dueAt(olds: Record<string, unknown>, news: Record<string, unknown>): Date | undefined {
  const withTrigger = (o: Record<string, unknown>) => ({ ...o, rotationTrigger: triggerOf(o) });
  return credential.earliest(
    credential.credentialDueAt(withTrigger(olds), withTrigger(news)),
    retireAfter(olds, pendingGrace(olds, news)),
  );
}

/**
 * Validates and normalises inputs without any network access.
 */
export function check(news: Record<string, unknown>): credential.CheckResult {
  const c = credential.check({ ...news, userChecked: undefined });
  const d = checkEmail(news);
  const failures = [...c.failures, ...d.failures];
  for (const key of ["username", "domain"] as const) {
    if (typeof news[key] !== "string" || news[key] === "")
      failures.push({ property: key, reason: `${key} is required` });
  }
  // graceHours is checked by the credential's check, with the same range.
  const inputs: Record<string, unknown> = { ...c.inputs, email: d.inputs.email };
  delete inputs.userChecked;
  return { inputs, failures };
}

/**
 * Compares the stored outputs with new inputs at time `at` (the clock decides scheduled
 * rotation and the end of grace windows).
 */
export function diff(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  at: Date = clockNow(),
): credential.DiffResult {
  const c = credential.diffCredential(
    { ...olds, rotationTrigger: triggerOf(olds) },
    { ...news, rotationTrigger: triggerOf(news) },
    at,
  );
  if (c.replaces.length > 0) return c;
  const due = retireAfter(olds, pendingGrace(olds, news));
  const changes =
    c.changes ||
    !sameValue(olds.resendTrigger, news.resendTrigger) ||
    // A new spelling of the same address (its case) is recorded; a new address is a rotation trigger.
    olds.email !== news.email ||
    (due !== undefined && at.getTime() >= due.getTime()) ||
    // A message that may not have arrived: every run sends it again until one is confirmed.
    unconfirmedOf(olds.deliveryUnconfirmed) !== undefined ||
    // A state of an earlier version is rewritten in the new shape once, sending nothing.
    olds.deliveredAt === undefined;
  return { changes, replaces: [], deleteBeforeReplace: false };
}

function outputs(
  i: TotpEnrollmentInputs,
  c: TotpCredentialOutputs,
  d: {
    deliveredAt: string | undefined;
    messageId?: string | undefined;
    retiring: readonly string[];
    retiredAt?: string | undefined;
    retireFailed?: RetireFailure | undefined;
    deliveryUnconfirmed?: UnconfirmedDelivery | undefined;
  },
): TotpEnrollmentOutputs {
  return defined({
    userId: i.userId,
    email: i.email,
    issuer: i.issuer,
    account: i.account,
    rotationTrigger: i.rotationTrigger,
    rotationDays: i.rotationDays,
    rotateRequest: c.rotateRequest,
    unmanaged: i.unmanaged,
    resendTrigger: i.resendTrigger,
    credentialId: c.credentialId,
    secret: c.secret,
    fingerprint: c.fingerprint,
    createdAt: c.createdAt,
    rotatedAt: c.rotatedAt,
    retiring: [...d.retiring],
    unmanagedIds: c.unmanagedIds.length > 0 ? [...c.unmanagedIds] : undefined,
    deliveredAt: d.deliveredAt,
    messageId: d.messageId,
    graceHours: graceHoursOf(i.graceHours),
    retiredAt: d.retiredAt,
    retireFailed: d.retireFailed,
    deliveryUnconfirmed: d.deliveryUnconfirmed,
    authMethods: i.authMethods,
    allowTotpOnlyLogin: i.allowTotpOnlyLogin,
    replaceOwnRules: i.replaceOwnRules,
    mfa: c.mfa,
    // Stored so that the delete finds this resource's own leftovers (its inputs are gone by then).
    owner: ownerId(i.stack, "enrollment", userKey(i.domain, i.username)),
  });
}

/**
 * Puts the previous secret back after a new one was written in place (an address change) but
 * could not be delivered: the state keeps the previous secret, so Keystone must too, or the
 * user would hold a secret that works nowhere and Keystone one that nobody holds. The next run
 * tries the change again.
 *
 * @returns undefined when it was put back; else what the operator must be told, added to the
 *   message's error (see {@link withUndoFailure}): the next run writes and sends a new secret,
 *   but until then the user's codes are refused.
 */
async function restore(
  user: string,
  before: TotpCredentialOutputs,
  ctx: EnrollmentContext,
): Promise<string | undefined> {
  try {
    await ctx.client().updateCredentialBlob(before.credentialId, before.secret);
    return undefined;
  } catch (e) {
    return (
      `the previous secret of ${user} could not be put back in credential ${before.credentialId} ` +
      `(${reasonOf(e)}): Keystone holds a secret nobody received, so ${user}'s codes are refused until one is ` +
      `delivered. Run 'up' again once mail works (it issues and sends a new secret), or 'npm run rotate -- ${user}'`
    );
  }
}

/**
 * Deletes a credential whose secret could not be delivered.
 *
 * @returns undefined when it is gone; else what the operator must be told, added to the
 *   message's error: the credential stays, unknown to the state, with a secret nobody holds.
 */
async function withdraw(user: string, id: string, ctx: EnrollmentContext): Promise<string | undefined> {
  try {
    await ctx.client().deleteCredential(id);
    return undefined;
  } catch (e) {
    // The next run finds it among the user's credentials that nobody manages (see `unmanaged`).
    return (
      `the undelivered credential ${id} of ${user} could not be deleted (${reasonOf(e)}): nobody holds its ` +
      "secret. The next 'up' retires it as a credential the stack does not manage (unmanagedCredentials " +
      `'remove', the default, after the grace window); under 'keep' delete it by hand: openstack credential delete ${id}`
    );
  }
}

/** An error's message, for the message it joins (which carries its own code). */
function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The message's error, saying also what could not be undone: the code stays the message's
 * (`E_SMTP`, exit 4), because the mail is what the operator must fix first and the run after
 * that repairs Keystone too; the text names the user and the credential left behind.
 */
function withUndoFailure(e: unknown, undo: string | undefined): unknown {
  if (undo === undefined) return e;
  if (e instanceof Error) {
    e.message = `${e.message}; and ${undo}`;
    return e;
  }
  return new Error(`${String(e)}; and ${undo}`);
}

async function send(
  i: TotpEnrollmentInputs,
  c: TotpCredentialOutputs,
  reason: "new" | "rotation",
  ctx: EnrollmentContext,
) {
  return sendEnrollment(
    {
      userKey: userKey(i.domain, i.username),
      username: i.username,
      domain: i.domain,
      email: i.email,
      displayName: i.displayName,
      issuer: i.issuer,
      account: i.account,
      secret: c.secret,
      fingerprint: c.fingerprint,
      reason,
      enforced: i.enforceMfa === true,
    },
    ctx,
  );
}

/**
 * Creates the credential and delivers its secret. A message that may have been delivered
 * (`E_SMTP_UNCONFIRMED`) is not an error here: the credential is kept and recorded with
 * `deliveryUnconfirmed` (a thrown create would lose it), and the next run sends it again.
 *
 * @throws {KeystoneError} when Keystone fails after retries (nothing was created).
 * @throws {MailError} `E_SMTP` / `E_OUTBOX` when the message fails; the credential is deleted
 *   again, so the next run enrolls the user from scratch (if that DELETE fails, the message
 *   also names the credential left behind).
 */
async function createImpl(
  inputs: TotpEnrollmentInputs,
  ctx: EnrollmentContext = defaultContext,
): Promise<{ id: string; outs: TotpEnrollmentOutputs }> {
  const { id, outs: c } = await credential.steps.create(credentialInputs(inputs), ctx);
  let sent: Awaited<ReturnType<typeof send>>;
  try {
    sent = await send(inputs, c, "new", ctx);
  } catch (e) {
    if (isUnconfirmedDelivery(e)) {
      // The user may hold this secret: withdrawing it would leave a dead QR code in the mailbox.
      // Nothing is retired on the strength of it either, and no delivery time is recorded, so
      // an MfaEnforcement keeps waiting.
      return {
        id,
        outs: outputs(inputs, c, {
          deliveredAt: undefined,
          retiring: c.retiring,
          deliveryUnconfirmed: unconfirmedRecord(e, "new", ctx.now()),
        }),
      };
    }
    throw withUndoFailure(e, await withdraw(userKey(inputs.domain, inputs.username), c.credentialId, ctx));
  }
  const at = ctx.now().toISOString();
  const retired = await retireAtDelivery(c.retiring, c.credentialId, inputs.graceHours, ctx);
  return { id, outs: outputs(inputs, c, { deliveredAt: at, messageId: sent.messageId, ...retired }) };
}

/**
 * Applies a change: a new secret (in place or a new credential) and its message, a resent
 * message, new labels, or the retirement of replaced credentials past the grace window.
 *
 * @throws {KeystoneError} when Keystone fails (the stored state stays as it was).
 * @throws {MailError} when the new secret's message fails; a new credential is deleted again
 *   and the old one stays current (a secret written in place is put back); when that undoing
 *   fails, the message says so too, naming the credential. A failed retirement is not thrown:
 *   it is recorded in `retireFailed`; nor is a message that may have been delivered
 *   (`E_SMTP_UNCONFIRMED`): the new secret is kept, recorded in `deliveryUnconfirmed`. A
 *   recorded one is sent again first; if that is refused, nothing is undone (the first copy
 *   may have arrived) and the error is thrown with the record kept.
 */
async function updateImpl(
  id: string,
  olds: TotpEnrollmentOutputs,
  news: TotpEnrollmentInputs,
  ctx: EnrollmentContext = defaultContext,
): Promise<{ outs: TotpEnrollmentOutputs }> {
  const before = credentialOutputs(id, olds);
  const { outs: c } = await credential.steps.update(id, before, credentialInputs(news), ctx);
  const newSecret = c.fingerprint !== before.fingerprint;
  const newCredential = c.credentialId !== before.credentialId;
  const earlier = isEarlierShape(olds);
  // 0.1 kept the resend trigger on its delivery: an adopted state has none, which is no request.
  const resend = !earlier && !sameValue(olds.resendTrigger, news.resendTrigger);
  // 0.1 may have left a rotation whose message failed (its delivery pending): its old credential
  // must not be retired on the strength of a message nobody can vouch for, so the current
  // secret is sent once more (at worst a second copy of the same QR code).
  const earlierPending = earlier && before.retiring.length > 0;
  // The same for a message of this version that may not have arrived.
  const pending = unconfirmedOf(olds.deliveryUnconfirmed);
  if (newSecret || resend || earlierPending || pending) {
    const reason =
      !newSecret && pending ? pending.reason : newSecret || c.createdAt !== c.rotatedAt ? "rotation" : "new";
    let sent: Awaited<ReturnType<typeof send>>;
    try {
      sent = await send(news, c, reason, ctx);
    } catch (e) {
      if (isUnconfirmedDelivery(e)) {
        // Keep what was done (a new credential, a secret written in place): the user may hold it.
        // The last confirmed delivery stays the grace window's start, and nothing is retired.
        return {
          outs: outputs(news, c, {
            deliveredAt: deliveredAtOf(olds as unknown as Record<string, unknown>),
            messageId: olds.messageId,
            retiring: c.retiring,
            retiredAt: olds.retiredAt,
            retireFailed: carriedFailure(olds.retireFailed, c.retiring),
            deliveryUnconfirmed: unconfirmedRecord(e, reason, ctx.now()),
          }),
        };
      }
      const user = userKey(news.domain, news.username);
      const undo = newCredential
        ? await withdraw(user, c.credentialId, ctx)
        : newSecret
          ? await restore(user, before, ctx)
          : undefined;
      throw withUndoFailure(e, undo);
    }
    // After the send: the grace window starts when the message went, not when the run began.
    const at = ctx.now().toISOString();
    const retired = await retireAtDelivery(c.retiring, c.credentialId, news.graceHours, ctx);
    return {
      outs: outputs(news, c, {
        deliveredAt: at,
        messageId: sent.messageId,
        ...(olds.retiredAt ? { retiredAt: olds.retiredAt } : {}),
        ...retired,
        // Nothing tried (a grace window): a failure of an earlier run stands until a retry.
        retireFailed: retired.retireFailed ?? carriedFailure(olds.retireFailed, retired.retiring),
      }),
    };
  }
  const at = ctx.now();
  const grace = pendingGrace(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  const deliveredAt = deliveredAtOf(olds as unknown as Record<string, unknown>) ?? at.toISOString();
  const tried = retireDue(c.retiring, deliveredAt, grace, at)
    ? await retire(c.retiring, c.credentialId, ctx)
    : undefined;
  const left = tried ? tried.left : c.retiring;
  const retiredAt = left.length < c.retiring.length ? at.toISOString() : olds.retiredAt;
  return {
    outs: outputs({ ...news, graceHours: grace as number | undefined }, c, {
      deliveredAt,
      messageId: olds.messageId,
      retiring: left,
      ...(retiredAt ? { retiredAt } : {}),
      retireFailed: tried ? tried.failure : carriedFailure(olds.retireFailed, left),
    }),
  };
}

/**
 * Reads the credential back (see TotpCredential's read: 404 = gone, a changed blob = drift);
 * the delivery record stays as stored.
 */
async function readImpl(
  id: string,
  props: TotpEnrollmentOutputs,
  ctx: EnrollmentContext = defaultContext,
): Promise<{ id?: string; props?: TotpEnrollmentOutputs }> {
  const r = await credential.steps.read(id, credentialOutputs(id, props), ctx);
  if (!r.id || !r.props) return {};
  const pending = unconfirmedOf(props.deliveryUnconfirmed);
  // A first enrollment whose delivery is unconfirmed has no delivery time, and gets none here.
  const d = deliveredAtOf(props as unknown as Record<string, unknown>) ?? (pending ? undefined : r.props.rotatedAt);
  return {
    id: r.id,
    props: outputs({ ...props, username: "", domain: "" }, r.props, {
      deliveredAt: d,
      messageId: props.messageId,
      retiring: r.props.retiring,
      ...(props.retiredAt ? { retiredAt: props.retiredAt } : {}),
      retireFailed: carriedFailure(props.retireFailed, r.props.retiring),
      deliveryUnconfirmed: pending,
    }),
  };
}

/** Deletes the current credential and every retiring one (404 counts as deleted). */
async function removeImpl(id: string, props?: TotpEnrollmentOutputs, ctx: EnrollmentContext = defaultContext) {
  // A state written before the owner was stored (0.3.0 and earlier) names no owner: any
  // enrollment's tag on this user is then taken for its own (one enrollment per user and stack).
  const owner = props?.owner;
  const isOwn = owner !== undefined ? (o: string) => o === owner : (o: string) => o.includes("/enrollment/");
  await credential.steps.remove(id, props ? credentialOutputs(id, props) : undefined, ctx, isOwn);
}

/** {@link createImpl}, its errors ready to cross the engine (see withErrorCodes). */
export const create = withErrorCodes(createImpl);
/** {@link readImpl}, its errors ready to cross the engine. */
export const read = withErrorCodes(readImpl);
/** {@link updateImpl}, its errors ready to cross the engine. */
export const update = withErrorCodes(updateImpl);
/** {@link removeImpl}, its errors ready to cross the engine. */
export const remove = withErrorCodes(removeImpl);
