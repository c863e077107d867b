/**
 * `MfaEnforcement`: Keystone MFA rules on one user, as a Pulumi dynamic resource.
 *
 * Provider method -> Keystone call (the logic is in `handlers.ts`):
 *   create -> GET /v3/users/{id}, PATCH /v3/users/{id} {options: {multi_factor_auth_*}}
 *   read   -> GET /v3/users/{id}
 *   update -> PATCH /v3/users/{id}
 *   delete -> PATCH /v3/users/{id} restoring the options the user had before
 */
import * as pulumi from "@pulumi/pulumi";
import type * as Handlers from "./handlers.ts";

/** Arguments of {@link MfaEnforcement}. */
export interface MfaEnforcementArgs {
  readonly userId: pulumi.Input<string>;
  readonly userKey: pulumi.Input<string>;
  /** Default `[["password","totp"]]`. */
  readonly rules?: pulumi.Input<readonly (readonly string[])[]>;
  /** The delivery this waits for: pass the delivery's `deliveredAt`. */
  readonly deliveredAt: pulumi.Input<string>;
}

/**
 * Loads the handler module in the provider process, by package name from the working
 * directory (no machine path is serialised). Short and unannotated: this text is stored twice
 * in every resource's state.
 */
const h = async () =>
  (await import(
    (
      await import("node:url")
    ).pathToFileURL(
      (await import("node:module")).createRequire(`${process.cwd()}/x`).resolve("keystone-totp/mfa-handlers"),
    ).href
  )) as typeof Handlers;

const provider: pulumi.dynamic.ResourceProvider = {
  configure: async (r) => (await h()).configure((k) => r.config.get(k)),
  diff: async (_i, o, n) => (await h()).diff(o, n),
  create: async (i) => (await h()).create(i),
  read: async (i, p) => (await h()).read(i, p),
  update: async (i, o, n) => (await h()).update(i, o, n),
  delete: async (i, p) => (await h()).remove(i, p),
};

/** Password + TOTP required for one user, restored on delete. */
export class MfaEnforcement extends pulumi.dynamic.Resource {
  declare readonly enforcedAt: pulumi.Output<string>;
  declare readonly previousEnabled: pulumi.Output<boolean | null>;

  constructor(name: string, args: MfaEnforcementArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      provider,
      name,
      {
        ...args,
        rules: args.rules ?? [["password", "totp"]],
        previousEnabled: undefined,
        previousRules: undefined,
        enforcedAt: undefined,
      },
      opts,
      "keystone-totp",
      "MfaEnforcement",
    );
  }
}
