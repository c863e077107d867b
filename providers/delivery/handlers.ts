/**
 * The logic behind the `TotpDelivery` dynamic provider: one enrollment message per issued
 * secret, sent exactly once.
 *
 *   check   the address is valid (no network)
 *   diff    new secret, new address, new credential or resend trigger -> replace, i.e. a new
 *           message; issuer, account or display name -> update, sending nothing
 *   create  compose the message (QR inline) and send it over SMTP, or write it to the outbox;
 *           a failure fails this resource only: the credential stays, delivery stays pending,
 *           and the next run sends it once
 *   read    nothing to read back: a sent message cannot be observed
 *   update  record the new labels; sends nothing
 *   delete  nothing: a message cannot be unsent
 */
import { ConfigError, KeystoneTotpError, withErrorCodes } from "../errors.ts";
import type { ConfigGetter } from "../keystone/auth.ts";
import { type MailConfig, resolveMailConfig } from "../mail/config.ts";
import { composeEnrollment } from "../mail/message.ts";
import { createMailer, type Mailer } from "../mail/send.ts";
import { defined } from "../util/props.ts";
import type { TotpDeliveryInputs, TotpDeliveryOutputs } from "./types.ts";

/** Properties whose change means a new message. */
const RESEND_KEYS = ["fingerprint", "credentialId", "resendTrigger"] as const;
/** Properties recorded without sending. */
const LABEL_KEYS = ["issuer", "account", "displayName"] as const;

/** Where the handlers get their mailer and clock; tests substitute their own. */
export interface DeliveryContext {
  readonly mailer: () => Mailer;
  readonly mailConfig: () => MailConfig;
  readonly now: () => Date;
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
  now: () => new Date(),
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

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/** Compares the delivery record with new inputs; only a new secret or address sends mail. */
export function diff(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
): { changes: boolean; replaces: string[]; deleteBeforeReplace: boolean } {
  const replaces: string[] = RESEND_KEYS.filter((k) => !same(olds[k], news[k]));
  if (String(olds.email ?? "").toLowerCase() !== String(news.email ?? "").toLowerCase()) replaces.push("email");
  const changed = LABEL_KEYS.filter((k) => !same(olds[k], news[k])) as string[];
  if (String(olds.email) !== String(news.email)) changed.push("email");
  return { changes: replaces.length > 0 || changed.length > 0, replaces, deleteBeforeReplace: false };
}

function record(
  i: TotpDeliveryInputs,
): Omit<TotpDeliveryOutputs, "deliveredTo" | "deliveredAt" | "transport" | "messageId" | "reason"> {
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
  inputs: TotpDeliveryInputs,
  ctx: DeliveryContext = defaultContext,
): Promise<{ id: string; outs: TotpDeliveryOutputs }> {
  if (!inputs.secret || !inputs.otpauthUri) {
    throw new ConfigError(`no secret to deliver for ${inputs.userKey}; run 'pulumi up' again`);
  }
  const reason = inputs.createdAt === inputs.rotatedAt ? "new" : "rotation";
  const config = ctx.mailConfig();
  const message = await composeEnrollment(
    {
      to: inputs.email,
      from: config.from,
      displayName: inputs.displayName,
      username: inputs.username,
      domain: inputs.domain,
      issuer: inputs.issuer,
      account: inputs.account,
      secret: inputs.secret,
      otpauthUri: inputs.otpauthUri,
      fingerprint: inputs.fingerprint,
      reason,
    },
    config.template,
  );
  let sent: Awaited<ReturnType<Mailer["send"]>>;
  try {
    sent = await ctx.mailer().send(message);
  } catch (e) {
    if (e instanceof KeystoneTotpError) {
      e.message = `enrollment message for ${inputs.userKey} to ${inputs.email} not delivered: ${e.message}`;
    }
    throw e;
  }
  const at = sent.at ?? ctx.now().toISOString();
  return {
    id: `${inputs.credentialId}/${inputs.fingerprint}`,
    outs: defined({
      ...record(inputs),
      deliveredTo: inputs.email,
      deliveredAt: at,
      transport: sent.transport,
      messageId: sent.messageId,
      reason,
    }),
  };
}

/** Records new labels without sending anything. */
export function update(
  _id: string,
  olds: TotpDeliveryOutputs,
  news: TotpDeliveryInputs,
): { outs: TotpDeliveryOutputs } {
  return {
    outs: defined({
      ...olds,
      ...record(news),
      deliveredTo: olds.deliveredTo,
      deliveredAt: olds.deliveredAt,
    }),
  };
}

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);
