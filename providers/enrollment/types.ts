/**
 * Plain (resolved) inputs and outputs of the `TotpEnrollment` resource: one user's TOTP
 * credential AND the enrollment message that delivers its secret, as ONE resource. The
 * Input-wrapped `TotpEnrollmentArgs` lives in `resource.ts`.
 *
 * Why one resource and not a credential plus a delivery: every resource costs the engine a
 * step, a checkpoint write of the whole stack and ~1.3 KB of bookkeeping in the state; at
 * fleet scale that, not Keystone, was most of the time of a run (see bench/README.md).
 */

import type { MfaState, PostureInputs } from "../../lib/mfa/apply.ts";
import type { UnmanagedPolicy } from "../credential/types.ts";
import type { RetireFailure } from "../shared/retirement.ts";

/**
 * A delivery whose outcome is not known (`E_SMTP_UNCONFIRMED`), kept in the outputs until a
 * later run delivers the same secret. Plain data, no secret; no field is ever undefined (the
 * engine refuses undefined inside a property).
 */
export interface UnconfirmedDelivery {
  /** When the attempt ended (ISO 8601, the run's clock). */
  readonly at: string;
  /** `E_SMTP_UNCONFIRMED`. */
  readonly code: string;
  /** What happened, as the error said it (server, recipient, Message-ID). */
  readonly error: string;
  /** Why the message went: `new` (a first enrollment) or `rotation`; the resend says the same. */
  readonly reason: "new" | "rotation";
}

/** Resolved inputs, as the engine hands them to the provider. */
export interface TotpEnrollmentInputs extends Omit<PostureInputs, "refuseApplicationCredentials"> {
  /** Keystone user ID, as the fleet program has just listed it (no GET per user). */
  readonly userId: string;
  /** The user's name and domain, for the message and the user key in messages. */
  readonly username: string;
  readonly domain: string;
  /**
   * The Pulumi project and stack, `project/stack`: with the user key, the owner tagged on the
   * credentials this enrollment creates (see lib/ownership.ts).
   */
  readonly stack?: string | undefined;
  /** Recipient of the enrollment message. */
  readonly email: string;
  /** Name used in the greeting; default the username. */
  readonly displayName?: string | undefined;
  /** Issuer and account label shown in the authenticator app. */
  readonly issuer: string;
  readonly account: string;
  /**
   * Any value; changing it issues a new secret in place and sends it. Default: the address,
   * case-folded (a new address gets a new secret, see `addressTrigger`).
   */
  readonly rotationTrigger?: unknown;
  /** Scheduled rotation in days; 0 or absent: never. */
  readonly rotationDays?: number | undefined;
  /** On-demand rotation: a value not applied before issues a new credential once. */
  readonly rotateRequest?: string | undefined;
  /** The user's TOTP credentials this resource did not create; default `remove`. */
  readonly unmanaged?: UnmanagedPolicy | undefined;
  /** Any value; changing it sends the current secret again (a lost message). */
  readonly resendTrigger?: unknown;
  /** Hours replaced credentials stay valid after the new secret is delivered; default 24. */
  readonly graceHours?: number | undefined;
  /**
   * Whether password + TOTP will be enforced once the message is delivered (an `MfaEnforcement`
   * follows): only what the message tells the user; never a change by itself.
   */
  readonly enforceMfa?: boolean | undefined;
}

/**
 * Outputs. Only what a later diff, the status report or a retirement reads is kept: the QR
 * URI, the message and the copied labels are not (the URI is rebuilt from the secret).
 */
export interface TotpEnrollmentOutputs
  extends Omit<
    TotpEnrollmentInputs,
    "username" | "domain" | "displayName" | "graceHours" | "previousMfa" | "enforceMfa"
  > {
  /** Keystone ID of the current credential (the resource ID is that of the first one). */
  readonly credentialId: string;
  /** The TOTP secret Keystone holds (always a Pulumi secret). */
  readonly secret: string;
  /** Non-secret fingerprint of the secret: `sha256:` + 16 hex digits. */
  readonly fingerprint: string;
  /** When the credential was created and when its current secret was issued (ISO 8601). */
  readonly createdAt: string;
  readonly rotatedAt: string;
  /** Credentials still valid that are deleted once `deliveredAt + graceHours` has passed. */
  readonly retiring: readonly string[];
  /** Unmanaged credentials left alone (policy `keep`); absent when none. */
  readonly unmanagedIds?: readonly string[] | undefined;
  /**
   * When the current secret's message was accepted by the mail server or the outbox. While the
   * delivery is unconfirmed: that of the previous secret, absent for a first enrollment (an
   * `MfaEnforcement` waits for it).
   */
  readonly deliveredAt?: string | undefined;
  /** Its Message-ID, to find it in mail logs. */
  readonly messageId?: string | undefined;
  /** Grace window applied to `retiring`, in hours. */
  readonly graceHours: number;
  /** When retiring credentials were last deleted (ISO 8601). */
  readonly retiredAt?: string | undefined;
  /**
   * The last failed attempt to delete retiring credentials, until one succeeds (the next run
   * retries); the program lists these users in its `retireFailed` stack output.
   */
  readonly retireFailed?: RetireFailure | undefined;
  /**
   * The current secret's message may or may not have reached the mail server (the connection
   * ended after it was sent, before the server's reply): the secret stays valid, the next run
   * sends it again, and the program lists these users in its `deliveryUnconfirmed` stack output.
   */
  readonly deliveryUnconfirmed?: UnconfirmedDelivery | undefined;
  /** The login posture given to the user before its credential existed (see mfa/posture.ts). */
  readonly mfa?: MfaState | undefined;
  /**
   * The owner tagged on the credentials this enrollment creates (see lib/ownership.ts), so that
   * its delete also removes a leftover of a crashed create or rotation before the options are
   * given back. Absent in states of 0.3.0 and earlier.
   */
  readonly owner?: string | undefined;
}
