/**
 * `MfaEnforcement`: Keystone MFA rules on one user, as a Pulumi dynamic resource.
 *
 * Provider method -> Keystone call (the logic is in `handlers.ts`):
 *   create -> GET /v3/users/{id} (unless userChecked), PATCH /v3/users/{id}
 *             {options: {multi_factor_auth_*}, keystone_totp: marker}; nothing while the
 *             enrollment's delivery is unconfirmed (no deliveredAt: `waiting`)
 *   read   -> GET /v3/users/{id}
 *   update -> PATCH /v3/users/{id} (a waiting one: as create, once the delivery is confirmed)
 *   delete -> GET + PATCH /v3/users/{id}: back to the enrollment's staged rules (the
 *             enrollment's delete restores the options from before); nothing for a waiting one
 */
import * as pulumi from "@pulumi/pulumi";
import { providerObject } from "../provider-object.ts";

/** Arguments of {@link MfaEnforcement}. */
export interface MfaEnforcementArgs {
  readonly userId: pulumi.Input<string>;
  /** The user as `name@domain`, for messages. */
  readonly userKey: pulumi.Input<string>;
  /**
   * The delivery this waits for: pass the enrollment's `deliveredAt`. Undefined while that
   * delivery is unconfirmed: nothing is enforced until a later run confirms it.
   */
  readonly deliveredAt: pulumi.Input<string | undefined>;
  /** Keystone's `[auth] methods`, comma-separated; default: probed by the provider. */
  readonly authMethods?: pulumi.Input<string>;
  /** Refuse the user's application credentials too. Default false: they keep working. */
  readonly refuseApplicationCredentials?: pulumi.Input<boolean>;
  /** Admit a TOTP code alone as well. Default false. */
  readonly allowTotpOnlyLogin?: pulumi.Input<boolean>;
  /** Replace the user's own rules when they let TOTP alone in. Default false (refused). */
  readonly replaceOwnRules?: pulumi.Input<boolean>;
  /** The user's MFA options before keystone-totp, as just listed (with `userChecked`); never compared. */
  readonly previousMfa?: pulumi.Input<{ enabled: boolean | null; rules: string[][] | null }>;
  /** The program has just listed the user: no GET. Default false. */
  readonly userChecked?: pulumi.Input<boolean>;
}

/** The one provider instance (see provider-object.ts): Pulumi stores a `require()` of it, not its code. */
const provider = providerObject("mfa.cjs");

/**
 * Password + TOTP required for one user's password logins once its enrollment was delivered;
 * application credentials and federation keep working unless refused. Back to the
 * enrollment's staged rules on delete.
 */
export class MfaEnforcement extends pulumi.dynamic.Resource {
  declare readonly enforcedAt: pulumi.Output<string>;
  declare readonly previousEnabled: pulumi.Output<boolean | null>;

  constructor(name: string, args: MfaEnforcementArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      provider,
      name,
      {
        ...args,
        previousEnabled: undefined,
        previousRules: undefined,
        enforcedAt: undefined,
        posture: undefined,
        rules: undefined,
      },
      opts,
      "keystone-totp",
      "MfaEnforcement",
    );
  }
}
