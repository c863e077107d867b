/**
 * `TotpCredential`: a Keystone TOTP credential as a Pulumi dynamic resource.
 *
 * Provider method -> Keystone call (the logic is in `handlers.ts`):
 *   configure -> none; keeps the stack config (openstack:* keys) for the Keystone client
 *   check     -> none; validates inputs, so a bad secret fails `pulumi preview` offline
 *   diff      -> none; user changed = replace, secret/trigger = new secret, labels = new URI,
 *                rotation due (clock) or a new rotate request = new credential
 *   create    -> GET    /v3/credentials?type=totp (once per run: credentials nobody manages)
 *             -> GET    /v3/users/{id} (unless userChecked), PATCH /v3/users/{id} (MFA rules
 *                that refuse a TOTP code alone, and their marker), then POST /v3/credentials
 *   read      -> GET    /v3/credentials/{id}     (404: gone, refresh drops the resource)
 *   update    -> PATCH  /v3/credentials/{id}     (rotation trigger: new secret in place)
 *             -> GET    /v3/credentials?user_id=, POST /v3/credentials (scheduled or requested
 *                rotation: a new credential; the old one is listed in `retiring`)
 *             -> nothing for a label change
 *             -> PATCH  /v3/users/{id}           (a state without a posture, or new settings)
 *             -> DELETE /v3/credentials/{id}     each retiring one, `graceHours` after the rotation
 *   delete    -> DELETE /v3/credentials/{id}     (current and retiring; 404 counts as done),
 *                then GET + PATCH /v3/users/{id} (the options the user had before)
 *
 * Pulumi serialises the provider object into every resource's state. To keep that small and
 * free of machine paths, it is stored as a `require()` of the runtime (see provider-object.ts),
 * whose methods import the handler module at run time, in the provider process.
 */
import * as pulumi from "@pulumi/pulumi";
import { ownerId } from "../../lib/ownership.ts";
import { qrPngDataUri } from "../../lib/qr.ts";
import { providerObject } from "../provider-object.ts";
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
  /**
   * Any value; changing it replaces the secret in place, so the old one stops working at
   * once (for a compromised or reassigned account).
   */
  readonly rotationTrigger?: pulumi.Input<unknown>;
  /**
   * Scheduled rotation: the first run once the secret is this many days old (whole days,
   * 0..3650) adds a new credential; the old one stays valid for `graceHours`, listed in
   * `retiring`. Default 0 (never).
   */
  readonly rotationDays?: pulumi.Input<number>;
  /**
   * On-demand rotation: a value not applied before (the time of the request, say) adds a new
   * credential once; the old one stays valid for `graceHours`. The same value again does nothing.
   */
  readonly rotateRequest?: pulumi.Input<string>;
  /** The user's TOTP credentials not made by Pulumi: `remove` (default) or `keep`. */
  readonly unmanaged?: pulumi.Input<"remove" | "keep">;
  /**
   * Hours a replaced credential keeps working after the rotation that replaced it (fractions
   * allowed, 0..8760); the first `pulumi up` after that (`retireAfter`) deletes it. Default 24;
   * 0 deletes it in the update that rotates. This resource cannot see when you delivered the
   * new secret: it counts from the rotation (`rotatedAt`), so deliver within the window.
   */
  readonly graceHours?: pulumi.Input<number>;
  /**
   * Set when `userId` was just read from Keystone (the fleet program does): saves one
   * `GET /v3/users/{id}` per credential. Default false.
   */
  readonly userChecked?: pulumi.Input<boolean>;
  /**
   * Let a TOTP code alone log the user in: no MFA rules are written. Default false: before the
   * credential exists the user gets rules that refuse a TOTP code alone and keep every other
   * login working (password, application credentials, federation), restored on delete.
   * @see README.md, Security model
   */
  readonly allowTotpOnlyLogin?: pulumi.Input<boolean>;
  /**
   * Replace the user's own MFA rules when they let a TOTP code alone in. Default false: such a
   * user is refused (E_POSTURE).
   */
  readonly replaceOwnRules?: pulumi.Input<boolean>;
  /**
   * Keystone's `[auth] methods`, comma-separated, when the caller probed them (the fleet
   * program does, once per run). Default: probed by the provider, once per process.
   */
  readonly authMethods?: pulumi.Input<string>;
  /**
   * The user's MFA options before keystone-totp, as just listed (only read with `userChecked`;
   * never compared, so it never causes a change). Default: none.
   */
  readonly previousMfa?: pulumi.Input<{ enabled: boolean | null; rules: string[][] | null }>;
  /**
   * `project/stack`, part of the owner tagged on the credentials this resource creates (a
   * later run recognises its own leftovers after a crash by it). Default: this program's.
   */
  readonly stack?: pulumi.Input<string>;
}

/** The one provider instance (see provider-object.ts): Pulumi stores a `require()` of it, not its code. */
const provider = providerObject("credential.cjs");

/** `project/stack` of the running program: with the resource, the owner of what it creates. */
export function thisStack(): string {
  return `${pulumi.getProject()}/${pulumi.getStack()}`;
}

/**
 * A TOTP credential for one Keystone user, used on its own (a fleet uses `TotpEnrollment`,
 * which also mails the QR code). Delivering the secret is the program's job: give the user
 * {@link TotpCredential.qrCode} or {@link TotpCredential.otpauthUri}, both Pulumi secrets.
 *
 * A rotation (`rotateRequest`, `rotationDays`) adds a new credential and keeps the old one
 * working for `graceHours` counted from the rotation (`rotatedAt`), because this resource cannot
 * see when the new secret reached the user; the first `pulumi up` after `retireAfter` deletes
 * the old one.
 *
 * @example
 * const cred = new TotpCredential("alice", { userName: "alice", userDomain: "Default", issuer: "ACME Cloud" });
 * export const qr = cred.qrCode; // a secret: `pulumi stack output --show-secrets qr`
 */
export class TotpCredential extends pulumi.dynamic.Resource {
  /** Keystone ID of the current credential; changes at each rotation (the resource ID stays the first one's). */
  declare readonly credentialId: pulumi.Output<string>;
  /** The user's Keystone ID, as given or looked up from `userName` and `userDomain`. */
  declare readonly resolvedUserId: pulumi.Output<string>;
  /** The account label the authenticator app shows beside the issuer. */
  declare readonly accountLabel: pulumi.Output<string>;
  /** The TOTP secret, base32 (a Pulumi secret): for a user who types it into the app. */
  declare readonly secret: pulumi.Output<string>;
  /** The `otpauth://totp/` URI (a Pulumi secret): what the QR code holds, for apps that take a link. */
  declare readonly otpauthUri: pulumi.Output<string>;
  /**
   * The QR code of {@link otpauthUri} as a `data:image/png;base64,` URI (a Pulumi secret, since
   * it holds the secret): put it in an `<img src>` of a page or message that only the user sees.
   * Made by the program from the URI at each run, never stored in the state.
   */
  readonly qrCode: pulumi.Output<string>;
  /** Fingerprint of the secret, `sha256:` + 16 hex digits, not secret: tells which secret a user holds. */
  declare readonly fingerprint: pulumi.Output<string>;
  /** When the resource was created, ISO 8601 UTC. */
  declare readonly createdAt: pulumi.Output<string>;
  /** When the current secret was issued, ISO 8601 UTC: the grace window of a rotation counts from it. */
  declare readonly rotatedAt: pulumi.Output<string>;
  /**
   * Keystone IDs of the user's credentials still valid that this resource will delete at
   * `retireAfter`: those a rotation replaced and, under `unmanaged: "remove"`, those nobody manages.
   */
  declare readonly retiring: pulumi.Output<string[]>;
  /** The user's TOTP credentials not made by Pulumi, left alone under `unmanaged: "keep"`. */
  declare readonly unmanagedIds: pulumi.Output<string[]>;
  /**
   * When the first `pulumi up` will delete the `retiring` credentials: `rotatedAt` + `graceHours`,
   * ISO 8601 UTC; absent when none are retiring. Deliver the new secret before it.
   */
  declare readonly retireAfter: pulumi.Output<string | undefined>;

  constructor(name: string, args: TotpCredentialArgs, opts: pulumi.CustomResourceOptions = {}) {
    const props: Record<keyof TotpCredentialOutputs, unknown> = {
      userId: args.userId,
      userName: args.userName,
      userDomain: args.userDomain,
      issuer: args.issuer ?? DEFAULT_ISSUER,
      account: args.account,
      secret: args.secret === undefined ? undefined : pulumi.secret(args.secret),
      rotationTrigger: args.rotationTrigger,
      rotationDays: args.rotationDays,
      rotateRequest: args.rotateRequest,
      unmanaged: args.unmanaged,
      graceHours: args.graceHours,
      userChecked: args.userChecked,
      authMethods: args.authMethods,
      allowTotpOnlyLogin: args.allowTotpOnlyLogin,
      replaceOwnRules: args.replaceOwnRules,
      refuseApplicationCredentials: undefined,
      previousMfa: args.previousMfa,
      stack: args.stack ?? thisStack(),
      // The resource's name makes its owner unique in the stack: two resources of one user (a
      // program may declare several) never take over or delete each other's credentials.
      owner: pulumi.output(args.stack ?? thisStack()).apply((stack) => ownerId(stack, "credential", name)),
      mfa: undefined,
      retireAfter: undefined,
      retiring: undefined,
      unmanagedIds: undefined,
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
    // Derived from a secret output, so the engine keeps it secret; pulumi.secret says so anyway.
    this.qrCode = pulumi.secret(this.otpauthUri.apply((uri) => qrPngDataUri(uri)));
  }
}
