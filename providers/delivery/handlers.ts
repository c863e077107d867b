/**
 * The logic behind the `TotpDelivery` dynamic provider: one enrollment message per issued
 * secret, sent exactly once.
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
import { ConfigError, isUnconfirmedDelivery, KeystoneTotpError, withErrorCodes } from "../../lib/errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { type MailConfig, resolveMailConfig } from "../../lib/mail/config.ts";
import { composeEnrollment } from "../../lib/mail/message.ts";
import { createMailer, type Mailer } from "../../lib/mail/send.ts";
import { otpauthUri } from "../../lib/totp/uri.ts";
import { now as clockNow, HOUR_MS } from "../../lib/util/clock.ts";
import { defined, sameValue } from "../../lib/util/props.ts";
import {
  DEFAULT_GRACE_HOURS,
  type DeliveredCredential,
  type RetireFailure,
  type TotpDeliveryInputs,
  type TotpDeliveryOutputs,
} from "./types.ts";

/** Properties whose change means a new message. */
const RESEND_KEYS = ["fingerprint", "credentialId", "resendTrigger"] as const;
/** Properties recorded without sending. */
const LABEL_KEYS = ["issuer", "account", "displayName"] as const;
/** Most characters of a failed retirement's error kept in the state (Keystone's text can be long). */
const MAX_RETIRE_ERROR_CHARS = 500;

/** Where the handlers get their mailer, Keystone client and clock; tests substitute their own. */
export interface DeliveryContext {
  readonly mailer: () => Mailer;
  readonly mailConfig: () => MailConfig;
  readonly now: () => Date;
  /** Keystone, for retiring replaced credentials. */
  readonly keystone?: () => KeystoneClient;
}

let configGetter: ConfigGetter = () => undefined;
let cached: { config: MailConfig; mailer: Mailer } | undefined;

function settings() {
  if (!cached) {
    const get = (k: string) => configGetter(`keystone-totp:${k}`);
    const rate = get("sendRatePerSecond");
    const config = resolveMailConfig(
      {
        smtpUrl: get("smtpUrl"),
        mailFrom: get("mailFrom"),
        outboxDir: get("outboxDir"),
        sendRatePerSecond: rate === undefined ? undefined : Number(rate),
        allowInsecureSmtp: /^(1|true|yes)$/i.test(get("allowInsecureSmtp") ?? ""),
        templateFile: get("mailTemplate"),
        smtpCaFile: get("smtpCaFile"),
      },
      process.cwd(),
    );
    cached = { config, mailer: createMailer(config) };
  }
  return cached;
}

/** The default context: mail settings from the stack config given to `configure`. */
export const defaultContext: DeliveryContext = {
  mailer: () => settings().mailer,
  mailConfig: () => settings().config,
  now: () => clockNow(),
  keystone: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
};

/** Receives the stack configuration (smtpUrl stays out of resource inputs). */
export function configure(get: ConfigGetter): void {
  configGetter = get;
  cached?.mailer.close();
  cached = undefined;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/u;

/** Validates the address and the labels. */
export function check(news: Record<string, unknown>): {
  inputs: Record<string, unknown>;
  failures: { property: string; reason: string }[];
} {
  const failures: { property: string; reason: string }[] = [];
  const email = typeof news.email === "string" ? news.email.trim() : "";
  if (!EMAIL.test(email) || email.length > 254) {
    failures.push({ property: "email", reason: `'${email}' is not a valid email address` });
  }
  return { inputs: { ...news, email }, failures };
}

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

/** A grace window as given, or {@link DEFAULT_GRACE_HOURS} when absent or invalid. */
export function graceHoursOf(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : DEFAULT_GRACE_HOURS;
}

/**
 * When the credentials retiring with this delivery may be deleted: its delivery time plus
 * the grace window. Undefined when nothing is pending.
 */
export function retireAfter(olds: Record<string, unknown>, graceHours: unknown): Date | undefined {
  const pending = Array.isArray(olds.retiring) ? olds.retiring : [];
  const t = typeof olds.deliveredAt === "string" ? Date.parse(olds.deliveredAt) : Number.NaN;
  if (pending.length === 0 || Number.isNaN(t)) return undefined;
  return new Date(t + graceHoursOf(graceHours) * HOUR_MS);
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
  const due = retireAfter(olds, news.graceHours);
  if (due && at.getTime() >= due.getTime()) changed.push("retiring");
  return { changes: replaces.length > 0 || changed.length > 0, replaces, deleteBeforeReplace: false };
}

/** What {@link retire} did. */
export interface RetireResult {
  /** The credentials that could not be deleted: still retiring, tried again by the next run. */
  readonly left: string[];
  /** Why they could not, to record in the outputs; absent when every deletion succeeded. */
  readonly failure?: RetireFailure;
}

/**
 * Deletes retiring credentials (never `current`). Those that could not be deleted stay
 * retiring, to try again on the next run, and the failure is returned rather than thrown: a
 * message already sent must not be sent again because Keystone failed afterwards, and a
 * thrown update would lose the record of it. The caller records the failure in the outputs,
 * where the operator commands and `status` find it.
 */
export async function retire(
  ids: readonly string[],
  current: string,
  ctx: Pick<DeliveryContext, "keystone" | "now">,
): Promise<RetireResult> {
  const left: string[] = [];
  let first: unknown;
  const client = ctx.keystone?.();
  for (const id of ids) {
    if (id === current) continue;
    try {
      if (!client) throw new ConfigError("no Keystone client to retire credentials with");
      await client.deleteCredential(id);
    } catch (e) {
      left.push(id);
      first ??= e;
    }
  }
  if (left.length === 0) return { left };
  return { left, failure: retireFailure(left, first, ctx.now()) };
}

/** The record of a failed retirement: which credentials, when, and the error (no secret in it). */
function retireFailure(ids: readonly string[], e: unknown, at: Date): RetireFailure {
  const code = e instanceof KeystoneTotpError ? e.code : undefined;
  const text = e instanceof Error ? e.message : String(e);
  // The code travels apart; a message that went through withErrorCodes carries it in front too.
  const error = (code ? text.replace(`[${code}] `, "") : text).slice(0, MAX_RETIRE_ERROR_CHARS);
  return { ids: [...ids], at: at.toISOString(), ...(code ? { code } : {}), error };
}

/**
 * A failure recorded earlier, kept while no retirement was tried: only for the credentials
 * still retiring (one deleted meanwhile, e.g. by hand, is no longer a failure).
 */
export function carriedFailure(old: RetireFailure | undefined, retiring: readonly string[]): RetireFailure | undefined {
  if (!old || !Array.isArray(old.ids)) return undefined;
  const ids = old.ids.filter((id) => retiring.includes(id));
  return ids.length > 0 ? { ...old, ids } : undefined;
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

/** What {@link sendEnrollment} needs to compose and send one enrollment message. */
export type EnrollmentMessage = Pick<
  TotpDeliveryInputs,
  "userKey" | "username" | "domain" | "email" | "displayName" | "issuer" | "account" | "secret" | "fingerprint"
> & {
  readonly reason: "new" | "rotation";
  /** Whether password + TOTP will be required once this message is delivered (what it tells the user). */
  readonly enforced?: boolean;
};

/**
 * Composes the enrollment message (QR inline) and sends it over SMTP, or writes it to the
 * outbox.
 *
 * @throws {MailError} `E_SMTP` / `E_OUTBOX`, naming the user and the address;
 *   `E_SMTP_UNCONFIRMED` when the message may have been delivered (see `smtpFailureOutcome`).
 */
export async function sendEnrollment(
  m: EnrollmentMessage,
  ctx: Pick<DeliveryContext, "mailer" | "mailConfig">,
): Promise<Awaited<ReturnType<Mailer["send"]>>> {
  const config = ctx.mailConfig();
  const message = await composeEnrollment(
    {
      to: m.email,
      from: config.from,
      displayName: m.displayName,
      username: m.username,
      domain: m.domain,
      issuer: m.issuer,
      account: m.account,
      secret: m.secret,
      otpauthUri: otpauthUri({ issuer: m.issuer, account: m.account, secret: m.secret }),
      fingerprint: m.fingerprint,
      reason: m.reason,
      enforced: m.enforced === true,
    },
    config.template,
  );
  try {
    return await ctx.mailer().send(message);
  } catch (e) {
    if (e instanceof KeystoneTotpError) {
      const outcome = isUnconfirmedDelivery(e) ? "not confirmed" : "not delivered";
      e.message = `enrollment message for ${m.userKey} to ${m.email} ${outcome}: ${e.message}`;
    }
    throw e;
  }
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
 * Right after a delivery: deletes `pending` when the grace window is 0, else keeps them for a
 * later run. Returns what is left, when everything went the time, and when something could
 * not be deleted the failure (see {@link retire}).
 */
export async function retireAtDelivery(
  pending: readonly string[],
  current: string,
  graceHours: unknown,
  ctx: Pick<DeliveryContext, "keystone" | "now">,
): Promise<{ retiring: string[]; retiredAt?: string; retireFailed?: RetireFailure }> {
  if (pending.length === 0 || graceHoursOf(graceHours) > 0) return { retiring: [...pending] };
  const { left, failure } = await retire(pending, current, ctx);
  if (failure) return { retiring: left, retireFailed: failure };
  return { retiring: left, retiredAt: ctx.now().toISOString() };
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
  const due = retireAfter(olds as unknown as Record<string, unknown>, news.graceHours);
  const pending = olds.retiring ?? [];
  const tried = due && at.getTime() >= due.getTime() ? await retire(pending, news.credentialId, ctx) : undefined;
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
