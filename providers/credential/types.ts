/**
 * Plain (resolved) inputs and outputs of the `TotpCredential` resource. The Pulumi-facing,
 * Input-wrapped `TotpCredentialArgs` lives in `resource.ts`; everything here runs and tests
 * without the engine.
 */

/** Default issuer shown in authenticator apps. */
export const DEFAULT_ISSUER = "OpenStack";
/** Default Keystone domain for users given by name. */
export const DEFAULT_DOMAIN = "Default";

/** Resolved inputs, as the engine hands them to the provider. */
export interface TotpCredentialInputs {
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
  /** Any value; changing it issues a new secret. */
  readonly rotationTrigger?: unknown;
  /** The caller has just looked `userId` up in Keystone: create skips its own check. */
  readonly userChecked?: boolean | undefined;
}

/** Outputs of the resource. `secret` and `otpauthUri` are always stored as Pulumi secrets. */
export interface TotpCredentialOutputs extends TotpCredentialInputs {
  /** Keystone credential ID (also the resource ID). */
  readonly credentialId: string;
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
}
