/**
 * The logic behind the `TotpEnrollment` dynamic provider: one user's TOTP credential and the
 * message that delivers its secret, as plain functions built on the credential handlers
 * (Keystone) and the delivery handlers (mail). `resource.ts` wires them to the engine.
 *
 *   check   credential inputs as for TotpCredential, plus a valid address (no network)
 *   diff    user changed -> replace; new secret (address changed, rotation due, rotate request),
 *           resend trigger, labels, or retiring credentials past the grace window -> update
 *   create  PATCH the user's MFA rules (staged: a TOTP code alone never logs in), POST the
 *           credential, then send its message; if the message fails, DELETE the credential
 *           again and fail (the rules stay: they change no other login, and the rerun needs
 *           them): nothing half-done stays, the next run starts over
 *   read    GET the credential (as TotpCredential); the delivery record is kept as it is
 *   update  as TotpCredential (PATCH in place, or POST a new credential beside the old one),
 *           then send the new secret; a new credential whose message fails is deleted again,
 *           so the old one stays current and keeps working (an in-place secret is PATCHed
 *           back). Past the grace window after the delivery (the window the rotation was
 *           given), DELETE each retiring credential
 *   delete  DELETE the current and every retiring credential (404 = done), then give the user
 *           back the MFA options it had before (from the marker written with the rules)
 *
 * A state written by 0.1 (a TotpCredential plus a TotpDelivery, moved here by an alias) has
 * no delivery record: its secret counts as delivered when it was issued, and the first update
 * records the new shape without sending anything, unless old credentials are still retiring
 * (0.1 may have failed to deliver that rotation): then the current secret is sent once more
 * before anything is retired.
 */
import * as credential from "../credential/handlers.ts";
import type { TotpCredentialInputs, TotpCredentialOutputs } from "../credential/types.ts";
import * as delivery from "../delivery/handlers.ts";
import { MAX_GRACE_HOURS } from "../delivery/types.ts";
import { withErrorCodes } from "../errors.ts";
import type { ConfigGetter } from "../keystone/auth.ts";
import { userKey } from "../users/csv.ts";
import { now as clockNow } from "../util/clock.ts";
import { defined, sameValue } from "../util/props.ts";
import type { TotpEnrollmentInputs, TotpEnrollmentOutputs } from "./types.ts";

/** Where the handlers get Keystone, the mailer and the clock; tests substitute their own. */
export type EnrollmentContext = credential.HandlerContext & delivery.DeliveryContext;

/** The default context: Keystone and mail from the stack configuration. */
export const defaultContext: EnrollmentContext = {
  ...credential.defaultContext,
  ...delivery.defaultContext,
  now: () => clockNow(),
};

/** Receives the stack configuration: Keystone and SMTP settings never travel as inputs. */
export function configure(get: ConfigGetter): void {
  credential.configure(get);
  delivery.configure(get);
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

/** When the current secret was delivered; for a state of an earlier version, when it was issued. */
function deliveredAtOf(o: Record<string, unknown>): string | undefined {
  const at = o.deliveredAt ?? o.rotatedAt;
  return typeof at === "string" ? at : undefined;
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
  return delivery.retireAfter({ retiring: olds.retiring, deliveredAt: deliveredAtOf(olds) }, graceHours);
}

/**
 * Validates and normalises inputs without any network access.
 */
export function check(news: Record<string, unknown>): credential.CheckResult {
  const c = credential.check({ ...news, userChecked: undefined });
  const d = delivery.check(news);
  const failures = [...c.failures, ...d.failures];
  for (const key of ["username", "domain"] as const) {
    if (typeof news[key] !== "string" || news[key] === "")
      failures.push({ property: key, reason: `${key} is required` });
  }
  const g = news.graceHours;
  if (g !== undefined && (typeof g !== "number" || !Number.isFinite(g) || g < 0 || g > MAX_GRACE_HOURS)) {
    failures.push({ property: "graceHours", reason: `graceHours must be a number of hours, 0..${MAX_GRACE_HOURS}` });
  }
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
  const c = credential.diff(
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
    // A state of an earlier version is rewritten in the new shape once, sending nothing.
    olds.deliveredAt === undefined;
  return { changes, replaces: [], deleteBeforeReplace: false };
}

function outputs(
  i: TotpEnrollmentInputs,
  c: TotpCredentialOutputs,
  d: { deliveredAt: string; messageId?: string | undefined; retiring: readonly string[]; retiredAt?: string },
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
    graceHours: delivery.graceHoursOf(i.graceHours),
    retiredAt: d.retiredAt,
    authMethods: i.authMethods,
    allowTotpOnlyLogin: i.allowTotpOnlyLogin,
    replaceOwnRules: i.replaceOwnRules,
    mfa: c.mfa,
  });
}

/**
 * Puts the previous secret back after a new one was written in place (an address change) but
 * could not be delivered: the state keeps the previous secret, so Keystone must too, or the
 * user would hold a secret that works nowhere and Keystone one that nobody holds. The next run
 * tries the change again. A failure here is left for that run, which writes a new secret anyway.
 */
async function restore(before: TotpCredentialOutputs, ctx: EnrollmentContext): Promise<void> {
  try {
    await ctx.client().updateCredentialBlob(before.credentialId, before.secret);
  } catch {
    // see above
  }
}

/** Deletes a credential whose secret could not be delivered; a failure leaves an unmanaged one. */
async function withdraw(id: string, ctx: EnrollmentContext): Promise<void> {
  try {
    await ctx.client().deleteCredential(id);
  } catch {
    // The next run finds it among the user's credentials that nobody manages (see `unmanaged`).
  }
}

async function send(
  i: TotpEnrollmentInputs,
  c: TotpCredentialOutputs,
  reason: "new" | "rotation",
  ctx: EnrollmentContext,
) {
  return delivery.sendEnrollment(
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
 * Creates the credential and delivers its secret.
 *
 * @throws {KeystoneError} when Keystone fails after retries (nothing was created).
 * @throws {MailError} `E_SMTP` / `E_OUTBOX` when the message fails; the credential is deleted
 *   again, so the next run enrolls the user from scratch.
 */
async function createImpl(
  inputs: TotpEnrollmentInputs,
  ctx: EnrollmentContext = defaultContext,
): Promise<{ id: string; outs: TotpEnrollmentOutputs }> {
  const { id, outs: c } = await credential.create(credentialInputs(inputs), ctx);
  let sent: Awaited<ReturnType<typeof send>>;
  try {
    sent = await send(inputs, c, "new", ctx);
  } catch (e) {
    await withdraw(c.credentialId, ctx);
    throw e;
  }
  const at = ctx.now().toISOString();
  const retired = await delivery.retireAtDelivery(c.retiring, c.credentialId, inputs.graceHours, ctx);
  return { id, outs: outputs(inputs, c, { deliveredAt: at, messageId: sent.messageId, ...retired }) };
}

/**
 * Applies a change: a new secret (in place or a new credential) and its message, a resent
 * message, new labels, or the retirement of replaced credentials past the grace window.
 *
 * @throws {KeystoneError} when Keystone fails (the stored state stays as it was).
 * @throws {MailError} when the new secret's message fails; a new credential is deleted again
 *   and the old one stays current.
 */
async function updateImpl(
  id: string,
  olds: TotpEnrollmentOutputs,
  news: TotpEnrollmentInputs,
  ctx: EnrollmentContext = defaultContext,
): Promise<{ outs: TotpEnrollmentOutputs }> {
  const before = credentialOutputs(id, olds);
  const { outs: c } = await credential.update(id, before, credentialInputs(news), ctx);
  const newSecret = c.fingerprint !== before.fingerprint;
  const newCredential = c.credentialId !== before.credentialId;
  const earlier = isEarlierShape(olds);
  // 0.1 kept the resend trigger on its delivery: an adopted state has none, which is no request.
  const resend = !earlier && !sameValue(olds.resendTrigger, news.resendTrigger);
  // 0.1 may have left a rotation whose message failed (its delivery pending): its old credential
  // must not be retired on the strength of a message nobody can vouch for, so the current
  // secret is sent once more (at worst a second copy of the same QR code).
  const unconfirmed = earlier && before.retiring.length > 0;
  if (newSecret || resend || unconfirmed) {
    let sent: Awaited<ReturnType<typeof send>>;
    try {
      sent = await send(news, c, newSecret || c.createdAt !== c.rotatedAt ? "rotation" : "new", ctx);
    } catch (e) {
      if (newCredential) await withdraw(c.credentialId, ctx);
      else if (newSecret) await restore(before, ctx);
      throw e;
    }
    // After the send: the grace window starts when the message went, not when the run began.
    const at = ctx.now().toISOString();
    const retired = await delivery.retireAtDelivery(c.retiring, c.credentialId, news.graceHours, ctx);
    return {
      outs: outputs(news, c, {
        deliveredAt: at,
        messageId: sent.messageId,
        ...(olds.retiredAt ? { retiredAt: olds.retiredAt } : {}),
        ...retired,
      }),
    };
  }
  const at = ctx.now();
  const grace = pendingGrace(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  const deliveredAt = deliveredAtOf(olds as unknown as Record<string, unknown>) ?? at.toISOString();
  const due = retireAfter({ retiring: c.retiring, deliveredAt }, grace);
  const left =
    due && at.getTime() >= due.getTime() ? await delivery.retire(c.retiring, c.credentialId, ctx) : c.retiring;
  const retiredAt = left.length < c.retiring.length ? at.toISOString() : olds.retiredAt;
  return {
    outs: outputs({ ...news, graceHours: grace as number | undefined }, c, {
      deliveredAt,
      messageId: olds.messageId,
      retiring: left,
      ...(retiredAt ? { retiredAt } : {}),
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
  const r = await credential.read(id, credentialOutputs(id, props), ctx);
  if (!r.id || !r.props) return {};
  const d = deliveredAtOf(props as unknown as Record<string, unknown>) ?? r.props.rotatedAt;
  return {
    id: r.id,
    props: outputs({ ...props, username: "", domain: "" }, r.props, {
      deliveredAt: d,
      messageId: props.messageId,
      retiring: r.props.retiring,
      ...(props.retiredAt ? { retiredAt: props.retiredAt } : {}),
    }),
  };
}

/** Deletes the current credential and every retiring one (404 counts as deleted). */
async function removeImpl(id: string, props?: TotpEnrollmentOutputs, ctx: EnrollmentContext = defaultContext) {
  await credential.remove(id, props ? credentialOutputs(id, props) : undefined, ctx);
}

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);
/** {@link readImpl}, with error codes kept in messages. */
export const read = withErrorCodes(readImpl);
/** {@link updateImpl}, with error codes kept in messages. */
export const update = withErrorCodes(updateImpl);
/** {@link removeImpl}, with error codes kept in messages. */
export const remove = withErrorCodes(removeImpl);
