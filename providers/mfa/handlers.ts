/**
 * The logic behind the `MfaEnforcement` dynamic provider: Keystone's per-user MFA rules.
 *
 *   create  GET /v3/users/{id} (remember the options the user had), then PATCH /v3/users/{id}
 *           options.multi_factor_auth_enabled = true, multi_factor_auth_rules = rules
 *   read    GET /v3/users/{id} (rules changed out of band show as drift; a deleted user is gone)
 *   update  PATCH with the new rules
 *   delete  PATCH the options back to what the user had before (null removes an option)
 *
 * @see https://docs.openstack.org/keystone/latest/admin/multi-factor-authentication.html
 */
import { withErrorCodes } from "../errors.ts";
import { type ConfigGetter, resolveKeystoneAuth } from "../keystone/auth.ts";
import { KeystoneClient } from "../keystone/client.ts";
import { defined, sameValue } from "../util/props.ts";

/** The rule that makes password + TOTP both required. */
export const PASSWORD_AND_TOTP: readonly (readonly string[])[] = [["password", "totp"]];

/** Resolved inputs. */
export interface MfaInputs {
  readonly userId: string;
  readonly userKey: string;
  readonly rules: readonly (readonly string[])[];
  /** When the enrollment this depends on was delivered (ISO 8601); enforcement waits for it. */
  readonly deliveredAt: string;
}

/** Outputs: what was set, and what to restore. */
export interface MfaOutputs extends MfaInputs {
  /** `multi_factor_auth_enabled` before enforcement (null when unset). */
  readonly previousEnabled: boolean | null;
  /** `multi_factor_auth_rules` before enforcement (null when unset). */
  readonly previousRules: unknown;
  readonly enforcedAt: string;
}

/** Where the handlers get their Keystone client; tests substitute their own. */
export interface MfaContext {
  readonly client: () => KeystoneClient;
  readonly now: () => Date;
}

let configGetter: ConfigGetter = () => undefined;

export const defaultContext: MfaContext = {
  client: () => KeystoneClient.shared(resolveKeystoneAuth({ config: configGetter })),
  now: () => new Date(),
};

/** Receives the stack configuration. */
export function configure(get: ConfigGetter): void {
  configGetter = get;
}

/** User changed -> replace (restore the old user, enforce on the new one); rules -> update. */
export function diff(olds: Record<string, unknown>, news: Record<string, unknown>) {
  const replaces = sameValue(olds.userId, news.userId) ? [] : ["userId"];
  const changes = replaces.length > 0 || !sameValue(olds.rules, news.rules);
  return { changes, replaces, deleteBeforeReplace: false };
}

/** Enforces the rules, remembering the user's previous options. */
async function createImpl(i: MfaInputs, ctx: MfaContext = defaultContext): Promise<{ id: string; outs: MfaOutputs }> {
  const client = ctx.client();
  const user = await client.getUser(i.userId);
  if (!user) throw new Error(`user ${i.userKey} (${i.userId}) no longer exists in Keystone`);
  const prevEnabled = user.options.multi_factor_auth_enabled;
  const prevRules = user.options.multi_factor_auth_rules;
  await client.updateUserOptions(i.userId, {
    multi_factor_auth_enabled: true,
    multi_factor_auth_rules: i.rules,
  });
  return {
    id: i.userId,
    outs: defined({
      ...i,
      previousEnabled: typeof prevEnabled === "boolean" ? prevEnabled : null,
      previousRules: prevRules ?? null,
      enforcedAt: ctx.now().toISOString(),
    }),
  };
}

/** Reads the user's current MFA options back. */
async function readImpl(id: string, props: MfaOutputs, ctx: MfaContext = defaultContext) {
  const user = await ctx.client().getUser(id);
  if (!user) return {};
  return {
    id,
    props: {
      ...props,
      rules: user.options.multi_factor_auth_enabled === true ? (user.options.multi_factor_auth_rules ?? []) : [],
    },
  };
}

/** Sets new rules. */
async function updateImpl(id: string, olds: MfaOutputs, news: MfaInputs, ctx: MfaContext = defaultContext) {
  await ctx.client().updateUserOptions(id, { multi_factor_auth_enabled: true, multi_factor_auth_rules: news.rules });
  return { outs: defined({ ...olds, ...news }) };
}

/** Restores the options the user had before enforcement. A deleted user counts as done. */
async function removeImpl(id: string, props: MfaOutputs, ctx: MfaContext = defaultContext): Promise<void> {
  const client = ctx.client();
  if (!(await client.getUser(id))) return;
  await client.updateUserOptions(id, {
    multi_factor_auth_enabled: props.previousEnabled,
    multi_factor_auth_rules: props.previousRules ?? null,
  });
}

/** {@link createImpl}, with error codes kept in messages (see withErrorCodes). */
export const create = withErrorCodes(createImpl);

/** {@link readImpl}, with error codes kept in messages (see withErrorCodes). */
export const read = withErrorCodes(readImpl);

/** {@link updateImpl}, with error codes kept in messages (see withErrorCodes). */
export const update = withErrorCodes(updateImpl);

/** {@link removeImpl}, with error codes kept in messages (see withErrorCodes). */
export const remove = withErrorCodes(removeImpl);
