/**
 * The logic behind the `TotpCredential` dynamic provider, as plain functions: they run and
 * are tested without the Pulumi engine. `resource.ts` wires them to the engine.
 *
 *   check   validate and normalise inputs (no network: a bad secret fails `pulumi preview`
 *           before any request reaches Keystone)
 *   diff    user changed -> replace; supplied secret or rotation trigger -> update (new secret
 *           in place); rotation due (rotationDays) or a new rotate request -> update (new
 *           credential beside the old one); issuer or account -> update (new URI only);
 *           anything else, including the provider's own code -> no change
 *   create  GET /v3/credentials?user_id=..&type=totp (what the user already holds: credentials
 *           Pulumi does not manage, an own leftover), PATCH /v3/users/{id} (the staged MFA
 *           rules and their marker, BEFORE the credential exists: a TOTP code alone never logs
 *           the user in; see mfa/apply.ts), then POST /v3/credentials (exactly once, see
 *           KeystoneClient.createTotpCredential), tagged with the resource's owner; or, when the
 *           user holds a leftover of this resource's own (a create whose answer was lost, see
 *           lib/ownership.ts), GET /v3/credentials/{id} and adopt it instead of a POST
 *   read    GET /v3/credentials/{id}      (404 -> gone; a changed blob -> drift; no blob, as
 *           on Keystone 30 -> the recorded secret, fingerprint and rotatedAt are kept);
 *           GET /v3/users/{id}            (options that let a TOTP code alone in -> drift)
 *   update  in place: PATCH /v3/credentials/{id};
 *           rotation: GET /v3/credentials?user_id=..&type=totp, POST /v3/credentials (or adopt
 *           an own leftover from that list, as at create); the old
 *           credential is listed in `retiring` and stays valid until the delivery of the new
 *           one is older than the grace window (see shared/retirement.ts), so nobody is locked
 *           out by a message still in transit
 *           a state without a posture (0.1, 0.2) or changed posture settings: PATCH the rules;
 *           used on its own (not by an enrollment, which retires after its message): once
 *           `graceHours` have passed since the rotation, DELETE /v3/credentials/{id} for each
 *           retiring credential (it cannot see a delivery, so it counts from the rotation)
 *   delete  DELETE /v3/credentials/{id}   for the current and every retiring one (404 = done),
 *           GET /v3/credentials?user_id=..&type=totp (DELETE the resource's own leftovers),
 *           then GET + PATCH /v3/users/{id} giving back the options the user had before,
 *           unless a credential another keystone-totp resource created is still there (a
 *           renamed user's new enrollment, a TotpCredential beside an enrollment, another
 *           stack): its rules stay, for that resource to give back when it goes
 */

import { KeystoneTotpError, UserNotFoundError, withErrorCodes } from "../../lib/errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { type Credential, KeystoneClient, type KeystoneUser } from "../../lib/keystone/client.ts";
import {
  applyPosture,
  type MfaState,
  POSTURE_KEYS,
  postureSettings,
  releasePosture,
  storedPosture,
} from "../../lib/mfa/apply.ts";
import { admitsTotpAlone, NO_OPTIONS, optionsOf, previousOptions } from "../../lib/mfa/posture.ts";
import { credentialTag, ownerId, planAdoption, tagOf } from "../../lib/ownership.ts";
import { fingerprint, generateSecret, normaliseSecret } from "../../lib/totp/secret.ts";
import { otpauthUri, validateLabel } from "../../lib/totp/uri.ts";
import { now as clockNow, DAY_MS } from "../../lib/util/clock.ts";
import { defined, sameValue } from "../../lib/util/props.ts";
import { MAX_GRACE_HOURS, retire, retireAfter, retireDue } from "../shared/retirement.ts";
import {
  DEFAULT_DOMAIN,
  DEFAULT_UNMANAGED,
  MAX_ROTATION_DAYS,
  type TotpCredentialInputs,
  type TotpCredentialOutputs,
} from "./types.ts";

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

/** Where the handlers get their Keystone client and clock; tests substitute their own. */
export interface HandlerContext {
  readonly client: () => KeystoneClient;
  readonly now: () => Date;
  /**
   * The TOTP credentials a user holds in Keystone before this create (with their blobs and
   * tags: an own leftover is adopted from them). Absent (the default): one
   * `GET /v3/credentials?user_id=...&type=totp` per created user. Tests substitute a list.
   */
  readonly existing?: (userId: string) => Promise<readonly Credential[]>;
}

let configGetter: ConfigGetter = () => undefined;

/**
 * The default context: the process-wide client from the stack config and `OS_*`.
 *
 * It has no fleet-wide credential list: each create lists its own user's credentials. Keystone
 * decrypts every credential a list returns (5.3 ms of its CPU each, measured on Keystone 22), so
 * a cloud-wide list per provider process made a run that enrolls a few users in a large cloud
 * pay for every credential of the cloud; a list per created user costs one request (about
 * 120 ms of Keystone CPU on a Keystone without token cache, measured) whatever the cloud's size.
 */
export const defaultContext: HandlerContext = {
  client: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
  now: () => clockNow(),
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
  if (news.rotationDays !== undefined && news.rotationDays !== null) {
    const d = news.rotationDays;
    if (typeof d !== "number" || !Number.isInteger(d) || d < 0 || d > MAX_ROTATION_DAYS) {
      failures.push({
        property: "rotationDays",
        reason: `rotationDays must be a whole number of days, 0..${MAX_ROTATION_DAYS}`,
      });
    }
  } else {
    delete inputs.rotationDays;
  }
  const g = news.graceHours;
  if (g !== undefined && g !== null && (typeof g !== "number" || !Number.isFinite(g) || g < 0 || g > MAX_GRACE_HOURS)) {
    failures.push({ property: "graceHours", reason: `graceHours must be a number of hours, 0..${MAX_GRACE_HOURS}` });
  }
  if (news.unmanaged !== undefined && news.unmanaged !== "remove" && news.unmanaged !== "keep") {
    failures.push({ property: "unmanaged", reason: "unmanaged must be 'remove' or 'keep'" });
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

/**
 * When the current secret falls due for scheduled rotation: `rotatedAt` plus `rotationDays`.
 * Undefined when rotation is not scheduled (no or zero `rotationDays`, or a supplied secret,
 * which only its owner can change).
 */
export function nextRotation(
  rotatedAt: unknown,
  rotationDays: unknown,
  suppliedSecret: unknown = undefined,
): Date | undefined {
  if (typeof rotationDays !== "number" || !(rotationDays > 0) || suppliedSecret !== undefined) return undefined;
  const t = typeof rotatedAt === "string" ? Date.parse(rotatedAt) : Number.NaN;
  return Number.isNaN(t) ? undefined : new Date(t + rotationDays * DAY_MS);
}

/**
 * The earlier of two times; undefined only when both are. What the `dueAt` functions of the
 * handlers combine their clocks with.
 */
export function earliest(a: Date | undefined, b: Date | undefined): Date | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.getTime() <= b.getTime() ? a : b;
}

/**
 * The first time at which the clock alone makes {@link diffCredential} report a change of a
 * resource whose stored outputs are `olds` and inputs `news`: its scheduled rotation.
 * Undefined when no time does. `operator/skip` reads it to know until when a run can change
 * nothing (any other reason for a change is in the inputs or the outputs, not in the clock).
 */
export function credentialDueAt(olds: Record<string, unknown>, news: Record<string, unknown>): Date | undefined {
  return nextRotation(olds.rotatedAt, news.rotationDays, news.secret);
}

/**
 * {@link credentialDueAt} of a `TotpCredential` on its own, with the end of the grace window
 * of the credentials it retires: the two clocks {@link diff} reads.
 */
export function dueAt(olds: Record<string, unknown>, news: Record<string, unknown>): Date | undefined {
  return earliest(
    credentialDueAt(olds, news),
    retireAfter(olds.retiring, olds.rotatedAt, olds.graceHours ?? news.graceHours),
  );
}

/** Why a graceful rotation (a new credential beside the old one) is due; undefined if none. */
export function rotationReason(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  at: Date,
): "requested" | "scheduled" | undefined {
  if (
    typeof news.rotateRequest === "string" &&
    news.rotateRequest !== "" &&
    news.rotateRequest !== olds.rotateRequest
  ) {
    return "requested";
  }
  const due = credentialDueAt(olds, news);
  return due && at.getTime() >= due.getTime() ? "scheduled" : undefined;
}

/**
 * Compares stored outputs with new inputs at time `at` (the clock decides scheduled
 * rotation). Only the resource's own inputs count, so a change of the provider's code
 * (`__provider`) never shows as a change.
 */
export function diffCredential(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  at: Date = clockNow(),
): DiffResult {
  const replaces = REPLACE_KEYS.filter((k) => !sameValue(olds[k], news[k]));
  const changed = [...ROTATE_KEYS, ...LABEL_KEYS].filter((k) => {
    // The stored `secret` output always holds the live secret; only a supplied one is an input.
    if (k === "secret") return news.secret !== undefined && !sameValue(olds.secret, news.secret);
    return !sameValue(olds[k], news[k]);
  });
  const rotate = replaces.length === 0 && rotationReason(olds, news, at) !== undefined;
  return {
    changes: replaces.length > 0 || changed.length > 0 || rotate || postureDue(olds, news),
    replaces: [...replaces],
    deleteBeforeReplace: false,
  };
}

/** The user, and the Keystone record when one was read (not when the caller just listed it). */
async function resolveUser(
  ctx: HandlerContext,
  i: TotpCredentialInputs,
): Promise<{ id: string; user: KeystoneUser | undefined }> {
  const client = ctx.client();
  // The fleet program has just resolved the ID from Keystone's user list: skip a GET per user.
  if (i.userId && i.userChecked === true) return { id: i.userId, user: undefined };
  if (i.userId) {
    const u = await client.getUser(i.userId);
    if (!u) throw new UserNotFoundError([i.userId]);
    return { id: u.id, user: u };
  }
  const domain = i.userDomain ?? DEFAULT_DOMAIN;
  const u = await client.findUser(i.userName ?? "", domain);
  if (!u) throw new UserNotFoundError([`${i.userName}@${domain}`]);
  return { id: u.id, user: u };
}

/**
 * Refuses the account the tool logs in with, before anything is written. Staged rules on it
 * would, on Keystone 30 (`require_mfa_for_sensitive_account_actions`), make Keystone refuse the
 * operator's every later MFA change, its own rules included, without a fresh code of its own.
 * The token is the one every request already uses: no extra request.
 *
 * @throws {KeystoneTotpError} `E_OPERATOR_SELF`.
 * @see docs/operator-account.md
 */
async function refuseOperator(ctx: HandlerContext, i: TotpCredentialInputs, userId: string): Promise<void> {
  const me = await ctx.client().whoami();
  if (me.userId !== userId) return;
  throw new KeystoneTotpError(
    "E_OPERATOR_SELF",
    `user ${userLabel(i, userId)} is the account keystone-totp logs in with: it is not enrolled, because its own ` +
      "MFA rules would make Keystone 2026.2 (30) and later refuse this account's every later MFA change. " +
      "Enroll it from another administrator account, or leave it out (docs/operator-account.md).",
  );
}

/** How errors name the user: `name@domain` when known, else the ID. */
function userLabel(i: TotpCredentialInputs, userId: string): string {
  return i.userName ? `${i.userName}@${i.userDomain ?? DEFAULT_DOMAIN}` : userId;
}

/**
 * The user's options before the tool: as the fleet program just listed them (`userChecked`),
 * else from the user record (read now when not at hand). The marker, when present, holds them.
 */
async function previousOf(ctx: HandlerContext, i: TotpCredentialInputs, userId: string, user?: KeystoneUser) {
  if (i.userChecked === true) return i.previousMfa ?? NO_OPTIONS;
  const u = user ?? (await ctx.client().getUser(userId));
  if (!u) throw new UserNotFoundError([userLabel(i, userId)]);
  return previousOptions(u);
}

/**
 * Whether the user's posture must be (re)applied at this update: a state written before
 * postures existed, changed posture settings, or a refresh that found the user open to a TOTP
 * code alone.
 */
export function postureDue(olds: Record<string, unknown>, news: Record<string, unknown>): boolean {
  const mfa = olds.mfa as MfaState | undefined;
  if (mfa === undefined) return true;
  if (POSTURE_KEYS.some((k) => !sameValue(olds[k], news[k]))) return true;
  return mfa.posture === "open" && news.allowTotpOnlyLogin !== true;
}

function outputs(
  i: TotpCredentialInputs,
  credentialId: string,
  userId: string,
  secret: string,
  createdAt: string,
  rotatedAt: string,
  others: { readonly retiring: readonly string[]; readonly unmanagedIds: readonly string[] },
  mfa: MfaState | undefined,
): TotpCredentialOutputs {
  const account = accountLabel(i);
  // What the program observed is used once, at the write; keeping it would only grow the state.
  const { previousMfa: _observed, ...kept } = i;
  return defined({
    ...kept,
    mfa,
    retireAfter: retireAfter(others.retiring, rotatedAt, i.graceHours)?.toISOString(),
    credentialId,
    retiring: [...others.retiring],
    unmanagedIds: [...others.unmanagedIds],
    resolvedUserId: userId,
    accountLabel: account,
    secret,
    otpauthUri: otpauthUri({ issuer: i.issuer, account, secret }),
    fingerprint: fingerprint(secret),
    createdAt,
    rotatedAt,
  });
}

/** Whether a blob Keystone returned is a secret a user can be sent (Keystone does not check blobs). */
function usableSecret(blob: string): boolean {
  try {
    return normaliseSecret(blob) === blob;
  } catch {
    return false;
  }
}

/** The owner of the credentials this resource creates (see lib/ownership.ts). */
function ownerOf(i: TotpCredentialInputs, userId: string): string {
  return i.owner ?? ownerId(i.stack, "credential", userLabel(i, userId));
}

/**
 * Creates the credential: resolves the user, generates a secret unless one was supplied, and
 * POSTs it once, tagged with the resource's owner. When the user already holds a credential
 * of this owner (a leftover of an earlier create whose answer was lost: Keystone stopped, the
 * run was killed), that one is adopted instead, with its secret: the user keeps one
 * credential, and a QR code already mailed for it keeps working.
 *
 * @throws {UserNotFoundError} when the user does not exist.
 * @throws {KeystoneError} when Keystone fails after retries.
 */
async function createImpl(
  inputs: TotpCredentialInputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ id: string; outs: TotpCredentialOutputs }> {
  const { id: userId, user } = await resolveUser(ctx, inputs);
  await refuseOperator(ctx, inputs, userId);
  // Anything the user already holds was not created by this resource, except its own
  // leftovers (adopted below). It stays valid until the new credential is delivered.
  const held = ctx.existing ? await ctx.existing(userId) : await ctx.client().listTotpCredentials(userId);
  const supplied = inputs.secret ? normaliseSecret(inputs.secret) : undefined;
  const owner = ownerOf(inputs, userId);
  const plan = planAdoption(held, owner, new Set(), usableSecret, supplied);
  // The rules first: from the moment the credential exists, a TOTP code alone must not log the
  // user in. Rules without a credential change no login, so a failure after this is harmless.
  // (A leftover already exists: the run that created it wrote the rules before it.)
  const settings = await postureSettings(inputs, ctx.client());
  const previous = await previousOf(ctx, inputs, userId, user);
  const mfa = storedPosture(
    await applyPosture(ctx.client(), { id: userId, key: userLabel(inputs, userId) }, previous, "staged", settings),
  );
  const at = ctx.now();
  // The list may be older than this create: the leftover is read again before it is taken.
  const found = plan.adopt ? await ctx.client().getCredential(plan.adopt.id) : undefined;
  const adopted =
    found && found.type === "totp" && found.blob !== undefined && found.blob === plan.adopt?.blob ? found : undefined;
  const secret = adopted?.blob ?? supplied ?? generateSecret();
  const cred = adopted ?? (await ctx.client().createTotpCredential(userId, secret, credentialTag(owner, at)));
  const leftovers = new Set(plan.leftovers);
  if (plan.adopt && !adopted) leftovers.add(plan.adopt.id);
  const others = held.map((c) => c.id).filter((id) => id !== cred.id);
  const remove = (inputs.unmanaged ?? DEFAULT_UNMANAGED) === "remove";
  return {
    id: cred.id,
    outs: outputs(
      inputs,
      cred.id,
      userId,
      secret,
      at.toISOString(),
      at.toISOString(),
      {
        // Own leftovers nobody was sent are retired whatever the policy for others' credentials.
        retiring: others.filter((id) => remove || leftovers.has(id)),
        unmanagedIds: others.filter((id) => !remove && !leftovers.has(id)),
      },
      mfa,
    ),
  };
}

/**
 * Reads the credential back. A missing credential returns no ID (the engine then drops the
 * resource on refresh); a blob changed outside Pulumi comes back as a changed secret and
 * fingerprint, i.e. as drift. Where Keystone does not return blobs (30 and later) the secret,
 * its fingerprint and `rotatedAt` are kept as recorded: what cannot be seen is never
 * overwritten (an empty secret would otherwise be recorded, and every refresh would move the
 * rotation and grace clocks).
 */
async function readImpl(
  id: string,
  props: TotpCredentialOutputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ id?: string; props?: TotpCredentialOutputs }> {
  const current = props.credentialId ?? id;
  const cred = await ctx.client().getCredential(current);
  if (cred?.type !== "totp") return {};
  const seen = cred.blob ?? props.secret;
  const changed = seen !== props.secret;
  // Retiring credentials deleted meanwhile (by the delivery, or by hand) are forgotten.
  let retiring = props.retiring ?? [];
  let unmanagedIds = props.unmanagedIds ?? [];
  if (retiring.length > 0 || unmanagedIds.length > 0) {
    const live = new Set((await ctx.client().listTotpCredentials(cred.userId)).map((c) => c.id));
    retiring = retiring.filter((r) => live.has(r));
    unmanagedIds = unmanagedIds.filter((r) => live.has(r));
  }
  return {
    id,
    props: outputs(
      props,
      current,
      cred.userId,
      seen,
      props.createdAt,
      changed ? ctx.now().toISOString() : props.rotatedAt,
      { retiring, unmanagedIds },
      await readPosture(ctx, props, cred.userId),
    ),
  };
}

/**
 * The diff of `TotpCredential` used on its own: {@link diffCredential}, plus an update once
 * the grace window of retiring credentials has passed (nothing else would ever delete them).
 */
export function diff(olds: Record<string, unknown>, news: Record<string, unknown>, at: Date = clockNow()): DiffResult {
  const d = diffCredential(olds, news, at);
  if (d.changes) return d;
  // A standalone credential's window counts from the rotation (it cannot see a delivery).
  const due = dueAt(olds, news);
  return due && at.getTime() >= due.getTime() ? { ...d, changes: true } : d;
}

/**
 * The posture as Keystone has it now: a user whose options let a TOTP code alone in (rules
 * removed by hand, say) is recorded as `open`, which the next update repairs.
 */
async function readPosture(ctx: HandlerContext, props: TotpCredentialOutputs, userId: string) {
  const mfa = props.mfa;
  if (!mfa || mfa.posture === "open") return mfa;
  const user = await ctx.client().getUser(userId);
  if (!user) return mfa;
  const settings = await postureSettings(props, ctx.client());
  return admitsTotpAlone(optionsOf(user.options), settings.methods) ? { ...mfa, posture: "open" as const } : mfa;
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
  const at = ctx.now();
  const current = olds.credentialId ?? id;
  // The last rotate request applied is remembered, so that the same request never rotates twice.
  const inputs: TotpCredentialInputs = { ...news, rotateRequest: news.rotateRequest ?? olds.rotateRequest };
  const kept = { retiring: olds.retiring ?? [], unmanagedIds: olds.unmanagedIds ?? [] };
  // The posture before anything else: a rotation below adds a credential.
  const mfa = postureDue(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>)
    ? storedPosture(
        await applyPosture(
          ctx.client(),
          { id: olds.resolvedUserId, key: userLabel(news, olds.resolvedUserId) },
          await previousOf(ctx, news, olds.resolvedUserId),
          "staged",
          await postureSettings(news, ctx.client()),
        ),
      )
    : olds.mfa;
  const inPlace =
    !sameValue(olds.rotationTrigger, news.rotationTrigger) ||
    (news.secret !== undefined && news.secret !== olds.secret);
  if (inPlace) {
    const secret = news.secret ? normaliseSecret(news.secret) : generateSecret();
    await ctx.client().updateCredentialBlob(current, secret);
    return {
      outs: outputs(inputs, current, olds.resolvedUserId, secret, olds.createdAt, at.toISOString(), kept, mfa),
    };
  }
  if (rotationReason(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>, at)) {
    return { outs: await rotate(olds, inputs, current, at, ctx, mfa) };
  }
  return {
    outs: outputs(inputs, current, olds.resolvedUserId, olds.secret, olds.createdAt, olds.rotatedAt, kept, mfa),
  };
}

/**
 * Graceful rotation: a new credential beside the old one. The old one, and any others the
 * user still holds that this resource made (or, under the `remove` policy, that nobody
 * manages), are handed on as `retiring`: the delivery deletes them once the new secret has
 * been delivered and the grace window has passed.
 */
async function rotate(
  olds: TotpCredentialOutputs,
  inputs: TotpCredentialInputs,
  current: string,
  at: Date,
  ctx: HandlerContext,
  mfa: MfaState | undefined,
): Promise<TotpCredentialOutputs> {
  const client = ctx.client();
  const userId = olds.resolvedUserId;
  const held = await client.listTotpCredentials(userId);
  const managed = new Set([current, ...(olds.retiring ?? [])]);
  const owner = ownerOf(inputs, userId);
  // A rotation whose answer was lost left a credential of this owner that the state does not
  // know: it becomes the new one (its secret is sent now) instead of a second new one.
  const plan = planAdoption(held, owner, managed, usableSecret);
  // planAdoption adopts only a credential whose secret Keystone returned.
  const secret = plan.adopt?.blob ?? generateSecret();
  const cred = plan.adopt ?? (await client.createTotpCredential(userId, secret, credentialTag(owner, at)));
  const removeUnmanaged = (inputs.unmanaged ?? DEFAULT_UNMANAGED) === "remove";
  const ours = new Set([...managed, ...plan.leftovers]);
  const others = held.map((h) => h.id).filter((h) => h !== cred.id);
  return outputs(
    inputs,
    cred.id,
    userId,
    secret,
    olds.createdAt,
    at.toISOString(),
    {
      retiring: others.filter((h) => removeUnmanaged || ours.has(h)),
      unmanagedIds: others.filter((h) => !removeUnmanaged && !ours.has(h)),
    },
    mfa,
  );
}

/**
 * Deletes the current credential and every retiring one (one already gone counts as deleted),
 * THEN gives the user back the options it had before the tool (see mfa/apply.ts): released
 * earlier, the rules would let a TOTP code alone in while a credential still exists.
 * Unmanaged credentials left alone under the `keep` policy stay. The options are NOT given
 * back while the user still holds a credential tagged by another keystone-totp resource:
 * that resource's secret was sent to the user, and without the rules it would log them in
 * with a TOTP code alone (the same user under a new name in the CSV is a new enrollment,
 * created before the old one is deleted). The rules and their marker stay for that resource.
 */
async function removeImpl(
  id: string,
  props?: TotpCredentialOutputs,
  ctx: HandlerContext = defaultContext,
  isOwn?: (owner: string) => boolean,
): Promise<void> {
  const ids = new Set([props?.credentialId ?? id, ...(props?.retiring ?? [])]);
  for (const c of ids) await ctx.client().deleteCredential(c);
  const userId = props?.resolvedUserId;
  if (!userId) return;
  // A create or rotation whose answer was lost (a crash) left a credential of this resource that
  // the state does not name; the next create or rotation would have taken it over, but the
  // resource is going. Deleted before the options are given back: with them, its secret (which
  // a message may have carried) could log the user in with a TOTP code alone.
  const own = isOwn ?? (props.owner !== undefined || props.stack !== undefined ? exactOwner(props, userId) : undefined);
  let othersHeld = false;
  for (const c of await ctx.client().listTotpCredentials(userId)) {
    const tag = tagOf(c.marker);
    if (ids.has(c.id) || !tag) continue;
    if (own?.(tag.owner)) await ctx.client().deleteCredential(c.id);
    else othersHeld = true;
  }
  if (othersHeld) return;
  await releasePosture(ctx.client(), userId, props.mfa);
}

/** Matches exactly the owner the resource with these outputs tags its credentials with. */
function exactOwner(props: TotpCredentialOutputs, userId: string): (owner: string) => boolean {
  const owner = ownerOf(props, userId);
  return (o) => o === owner;
}

/** {@link createImpl}, its errors ready to cross the engine (see withErrorCodes). */
export const create = withErrorCodes(createImpl);

/** {@link readImpl}, its errors ready to cross the engine (see withErrorCodes). */
export const read = withErrorCodes(readImpl);

/**
 * The credential's steps as the enrollment (in the same process, below the engine boundary)
 * takes them: plain functions whose errors keep their class and code. The update leaves
 * retiring credentials to the enrollment, which deletes them only after its message was delivered.
 */
export const steps = { create: createImpl, read: readImpl, update: updateImpl, remove: removeImpl } as const;

/**
 * `TotpCredential` used on its own: {@link updateImpl}, then, once `graceHours` have passed
 * since the rotation, DELETE each retiring credential. Nothing else would: without this,
 * every replaced secret of a standalone credential stayed valid for ever.
 *
 * @throws {KeystoneError} when a DELETE fails: the state keeps them as retiring (nothing else
 *   was recorded by this update that could be lost), and the next run tries again.
 */
async function updateStandalone(
  id: string,
  olds: TotpCredentialOutputs,
  news: TotpCredentialInputs,
  ctx: HandlerContext = defaultContext,
): Promise<{ outs: TotpCredentialOutputs }> {
  const { outs } = await updateImpl(id, olds, news, ctx);
  if (!retireDue(outs.retiring, outs.rotatedAt, news.graceHours, ctx.now())) return { outs };
  await retire(outs.retiring, outs.credentialId, { keystone: ctx.client, now: ctx.now }, { onFailure: "throw" });
  const { retireAfter: _done, ...rest } = outs;
  return { outs: { ...rest, retiring: [] } };
}

/** {@link updateStandalone}, its errors ready to cross the engine (see withErrorCodes). */
export const update = withErrorCodes(updateStandalone);

/** {@link removeImpl}, its errors ready to cross the engine (see withErrorCodes). */
export const remove = withErrorCodes(removeImpl);
