/**
 * Plain inputs and outputs of the `TotpDelivery` resource: one enrollment message for one
 * issued secret. Its state records when and to which address the secret was delivered, never
 * the message.
 *
 * 0.1 only, kept to upgrade 0.1 stacks: see handlers.ts.
 */
import type { EnrollmentMessage } from "../../enrollment/mail.ts";
import type { RetireFailure } from "../../shared/retirement.ts";

/** The credential part of the inputs, as one secret value (0.1's `TotpDeliveryArgs.credential`: one ciphertext and one dependency). */
export interface DeliveredCredential {
  readonly id: string;
  readonly fingerprint: string;
  readonly secret: string;
  /** `new` for a first enrollment, `rotation` for a new secret. */
  readonly reason: string;
  readonly retiring: readonly string[];
}

/**
 * Resolved inputs. The engine hands over `credential` (one secret object); the handlers work
 * on the flat view below, which {@link flatInputs} in handlers.ts builds from it.
 */
export interface TotpDeliveryInputs extends Omit<EnrollmentMessage, "reason" | "enforced"> {
  /** The packed credential, when given that way. */
  readonly credential?: DeliveredCredential | undefined;
  /** `new` or `rotation`. */
  readonly reason?: string | undefined;
  /** The credential this message delivers (its secret and fingerprint: see EnrollmentMessage). */
  readonly credentialId: string;
  /** When the credential was created and when its current secret was issued (ISO 8601). */
  readonly createdAt?: string | undefined;
  readonly rotatedAt?: string | undefined;
  readonly otpauthUri: string;
  /** Any value; changing it sends the message again (for a lost message). */
  readonly resendTrigger?: unknown;
  /**
   * The user's other credentials, to delete once this message was delivered `graceHours`
   * ago (the credential's `retiring` output). Default none.
   */
  readonly retiring?: readonly string[] | undefined;
  /** Hours the retiring credentials stay valid after delivery; 0 deletes them on delivery. */
  readonly graceHours?: number | undefined;
}

/** Outputs: the delivery record. No secret, no message body. */
export interface TotpDeliveryOutputs {
  readonly userKey: string;
  readonly email: string;
  readonly displayName?: string | undefined;
  readonly issuer: string;
  readonly account: string;
  readonly credentialId: string;
  readonly fingerprint: string;
  readonly resendTrigger?: unknown;
  /** Address the message went to. */
  readonly deliveredTo: string;
  /** When it was accepted by the mail server or written to the outbox (ISO 8601). */
  readonly deliveredAt: string;
  /** `smtp` or `outbox`. */
  readonly transport: string;
  /** Message-ID, to find it in mail logs. */
  readonly messageId: string;
  /** Why it was sent: `new` or `rotation`. */
  readonly reason: string;
  /** Credentials still to retire after the grace window (empty once retired). */
  readonly retiring: readonly string[];
  /** Grace window applied, in hours. */
  readonly graceHours: number;
  /** When the retiring credentials were deleted (ISO 8601); absent while they are pending. */
  readonly retiredAt?: string | undefined;
  /** The last failed retirement, until one succeeds; absent when none failed. */
  readonly retireFailed?: RetireFailure | undefined;
}
