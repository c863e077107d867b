/**
 * `TotpDelivery`: the enrollment message for one issued secret, as a Pulumi dynamic resource.
 *
 * Provider method -> effect (the logic is in `handlers.ts`):
 *   configure -> none; keeps the stack config (keystone-totp:smtpUrl etc.)
 *   check     -> none; validates the address
 *   diff      -> none; new secret/address/credential/resend trigger = replace (a new message)
 *   create    -> SMTP: MAIL FROM, RCPT TO, DATA over a pooled connection; or an .eml file in
 *                the outbox folder
 *   read      -> none (a sent message cannot be read back)
 *   update    -> none (labels recorded, nothing sent); past the grace window,
 *                DELETE /v3/credentials/{id} for each retiring credential
 *   delete    -> none (a message cannot be unsent)
 */
import * as pulumi from "@pulumi/pulumi";
import { providerObject } from "../provider-object.ts";

/** What a delivery reads from its credential (a `TotpCredential` has all of it). */
export interface DeliveredCredentialSource {
  readonly credentialId: pulumi.Input<string>;
  readonly fingerprint: pulumi.Input<string>;
  readonly secret: pulumi.Input<string>;
  readonly createdAt: pulumi.Input<string>;
  readonly rotatedAt: pulumi.Input<string>;
  /** Credentials to delete once this message is `graceHours` old. */
  readonly retiring: pulumi.Input<readonly string[]>;
}

/** Arguments of {@link TotpDelivery}. */
export interface TotpDeliveryArgs {
  readonly userKey: pulumi.Input<string>;
  readonly username: pulumi.Input<string>;
  readonly domain: pulumi.Input<string>;
  readonly email: pulumi.Input<string>;
  readonly displayName?: pulumi.Input<string>;
  readonly issuer: pulumi.Input<string>;
  readonly account: pulumi.Input<string>;
  /**
   * The credential whose secret this message delivers. Its ID, fingerprint, secret and
   * `retiring` list travel as ONE secret input: one ciphertext and one dependency in the
   * state instead of seven, and the URI is rebuilt from the secret and the labels.
   */
  readonly credential: DeliveredCredentialSource;
  /** Any value; changing it sends the message again. */
  readonly resendTrigger?: pulumi.Input<unknown>;
  /** Hours retiring credentials stay valid after delivery; default 24, 0 = at once. */
  readonly graceHours?: pulumi.Input<number>;
}

/** The one provider instance (see provider-object.ts): Pulumi stores a `require()` of it, not its code. */
const provider = providerObject("delivery.cjs");

function pack(c: DeliveredCredentialSource): pulumi.Output<unknown> {
  return pulumi.secret(
    pulumi
      .all([c.credentialId, c.fingerprint, c.secret, c.createdAt, c.rotatedAt, c.retiring])
      .apply(([id, fingerprint, secret, createdAt, rotatedAt, retiring]) => ({
        id,
        fingerprint,
        secret,
        reason: createdAt === rotatedAt ? "new" : "rotation",
        retiring: [...(retiring ?? [])],
      })),
  );
}

/** The delivery record of one enrollment message. */
export class TotpDelivery extends pulumi.dynamic.Resource {
  declare readonly deliveredTo: pulumi.Output<string>;
  declare readonly deliveredAt: pulumi.Output<string>;
  declare readonly transport: pulumi.Output<string>;
  declare readonly messageId: pulumi.Output<string>;
  declare readonly fingerprint: pulumi.Output<string>;
  declare readonly reason: pulumi.Output<string>;
  /** Credentials still waiting for the end of the grace window. */
  declare readonly retiring: pulumi.Output<string[]>;
  /** When they were deleted (ISO 8601). */
  declare readonly retiredAt: pulumi.Output<string | undefined>;

  constructor(name: string, args: TotpDeliveryArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      provider,
      name,
      {
        ...args,
        credential: pack(args.credential),
        deliveredTo: undefined,
        deliveredAt: undefined,
        transport: undefined,
        messageId: undefined,
        reason: undefined,
        retiredAt: undefined,
      },
      opts,
      "keystone-totp",
      "TotpDelivery",
    );
  }
}
