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
 *   update    -> none (labels recorded, nothing sent)
 *   delete    -> none (a message cannot be unsent)
 */
import * as pulumi from "@pulumi/pulumi";
import type * as Handlers from "./handlers.ts";

/** Arguments of {@link TotpDelivery}. */
export interface TotpDeliveryArgs {
  readonly userKey: pulumi.Input<string>;
  readonly username: pulumi.Input<string>;
  readonly domain: pulumi.Input<string>;
  readonly email: pulumi.Input<string>;
  readonly displayName?: pulumi.Input<string>;
  readonly issuer: pulumi.Input<string>;
  readonly account: pulumi.Input<string>;
  readonly credentialId: pulumi.Input<string>;
  readonly fingerprint: pulumi.Input<string>;
  readonly createdAt: pulumi.Input<string>;
  readonly rotatedAt: pulumi.Input<string>;
  /** The secret and URI to deliver; pass the credential's secret outputs. */
  readonly secret: pulumi.Input<string>;
  readonly otpauthUri: pulumi.Input<string>;
  /** Any value; changing it sends the message again. */
  readonly resendTrigger?: pulumi.Input<unknown>;
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
      (await import("node:module")).createRequire(`${process.cwd()}/x`).resolve("keystone-totp/delivery-handlers"),
    ).href
  )) as typeof Handlers;

const provider: pulumi.dynamic.ResourceProvider = {
  configure: async (r) => (await h()).configure((k) => r.config.get(k)),
  check: async (_o, n) => (await h()).check(n),
  diff: async (_i, o, n) => (await h()).diff(o, n),
  create: async (i) => (await h()).create(i),
  read: async (id, props) => ({ id, props }),
  update: async (_i, o, n) => (await h()).update(o, n),
  delete: async () => {},
};

/** The delivery record of one enrollment message. */
export class TotpDelivery extends pulumi.dynamic.Resource {
  declare readonly deliveredTo: pulumi.Output<string>;
  declare readonly deliveredAt: pulumi.Output<string>;
  declare readonly transport: pulumi.Output<string>;
  declare readonly messageId: pulumi.Output<string>;
  declare readonly fingerprint: pulumi.Output<string>;
  declare readonly reason: pulumi.Output<string>;

  constructor(name: string, args: TotpDeliveryArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      provider,
      name,
      {
        ...args,
        secret: pulumi.secret(args.secret),
        otpauthUri: pulumi.secret(args.otpauthUri),
        deliveredTo: undefined,
        deliveredAt: undefined,
        transport: undefined,
        messageId: undefined,
        reason: undefined,
      },
      opts,
      "keystone-totp",
      "TotpDelivery",
    );
  }
}
