/**
 * Plain (resolved) inputs and outputs of the `TotpCredential` resource. The Pulumi-facing,
 * Input-wrapped `TotpCredentialArgs` lives in `resource.ts`; everything here runs and tests
 * without the engine.
 */

import type { MfaState, PostureInputs } from "../../lib/mfa/apply.ts";

/** Default issuer shown in authenticator apps. */
export const DEFAULT_ISSUER = "OpenStack";
export { DEFAULT_DOMAIN, MAX_ROTATION_DAYS } from "../../lib/defaults.ts";

/** What happens to a user's TOTP credentials that Pulumi did not create. */
export type UnmanagedPolicy = "remove" | "keep";
/** Default {@link UnmanagedPolicy}. */
export const DEFAULT_UNMANAGED: UnmanagedPolicy = "remove";

/** Resolved inputs, as the engine hands them to the provider. */
export interface TotpCredentialInputs extends PostureInputs {
  /** Keystone user ID; when set, no name lookup is made. */
  readonly userId?: string | undefined;
  /** Keystone user name, looked up in `userDomain` when `userId` is not given. */
  readonly userName?: string | undefined;
  /** Domain name of `userName`; default {@link DEFAULT_DOMAIN}. */
  readonly userDomain?: string | undefined;
  /** Issuer shown in the authenticator app. */
  readonly issuer: string;
  /** Account label shown in the app; default `userName@userDomain`, or the user ID. */
  readonly account?: string | undefined;
  /** A secret to use instead of a generated one (normalised base32, at least 128 bits). */
  readonly secret?: string | undefined;
  /**
   * Any value; changing it issues a new secret IN PLACE: the old secret stops working at once
   * (used when the address changes: the old mailbox must not keep a working secret).
   */
  readonly rotationTrigger?: unknown;
  /**
   * Scheduled rotation: once the current secret is this many days old, the next run issues a
   * new credential (the old one stays valid for the grace window). 0 or absent: never.
   */
  readonly rotationDays?: number | undefined;
  /**
   * On-demand rotation: a new value (any string, e.g. the time of the request) issues a new
   * credential once; the same value, or none, does nothing.
   */
  readonly rotateRequest?: string | undefined;
  /**
   * What to do with this user's TOTP credentials that Pulumi does not manage (crash leftovers,
   * enrolled by hand): `remove` hands them to the delivery for retirement after the grace
   * window, `keep` leaves them (reported by `npm run status`). Default {@link DEFAULT_UNMANAGED}.
   */
  readonly unmanaged?: UnmanagedPolicy | undefined;
  /**
   * Used on its own: hours a replaced credential keeps working after the rotation that
   * replaced it (a standalone credential cannot see a delivery, so it counts from the
   * rotation); then the next run deletes it. Default 24. An enrollment ignores it (it counts
   * from the delivery of the message).
   */
  readonly graceHours?: number | undefined;
  /** The caller has just looked `userId` up in Keystone: create skips its own check. */
  readonly userChecked?: boolean | undefined;
  /**
   * The Pulumi project and stack, `project/stack`: part of the owner tagged on the credentials
   * this resource creates, by which a later run recognises its own leftovers after a crash
   * (see lib/ownership.ts). Absent: owned by no stack in particular.
   */
  readonly stack?: string | undefined;
  /**
   * The owner to tag (see lib/ownership.ts): a `TotpCredential` gives `<stack>/credential/<its
   * resource name>`, an enrollment its own. Default, for states without one:
   * `<stack>/credential/<user>`. Never compared; never stored by an enrollment.
   */
  readonly owner?: string | undefined;
}

/** Outputs of the resource. `secret` and `otpauthUri` are always stored as Pulumi secrets. */
export interface TotpCredentialOutputs extends TotpCredentialInputs {
  /** Keystone ID of the current credential (the resource ID is that of the first one). */
  readonly credentialId: string;
  /**
   * Keystone IDs of this user's other TOTP credentials, still valid, that are to be deleted
   * once the grace window has passed: previous credentials after a rotation, and unmanaged ones
   * under the `remove` policy. Used on its own, the resource deletes them itself at
   * `retireAfter`; in an enrollment, the enrollment does, counting from the delivery.
   */
  readonly retiring: readonly string[];
  /** Unmanaged credentials found and left alone (policy `keep`), for reports. */
  readonly unmanagedIds: readonly string[];
  /** The user's Keystone ID, looked up or as given. */
  readonly resolvedUserId: string;
  /** The account label actually used. */
  readonly accountLabel: string;
  /** The TOTP secret Keystone holds (secret). */
  readonly secret: string;
  /** `otpauth://totp/...` URI for a QR code (secret). */
  readonly otpauthUri: string;
  /** Non-secret fingerprint of the secret: `sha256:` + 16 hex digits. */
  readonly fingerprint: string;
  /** When the credential was created, ISO 8601 UTC. */
  readonly createdAt: string;
  /** When the current secret was issued, ISO 8601 UTC. */
  readonly rotatedAt: string;
  /** When the retiring credentials will be deleted (rotation + `graceHours`); absent when none are. */
  readonly retireAfter?: string | undefined;
  /**
   * The login posture given to the user (see mfa/posture.ts): the tool's staged rules before
   * the credential existed, or the user's own rules kept. Absent in states of 0.1 and 0.2,
   * whose next update applies it.
   */
  readonly mfa?: MfaState | undefined;
}
