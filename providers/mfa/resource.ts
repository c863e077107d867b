/**
 * `MfaEnforcement`: Keystone MFA rules on one user, as a Pulumi dynamic resource.
 *
 * Provider method -> Keystone call (the logic is in `handlers.ts`):
 *   create -> GET /v3/users/{id}, PATCH /v3/users/{id} {options: {multi_factor_auth_*}}
 *   read   -> GET /v3/users/{id}
 *   update -> PATCH /v3/users/{id}
 *   delete -> PATCH /v3/users/{id} restoring the options the user had before
 */
import { createRequire } from "node:module";
import * as pulumi from "@pulumi/pulumi";

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
 * The one provider instance, from the keystone-totp-runtime package in node_modules
 * (providers/runtime): Pulumi then stores `require("keystone-totp-runtime/mfa.cjs")` in each
 * resource instead of the provider's code. Its methods import the handler module by package
 * name at run time, in the provider process.
 */
const provider = createRequire(import.meta.url)("keystone-totp-runtime/mfa.cjs") as pulumi.dynamic.ResourceProvider;

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
