/**
 * keystone-totp as a library: what a Pulumi program imports from the `keystone-totp` package.
 *
 *   import { TotpCredential } from "keystone-totp";
 *
 * The resources are dynamic resources: their provider runs in the Pulumi program's own Node.js
 * process tree, and finds Keystone the way the `openstack` provider does (the `openstack:*`
 * stack configuration, `OS_CLOUD` and clouds.yaml, or the `OS_*` variables).
 *
 * Nothing here changes anything when imported. This repository's own fleet program is index.ts,
 * which is not part of the package.
 *
 * @see README.md, "Use it from your own Pulumi program"
 */

// The errors they throw: a stable `code` (E_CONFIG, E_KEYSTONE, ...), a message that says what to do, a `cause`.
export {
  ConfigError,
  type ErrorCode,
  InputError,
  KeystoneError,
  KeystoneTotpError,
  PostureError,
  SecretError,
  UserNotFoundError,
} from "../lib/errors.ts";
export { PNG_DATA_URI_PREFIX, QR_MAX_CHARS, qrPng, qrPngDataUri, qrPngSize } from "../lib/qr.ts";
// Plain helpers, for programs that deliver the secret themselves.
export {
  type Base32Secret,
  fingerprint,
  GENERATED_SECRET_BYTES,
  generateSecret,
  groupSecret,
  MIN_SECRET_BITS,
  normaliseSecret,
  TOTP_DIGITS,
  TOTP_PERIOD_S,
  totpCode,
} from "../lib/totp/secret.ts";
export {
  MAX_LABEL_CHARS,
  type OtpauthParts,
  otpauthUri,
  type ParsedOtpauth,
  parseOtpauthUri,
  validateLabel,
} from "../lib/totp/uri.ts";
// The resources and their types.
export { TotpCredential, type TotpCredentialArgs } from "./credential/resource.ts";
export {
  DEFAULT_DOMAIN,
  DEFAULT_ISSUER,
  DEFAULT_UNMANAGED,
  MAX_ROTATION_DAYS,
  type TotpCredentialInputs,
  type TotpCredentialOutputs,
  type UnmanagedPolicy,
} from "./credential/types.ts";
export { TotpEnrollment, type TotpEnrollmentArgs } from "./enrollment/resource.ts";
export type { TotpEnrollmentInputs, TotpEnrollmentOutputs } from "./enrollment/types.ts";
export type { MfaInputs as MfaEnforcementInputs, MfaOutputs as MfaEnforcementOutputs } from "./mfa/handlers.ts";
export { MfaEnforcement, type MfaEnforcementArgs } from "./mfa/resource.ts";
export { DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS, type RetireFailure } from "./shared/retirement.ts";
export { omitResourceStackTraces, resourceStackTracesOmitted } from "./stack-traces.ts";
