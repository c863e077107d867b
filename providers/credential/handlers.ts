/**
 * The logic behind the `TotpCredential` dynamic provider, as plain functions: they run and
 * are tested without the Pulumi engine. `resource.ts` wires them to the engine.
 *
 *   check   validate and normalise inputs (no network: a bad secret fails `pulumi preview`
 *           before any request reaches Keystone)
 *   diff    user changed -> replace; secret or rotation trigger -> update (new secret);
 *           issuer or account -> update (new URI only); anything else, including the
 *           provider's own code -> no change
 *   create  POST /v3/credentials          (exactly once, see KeystoneClient.createTotpCredential)
 *   read    GET /v3/credentials/{id}      (404 -> gone; a changed blob -> drift)
 *   update  PATCH /v3/credentials/{id}    (new secret), or nothing for a label change
 *   delete  DELETE /v3/credentials/{id}   (404 counts as done)
 */
import { KeystoneTotpError, UserNotFoundError, withErrorCodes } from "../errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../keystone/auth.ts";
import { KeystoneClient } from "../keystone/client.ts";
import { fingerprint, generateSecret, normaliseSecret } from "../totp/secret.ts";
import { otpauthUri, validateLabel } from "../totp/uri.ts";
import { defined } from "../util/props.ts";
import { DEFAULT_DOMAIN, type TotpCredentialInputs, type TotpCredentialOutputs } from "./types.ts";

/** Properties whose change means a different Keystone user: the credential is replaced. */
const REPLACE_KEYS = ["userId", "userName", "userDomain"] as const;
/** Properties whose change issues a new secret. */
const ROTATE_KEYS = ["secret", "rotationTrigger"] as const;
/** Properties whose change only changes the URI. */
const LABEL_KEYS = ["issuer", "account"] as const;

/** A failed check of one property, as the engine reports it. */
export interface CheckFailure {
  readonly property: string;
  readonly reason: string;
}

/** Result of {@link check}. */
export interface CheckResult {
  readonly inputs: Record<string, unknown>;
  readonly failures: CheckFailure[];
}

/** Result of {@link diff}. */
export interface DiffResult {
  readonly changes: boolean;
  readonly replaces: string[];
  readonly deleteBeforeReplace: boolean;
}

/** Where the handlers get their Keystone client; tests substitute their own. */
export interface HandlerContext {
  readonly client: () => KeystoneClient;
  readonly now: () => Date;
}

let configGetter: ConfigGetter = () => undefined;

/** The default context: the process-wide client from the stack config and `OS_*`. */
export const defaultContext: HandlerContext = {
  client: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
  now: () => new Date(),
};

/**
 * Receives the stack configuration from the provider's `configure` hook, so that Keystone
 * credentials never travel as resource inputs.
 */
export function configure(get: ConfigGetter): void {
  configGetter = get;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;
}

/** The account label a user will see: explicit, else `name@domain`, else the user ID. */
export function accountLabel(i: TotpCredentialInputs): string {
  return str(i.account) ?? (i.userName ? `${i.userName}@${i.userDomain ?? DEFAULT_DOMAIN}` : (i.userId ?? ""));
}

/**
 * Validates and normalises inputs without any network access.
 *
 * A supplied secret is normalised (spaces removed, upper case, no padding) and refused unless
 * it is base32 of at least 128 bits. Failure reasons never contain the secret.
 */
export function check(news: Record<string, unknown>): CheckResult {
  const failures: CheckFailure[] = [];
  const inputs: Record<string, unknown> = { ...news };
  const userId = str(news.userId);
  const userName = str(news.userName);
  if (!userId && !userName) {
    failures.push({ property: "userId", reason: "give the user as userId, or as userName (and userDomain)" });
  }
  if (userId) inputs.userId = userId;
  if (userName) {
    inputs.userName = userName;
    inputs.userDomain = str(news.userDomain) ?? DEFAULT_DOMAIN;
  }
  for (const key of ["issuer", "account"] as const) {
    if (key === "account" && news.account === undefined) continue;
    try {
      inputs[key] = validateLabel(key, String(news[key] ?? ""));
    } catch (e) {
      failures.push({ property: key, reason: e instanceof KeystoneTotpError ? e.message : String(e) });
    }
  }
  if (news.secret !== undefined && news.secret !== null && news.secret !== "") {
    try {
      inputs.secret = normaliseSecret(String(news.secret));
    } catch (e) {
      failures.push({
        property: "secret",
        reason: e instanceof KeystoneTotpError ? `invalid supplied secret: ${e.message}` : "invalid supplied secret",
      });
    }
  } else {
    delete inputs.secret;
  }
  if (failures.length === 0) {
    try {
      validateLabel("account", accountLabel(inputs as unknown as TotpCredentialInputs));
    } catch (e) {
      failures.push({ property: "account", reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return { inputs, failures };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * Compares stored outputs with new inputs. Only the resource's own inputs count, so a change
 * of the provider's code (`__provider`) never shows as a change.
 */
export function diff(olds: Record<string, unknown>, news: Record<string, unknown>): DiffResult {
  const replaces = REPLACE_KEYS.filter((k) => !same(olds[k], news[k]));
  const changed = [...ROTATE_KEYS, ...LABEL_KEYS].filter((k) => {
    // The stored `secret` output always holds the live secret; only a supplied one is an input.
    if (k === "secret") return news.secret !== undefined && !same(olds.secret, news.secret);
    return !same(olds[k], news[k]);
  });
  return { changes: replaces.length > 0 || changed.length > 0, replaces: [...replaces], deleteBeforeReplace: false };
}

async function resolveUserId(ctx: HandlerContext, i: TotpCredentialInputs): Promise<string> {
  const client = ctx.client();
  // The fleet program has just resolved the ID from Keystone's user list: skip a GET per user.
  if (i.userId && i.userChecked === true) return i.userId;
  if (i.userId) {
    const u = await client.getUser(i.userId);
    if (!u) throw new UserNotFoundError([i.userId]);
    return u.id;
  }
  const domain = i.userDomain ?? DEFAULT_DOMAIN;
  const u = await client.findUser(i.userName ?? "", domain);
  if (!u) throw new UserNotFoundError([`${i.userName}@${domain}`]);
  return u.id;
}

function outputs(
  i: TotpCredentialInputs,
  credentialId: string,
  userId: string,
  secret: string,
  createdAt: string,
  rotatedAt: string,
): TotpCredentialOutputs {
  const account = accountLabel(i);
  return defined({
    ...i,
    credentialId,
    resolvedUserId: userId,
    accountLabel: account,
    secret,
    otpauthUri: otpauthUri({ issuer: i.issuer, account, secret }),
    fingerprint: fingerprint(secret),
    createdAt,
    rotatedAt,
  });
}

/**
 * Creates the credential: resolves the user, generates a secret unless one was supplied, and
 * POSTs it once.
 *
 * @throws {UserNotFoundError} when the user does not exist.
 * @throws {KeystoneError} when Keystone fails after retries.
 */
async function createImpl(
  inputs: TotpCredentialInputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ id: string; outs: TotpCredentialOutputs }> {
  const userId = await resolveUserId(ctx, inputs);
  const secret = inputs.secret ? normaliseSecret(inputs.secret) : generateSecret();
  const cred = await ctx.client().createTotpCredential(userId, secret);
  const at = ctx.now().toISOString();
  return { id: cred.id, outs: outputs(inputs, cred.id, userId, secret, at, at) };
}

/**
 * Reads the credential back. A missing credential returns no ID (the engine then drops the
 * resource on refresh); a blob changed outside Pulumi comes back as a changed secret and
 * fingerprint, i.e. as drift.
 */
async function readImpl(
  id: string,
  props: TotpCredentialOutputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ id?: string; props?: TotpCredentialOutputs }> {
  const cred = await ctx.client().getCredential(id);
  if (cred?.type !== "totp") return {};
  const changed = cred.blob !== props.secret;
  return {
    id,
    props: outputs(
      props,
      id,
      cred.userId,
      cred.blob,
      props.createdAt,
      changed ? ctx.now().toISOString() : props.rotatedAt,
    ),
  };
}

/**
 * Applies a change: a new secret (PATCH) when the supplied secret or rotation trigger changed,
 * otherwise only new labels.
 *
 * @throws {KeystoneError} `E_KEYSTONE_NOT_FOUND` when the credential was deleted meanwhile
 *   (run `pulumi refresh`, then `pulumi up`).
 */
async function updateImpl(
  id: string,
  olds: TotpCredentialOutputs,
  news: TotpCredentialInputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ outs: TotpCredentialOutputs }> {
  const rotate =
    !same(olds.rotationTrigger, news.rotationTrigger) || (news.secret !== undefined && news.secret !== olds.secret);
  if (!rotate) {
    return { outs: outputs(news, id, olds.resolvedUserId, olds.secret, olds.createdAt, olds.rotatedAt) };
  }
  const secret = news.secret ? normaliseSecret(news.secret) : generateSecret();
  await ctx.client().updateCredentialBlob(id, secret);
  return { outs: outputs(news, id, olds.resolvedUserId, secret, olds.createdAt, ctx.now().toISOString()) };
}

/** Deletes the credential; one already gone counts as deleted. */
async function removeImpl(
  id: string,
  _props?: TotpCredentialOutputs,
  ctx: HandlerContext = defaultContext,
): Promise<void> {
  await ctx.client().deleteCredential(id);
}

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);

/** {@link readImpl}, with error codes kept in messages (see withErrorCodes). */
export const read = withErrorCodes(readImpl);

/** {@link updateImpl}, with error codes kept in messages (see withErrorCodes). */
export const update = withErrorCodes(updateImpl);

/** {@link removeImpl}, with error codes kept in messages (see withErrorCodes). */
export const remove = withErrorCodes(removeImpl);
