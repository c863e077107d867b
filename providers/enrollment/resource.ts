/**
 * `TotpEnrollment`: one user's TOTP credential and the message that delivers its secret, as
 * ONE Pulumi dynamic resource (the fleet program declares one per user of the CSV).
 *
 * Provider method -> Keystone and mail (the logic is in `handlers.ts`):
 *   configure -> none; keeps the stack config (openstack:*, keystone-totp:smtpUrl ...)
 *   check     -> none; validates the inputs and the address
 *   diff      -> none; user changed = replace; new address, rotation due (clock), rotate request,
 *                resend trigger, labels, or the end of a grace window = update
 *   create    -> GET    /v3/credentials?type=totp (once per run: credentials nobody manages)
 *             -> PATCH  /v3/users/{id} (MFA rules refusing a TOTP code alone, with the marker
 *                recording the options before), then POST /v3/credentials (tagged with its owner; or, for
 *                its own leftover of a create whose answer was lost, GET /v3/credentials/{id} and take it
 *                over: see lib/ownership.ts), then SMTP (or the outbox): the QR code;
 *                if the message fails: DELETE /v3/credentials/{id}, and the resource fails; if it
 *                may have arrived (E_SMTP_UNCONFIRMED): nothing, `deliveryUnconfirmed` is recorded
 *   read      -> GET    /v3/credentials/{id}     (404: gone, refresh drops the resource)
 *   update    -> PATCH  /v3/credentials/{id}     (new address: new secret in place), then SMTP
 *             -> GET    /v3/credentials?user_id=, POST /v3/credentials, then SMTP (scheduled or
 *                requested rotation; the old credential stays valid, listed in `retiring`)
 *             -> SMTP only (resend trigger, or a delivery recorded as unconfirmed: the same
 *                secret again); nothing for a label change
 *             -> DELETE /v3/credentials/{id}     each retiring one, once the new secret was
 *                delivered `graceHours` ago (a failure is recorded in `retireFailed`, not thrown)
 *             -> PATCH  /v3/users/{id}           (a 0.1/0.2 state, or new posture settings)
 *   delete    -> DELETE /v3/credentials/{id}     (current and retiring; 404 counts as done),
 *                then GET + PATCH /v3/users/{id} (back to the options before; marker cleared)
 */
import * as pulumi from "@pulumi/pulumi";
import { thisStack } from "../credential/resource.ts";
import { providerObject } from "../provider-object.ts";
import type { RetireFailure } from "../shared/retirement.ts";
import type { TotpEnrollmentInputs, TotpEnrollmentOutputs, UnconfirmedDelivery } from "./types.ts";

/** Arguments of {@link TotpEnrollment}. */
export interface TotpEnrollmentArgs {
  /** Keystone user ID, as just listed from Keystone (create does not look it up again). */
  readonly userId: pulumi.Input<string>;
  /** The user's name and domain (the message shows them). */
  readonly username: pulumi.Input<string>;
  readonly domain: pulumi.Input<string>;
  /** Where the QR code goes. */
  readonly email: pulumi.Input<string>;
  /** Name used in the greeting; default the username. */
  readonly displayName?: pulumi.Input<string>;
  /** Issuer and account label shown in the authenticator app. Neither may contain `:`. */
  readonly issuer: pulumi.Input<string>;
  readonly account: pulumi.Input<string>;
  /** Any value; changing it issues a new secret in place (the old one stops at once) and sends it. */
  readonly rotationTrigger?: pulumi.Input<unknown>;
  /** Scheduled rotation: a new credential once the secret is this many days old. Default 0 (never). */
  readonly rotationDays?: pulumi.Input<number>;
  /** On-demand rotation: a value not applied before issues a new credential once. */
  readonly rotateRequest?: pulumi.Input<string>;
  /** The user's TOTP credentials not made by Pulumi: `remove` (default) or `keep`. */
  readonly unmanaged?: pulumi.Input<"remove" | "keep">;
  /** Any value; changing it sends the current secret again. */
  readonly resendTrigger?: pulumi.Input<unknown>;
  /** Hours replaced credentials stay valid after delivery of the new secret; default 24, 0 = at once. */
  readonly graceHours?: pulumi.Input<number>;
  /** Keystone's `[auth] methods`, comma-separated, as probed by the program; default: probed by the provider. */
  readonly authMethods?: pulumi.Input<string>;
  /** Let a TOTP code alone log the user in (no staged MFA rules). Default false. */
  readonly allowTotpOnlyLogin?: pulumi.Input<boolean>;
  /** Replace the user's own MFA rules when they let a TOTP code alone in. Default false (refused). */
  readonly replaceOwnRules?: pulumi.Input<boolean>;
  /** The user's MFA options before keystone-totp, as just listed; never compared. Default: none. */
  readonly previousMfa?: pulumi.Input<{ enabled: boolean | null; rules: string[][] | null }>;
  /** Whether an MfaEnforcement follows delivery (the message says so); never compared. */
  readonly enforceMfa?: pulumi.Input<boolean>;
  /**
   * `project/stack`, with the user key the owner tagged on the credentials this enrollment
   * creates (a later run recognises its own leftovers after a crash by it); never compared.
   * Default: this program's.
   */
  readonly stack?: pulumi.Input<string>;
}

/** The one provider instance (see provider-object.ts): Pulumi stores a `require()` of it, not its code. */
const provider = providerObject("enrollment.cjs");

/** Type of the TotpCredential that earlier versions declared per user, adopted by an alias. */
const EARLIER_TYPE = "pulumi-nodejs:dynamic/keystone-totp:TotpCredential";

/** One user's TOTP enrollment: a Keystone credential and the delivery of its secret. */
export class TotpEnrollment extends pulumi.dynamic.Resource {
  /** Keystone ID of the current credential. */
  declare readonly credentialId: pulumi.Output<string>;
  /** The TOTP secret (a Pulumi secret). */
  declare readonly secret: pulumi.Output<string>;
  /** Non-secret fingerprint of the secret. */
  declare readonly fingerprint: pulumi.Output<string>;
  /** Creation time and when the current secret was issued, ISO 8601. */
  declare readonly createdAt: pulumi.Output<string>;
  declare readonly rotatedAt: pulumi.Output<string>;
  /** When the current secret's message was accepted, ISO 8601; undefined until one was confirmed. */
  declare readonly deliveredAt: pulumi.Output<string | undefined>;
  /** Replaced credentials still valid until the grace window after delivery ends. */
  declare readonly retiring: pulumi.Output<string[]>;
  /** The last failed deletion of retiring credentials, until one succeeds; undefined when none. */
  declare readonly retireFailed: pulumi.Output<RetireFailure | undefined>;
  /** A delivery that may not have arrived, until the same secret is delivered; undefined when none. */
  declare readonly deliveryUnconfirmed: pulumi.Output<UnconfirmedDelivery | undefined>;

  constructor(name: string, args: TotpEnrollmentArgs, opts: pulumi.CustomResourceOptions = {}) {
    // The outputs the provider fills in, declared so that the engine tracks them.
    const outputs: Record<Exclude<keyof TotpEnrollmentOutputs, keyof TotpEnrollmentInputs>, undefined> = {
      credentialId: undefined,
      secret: undefined,
      fingerprint: undefined,
      createdAt: undefined,
      rotatedAt: undefined,
      retiring: undefined,
      unmanagedIds: undefined,
      deliveredAt: undefined,
      messageId: undefined,
      retiredAt: undefined,
      retireFailed: undefined,
      deliveryUnconfirmed: undefined,
      mfa: undefined,
      owner: undefined,
    };
    super(
      provider,
      name,
      { ...outputs, ...args, stack: args.stack ?? thisStack() },
      {
        ...opts,
        aliases: [...(opts.aliases ?? []), { type: EARLIER_TYPE }],
        additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), "secret"],
      },
      "keystone-totp",
      "TotpEnrollment",
    );
  }
}
