/**
 * The logic behind the `TotpDelivery` dynamic provider of 0.1: one enrollment message per
 * issued secret, sent exactly once. 0.1 only: kept so that a stack 0.1 wrote can be upgraded
 * (its states name `keystone-totp-runtime/delivery.cjs`, which loads this module; see
 * providers/runtime/provider.cjs). Nothing else imports this folder (`npm run lint` checks);
 * the message and the retirement are the enrollment's (../../enrollment/mail.ts,
 * ../../shared/retirement.ts).
 *
 *   check   the address is valid (no network)
 *   diff    new secret, new address, new credential or resend trigger -> replace, i.e. a new
 *           message; issuer, account or display name -> update, sending nothing; retiring
 *           credentials whose grace window has passed -> update
 *   create  compose the message (QR inline) and send it over SMTP, or write it to the outbox;
 *           with a grace window of 0, then DELETE /v3/credentials/{id} for each retiring one
 *           (otherwise they stay valid, so the user can log in while the message is in transit);
 *           a failure fails this resource only: the credential stays, delivery stays pending,
 *           and the next run sends it once
 *   read    nothing to read back: a sent message cannot be observed
 *   update  record the new labels; sends nothing; past the grace window,
 *           DELETE /v3/credentials/{id} for each retiring credential (404 counts as done); a
 *           failure is recorded in `retireFailed` and tried again by the next run
 *   delete  nothing: a message cannot be unsent
 */
import { ConfigError, withErrorCodes } from "../../../lib/errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../../lib/keystone/client.ts";
import { otpauthUri } from "../../../lib/totp/uri.ts";
import { now as clockNow } from "../../../lib/util/clock.ts";
import { defined, sameValue } from "../../../lib/util/props.ts";
import {
  checkEmail,
  configureMail,
  defaultMailContext,
  type MailContext,
  sendEnrollment,
} from "../../enrollment/mail.ts";
import {
  carriedFailure,
  graceHoursOf,
  type RetireContext,
  retire,
  retireAtDelivery,
  retireDue,
} from "../../shared/retirement.ts";
import type { DeliveredCredential, TotpDeliveryInputs, TotpDeliveryOutputs } from "./types.ts";

/** Properties whose change means a new message. */
const RESEND_KEYS = ["fingerprint", "credentialId", "resendTrigger"] as const;
/** Properties recorded without sending. */
const LABEL_KEYS = ["issuer", "account", "displayName"] as const;

/** Where the handlers get their mailer, Keystone client and clock; tests substitute their own. */
export type DeliveryContext = MailContext & RetireContext;

let configGetter: ConfigGetter = () => undefined;

/** The default context: mail and Keystone settings from the stack config given to `configure`. */
export const defaultContext: DeliveryContext = {
  ...defaultMailContext,
  now: () => clockNow(),
  keystone: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
};

/** Receives the stack configuration (smtpUrl stays out of resource inputs). */
export function configure(get: ConfigGetter): void {
  configGetter = get;
  configureMail(get);
}

/** Validates the address (the enrollment's check of it). */
export const check = checkEmail;

function isPacked(v: unknown): v is DeliveredCredential {
  return typeof v === "object" && v !== null && typeof (v as { id?: unknown }).id === "string";
}

/**
 * The flat view of the inputs: the packed `credential` (one secret input) spread into
 * `credentialId`, `fingerprint`, `secret`, `reason`, `retiring`, and the URI rebuilt from
 * the secret and the labels (the same URI the credential made). Inputs given flat pass as
 * they are.
 */
export function flatInputs<T extends Record<string, unknown> | TotpDeliveryInputs>(raw: T): T & TotpDeliveryInputs {
  const i = raw as TotpDeliveryInputs & Record<string, unknown>;
  const c = i.credential;
  if (!isPacked(c)) return i as T & TotpDeliveryInputs;
  return {
    ...i,
    credentialId: c.id,
    fingerprint: c.fingerprint,
    secret: c.secret,
    reason: c.reason,
    retiring: c.retiring,
    otpauthUri: otpauthUri({ issuer: String(i.issuer), account: String(i.account), secret: c.secret }),
  } as T & TotpDeliveryInputs;
}

/**
 * Compares the delivery record with new inputs at time `at`; only a new secret or address
 * sends mail, and retiring credentials past their grace window are deleted by an update.
 */
export function diff(
  olds: Record<string, unknown>,
  rawNews: Record<string, unknown>,
  at: Date = clockNow(),
): { changes: boolean; replaces: string[]; deleteBeforeReplace: boolean } {
  const news = flatInputs(rawNews);
  const replaces: string[] = RESEND_KEYS.filter((k) => !sameValue(olds[k], news[k]));
  // A packed credential still unknown (preview, while its credential changes) may be a new secret.
  if ("credential" in rawNews && !isPacked(rawNews.credential)) replaces.push("credential");
  if (String(olds.email ?? "").toLowerCase() !== String(news.email ?? "").toLowerCase()) replaces.push("email");
  const changed = LABEL_KEYS.filter((k) => !sameValue(olds[k], news[k])) as string[];
  if (String(olds.email) !== String(news.email)) changed.push("email");
  if (retireDue(olds.retiring, olds.deliveredAt, news.graceHours, at)) changed.push("retiring");
  return { changes: replaces.length > 0 || changed.length > 0, replaces, deleteBeforeReplace: false };
}

function record(
  i: TotpDeliveryInputs,
): Omit<
  TotpDeliveryOutputs,
  | "deliveredTo"
  | "deliveredAt"
  | "transport"
  | "messageId"
  | "reason"
  | "retiring"
  | "graceHours"
  | "retiredAt"
  | "retireFailed"
> {
  return {
    userKey: i.userKey,
    email: i.email,
    displayName: i.displayName,
    issuer: i.issuer,
    account: i.account,
    credentialId: i.credentialId,
    fingerprint: i.fingerprint,
    resendTrigger: i.resendTrigger,
  };
}

/**
 * Sends the enrollment message.
 *
 * @throws {MailError} `E_SMTP` / `E_OUTBOX`, naming the user and address; nothing is recorded,
 *   so the next run tries again.
 */
async function createImpl(
  raw: TotpDeliveryInputs,
  ctx: DeliveryContext = defaultContext,
): Promise<{ id: string; outs: TotpDeliveryOutputs }> {
  const inputs = flatInputs(raw);
  if (!inputs.secret || !inputs.otpauthUri) {
    throw new ConfigError(`no secret to deliver for ${inputs.userKey}; run 'pulumi up' again`);
  }
  const reason: "new" | "rotation" =
    inputs.reason === "rotation" || (inputs.reason === undefined && inputs.createdAt !== inputs.rotatedAt)
      ? "rotation"
      : "new";
  const sent = await sendEnrollment({ ...inputs, reason }, ctx);
  // The run's clock (not the mailer's), so that grace windows follow KEYSTONE_TOTP_NOW too.
  const at = ctx.now().toISOString();
  const graceHours = graceHoursOf(inputs.graceHours);
  const pending = (inputs.retiring ?? []).filter((id) => id !== inputs.credentialId);
  const retired = await retireAtDelivery(pending, inputs.credentialId, graceHours, ctx);
  return {
    id: `${inputs.credentialId}/${inputs.fingerprint}`,
    outs: defined({
      ...record(inputs),
      deliveredTo: inputs.email,
      deliveredAt: at,
      transport: sent.transport,
      messageId: sent.messageId,
      reason,
      ...retired,
      graceHours,
    }),
  };
}

/**
 * Records new labels without sending anything; past the grace window, deletes the retiring
 * credentials.
 */
async function updateImpl(
  _id: string,
  olds: TotpDeliveryOutputs,
  rawNews: TotpDeliveryInputs,
  ctx: DeliveryContext = defaultContext,
): Promise<{ outs: TotpDeliveryOutputs }> {
  const news = flatInputs(rawNews);
  const at = ctx.now();
  const pending = olds.retiring ?? [];
  const due = retireDue(olds.retiring, olds.deliveredAt, news.graceHours, at);
  const tried = due ? await retire(pending, news.credentialId, ctx) : undefined;
  const left = tried ? tried.left : [...pending];
  return {
    outs: defined({
      ...olds,
      ...record(news),
      deliveredTo: olds.deliveredTo,
      deliveredAt: olds.deliveredAt,
      retiring: left,
      graceHours: graceHoursOf(news.graceHours),
      retiredAt: pending.length > 0 && left.length === 0 ? at.toISOString() : olds.retiredAt,
      retireFailed: tried ? tried.failure : carriedFailure(olds.retireFailed, left),
    }),
  };
}

/** {@link updateImpl}, with error codes kept in messages (see withErrorCodes). */
export const update = withErrorCodes(updateImpl);

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);
