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

async function loadHandlers(): Promise<typeof Handlers> {
  const { createRequire } = await import("node:module");
  const { pathToFileURL } = await import("node:url");
  const from = createRequire(`${process.cwd()}/package.json`);
  return import(pathToFileURL(from.resolve("keystone-totp/mfa-handlers")).href);
}

const provider: pulumi.dynamic.ResourceProvider = {
  async configure(req) {
    (await loadHandlers()).configure((key) => req.config.get(key));
  },
  async diff(_id, olds, news) {
    return (await loadHandlers()).diff(olds, news);
  },
  async create(inputs) {
    return (await loadHandlers()).create(inputs);
  },
  async read(id, props) {
    return (await loadHandlers()).read(id, props);
  },
  async update(id, olds, news) {
    return (await loadHandlers()).update(id, olds, news);
  },
  async delete(id, props) {
    await (await loadHandlers()).remove(id, props);
  },
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
