/**
 * `TotpCredential`: a Keystone TOTP credential as a Pulumi dynamic resource.
 *
 * Provider method -> Keystone call (the logic is in `handlers.ts`):
 *   configure -> none; keeps the stack config (openstack:* keys) for the Keystone client
 *   check     -> none; validates inputs, so a bad secret fails `pulumi preview` offline
 *   diff      -> none; user changed = replace, secret/trigger = new secret, labels = new URI
 *   create    -> POST   /v3/credentials          (after GET /v3/domains, /v3/users lookups)
 *   read      -> GET    /v3/credentials/{id}     (404: gone, refresh drops the resource)
 *   update    -> PATCH  /v3/credentials/{id}     (new secret; label changes send nothing)
 *   delete    -> DELETE /v3/credentials/{id}     (404 counts as done)
 *
 * Pulumi serialises the provider object into every resource's state. To keep that small and
 * free of machine paths, the provider's methods capture nothing but `h`,
 * which imports the handler module by package name at run time in the provider process.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as Handlers from "./handlers.ts";
import { DEFAULT_ISSUER, type TotpCredentialInputs, type TotpCredentialOutputs } from "./types.ts";

/** Arguments of {@link TotpCredential}. Give the user as `userId`, or as `userName` + `userDomain`. */
export interface TotpCredentialArgs {
  /** Keystone user ID. */
  readonly userId?: pulumi.Input<string>;
  /** Keystone user name, looked up in `userDomain`. */
  readonly userName?: pulumi.Input<string>;
  /** Domain name for `userName`; default `Default`. */
  readonly userDomain?: pulumi.Input<string>;
  /** Issuer shown in the authenticator app; default `OpenStack`. Must not contain `:`. */
  readonly issuer?: pulumi.Input<string>;
  /** Account label shown in the app; default `userName@userDomain`. */
  readonly account?: pulumi.Input<string>;
  /**
   * A secret to use instead of a generated one: base32, at least 128 bits (spaces, case and
   * padding are normalised). Pass it as a Pulumi secret.
   */
  readonly secret?: pulumi.Input<string>;
  /** Any value; changing it issues a new secret (e.g. a date, or a counter). */
  readonly rotationTrigger?: pulumi.Input<unknown>;
}

/**
 * Loads the handler module in whichever process runs the provider. Resolved by package name
 * from the working directory (the Pulumi project), so no path of this machine is serialised.
 * Short names on purpose: this text is stored twice in every resource's state.
 */
// No return type annotation: type stripping would leave its width as spaces in the stored text.
const h = async () =>
  (await import(
    (
      await import("node:url")
    ).pathToFileURL(
      (await import("node:module")).createRequire(`${process.cwd()}/x`).resolve("keystone-totp/credential-handlers"),
    ).href
  )) as typeof Handlers;

/** The one provider instance: Pulumi caches its serialisation per object. */
const provider: pulumi.dynamic.ResourceProvider = {
  configure: async (r) => (await h()).configure((k) => r.config.get(k)),
  check: async (_o, n) => (await h()).check(n),
  diff: async (_i, o, n) => (await h()).diff(o, n),
  create: async (i) => (await h()).create(i),
  read: async (i, p) => (await h()).read(i, p),
  update: async (i, o, n) => (await h()).update(i, o, n),
  delete: async (i) => (await h()).remove(i),
};

/** A TOTP credential for one Keystone user. */
export class TotpCredential extends pulumi.dynamic.Resource {
  /** Keystone credential ID. */
  declare readonly credentialId: pulumi.Output<string>;
  /** The user's Keystone ID. */
  declare readonly resolvedUserId: pulumi.Output<string>;
  /** The account label shown in the app. */
  declare readonly accountLabel: pulumi.Output<string>;
  /** The TOTP secret (a Pulumi secret). */
  declare readonly secret: pulumi.Output<string>;
  /** The `otpauth://totp/` URI (a Pulumi secret). */
  declare readonly otpauthUri: pulumi.Output<string>;
  /** Non-secret fingerprint of the secret. */
  declare readonly fingerprint: pulumi.Output<string>;
  /** Creation time, ISO 8601. */
  declare readonly createdAt: pulumi.Output<string>;
  /** When the current secret was issued, ISO 8601. */
  declare readonly rotatedAt: pulumi.Output<string>;

  constructor(name: string, args: TotpCredentialArgs, opts: pulumi.CustomResourceOptions = {}) {
    const props: Record<keyof TotpCredentialOutputs, unknown> = {
      userId: args.userId,
      userName: args.userName,
      userDomain: args.userDomain,
      issuer: args.issuer ?? DEFAULT_ISSUER,
      account: args.account,
      secret: args.secret === undefined ? undefined : pulumi.secret(args.secret),
      rotationTrigger: args.rotationTrigger,
      credentialId: undefined,
      resolvedUserId: undefined,
      accountLabel: undefined,
      otpauthUri: undefined,
      fingerprint: undefined,
      createdAt: undefined,
      rotatedAt: undefined,
    } satisfies Record<keyof TotpCredentialInputs, unknown> & Record<string, unknown>;
    super(
      provider,
      name,
      props,
      {
        ...opts,
        additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), "secret", "otpauthUri"],
      },
      "keystone-totp",
      "TotpCredential",
    );
  }
}
