/**
 * Plain inputs and outputs of the `TotpDelivery` resource: one enrollment message for one
 * issued secret. Its state records when and to which address the secret was delivered, never
 * the message.
 */

/** Default grace window, in hours, during which a replaced credential keeps working. */
export const DEFAULT_GRACE_HOURS = 24;
/** Largest grace window, in hours (a year; a larger value is surely a typo). */
export const MAX_GRACE_HOURS = 8760;

/**
 * The last failed attempt to delete retiring credentials, kept in the resource's outputs until
 * a later attempt deletes them (the next run retries): a leaked secret that is still valid must
 * not pass for a healthy "retiring" one. Plain data, no secret; no field is ever undefined (the
 * engine refuses undefined inside a property).
 */
export interface RetireFailure {
  /** The credentials that could not be deleted, still valid in Keystone. */
  readonly ids: readonly string[];
  /** When the attempt failed (ISO 8601, the run's clock). */
  readonly at: string;
  /** Our error code (`E_KEYSTONE_HTTP`, ...), when the failure was one of ours. */
  readonly code?: string;
  /** What failed, as the error said it (method, path, status, Keystone's request id). */
  readonly error: string;
}

/** The credential part of the inputs, as one secret value (see `TotpDeliveryArgs.credential`). */
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
export interface TotpDeliveryInputs {
  /** The packed credential, when given that way. */
  readonly credential?: DeliveredCredential | undefined;
  /** `new` or `rotation`. */
  readonly reason?: string | undefined;
  /** `username@domain`, the user's stable identity. */
  readonly userKey: string;
  readonly username: string;
  readonly domain: string;
  /** Recipient address. */
  readonly email: string;
  /** Name used in the greeting; default the username. */
  readonly displayName?: string | undefined;
  readonly issuer: string;
  /** Account label the app shows. */
  readonly account: string;
  /** The credential this message delivers. */
  readonly credentialId: string;
  /** Fingerprint of the secret delivered: a new secret means a new message. */
  readonly fingerprint: string;
  /** When the credential was created and when its current secret was issued (ISO 8601). */
  readonly createdAt?: string | undefined;
  readonly rotatedAt?: string | undefined;
  readonly secret: string;
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
