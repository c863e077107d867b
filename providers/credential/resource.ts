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
import { createRequire } from "node:module";
import * as pulumi from "@pulumi/pulumi";
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
  /**
   * Set when `userId` was just read from Keystone (the fleet program does): saves one
   * `GET /v3/users/{id}` per credential. Default false.
   */
  readonly userChecked?: pulumi.Input<boolean>;
}

/**
 * The one provider instance, from the keystone-totp-runtime package in node_modules
 * (providers/runtime): Pulumi then stores `require("keystone-totp-runtime/credential.cjs")` in each
 * resource instead of the provider's code. Its methods import the handler module by package
 * name at run time, in the provider process.
 */
const provider = createRequire(import.meta.url)(
  "keystone-totp-runtime/credential.cjs",
) as pulumi.dynamic.ResourceProvider;

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
      userChecked: args.userChecked,
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
