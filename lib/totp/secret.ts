/**
 * TOTP secrets as Keystone stores them: RFC 4648 base32, upper case, no padding.
 *
 * Keystone keeps whatever blob it is given and, when verifying a passcode, pads it with `=`
 * and calls Python's case-sensitive `base64.b32decode`; a blob that does not decode silently
 * never matches. So every secret is generated or normalised and checked here, before it can
 * reach Keystone.
 *
 * @see https://www.rfc-editor.org/rfc/rfc4648#section-6 (base32)
 * @see https://www.rfc-editor.org/rfc/rfc6238 (TOTP)
 */
import { createHash } from "node:crypto";
import { generateSync, generateSecret as otplibGenerateSecret } from "otplib";
import { SecretError } from "../errors.ts";

/** Bytes of entropy in a generated secret: 160 bits, the HMAC-SHA1 block size RFC 4226 recommends. */
export const GENERATED_SECRET_BYTES = 20;
/** The fewest bits a supplied secret may decode to (RFC 4226 section 4, R6). */
export const MIN_SECRET_BITS = 128;
/** The most characters a supplied secret may have after normalisation (1024 bits is plenty). */
export const MAX_SECRET_CHARS = 205;
/** Keystone verifies 6-digit codes only. */
export const TOTP_DIGITS = 6;
/** Keystone verifies a 30-second time step only. */
export const TOTP_PERIOD_S = 30;

const BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/** Lengths modulo 8 that no base32 encoder produces; Python's b32decode rejects them. */
const IMPOSSIBLE_REMAINDERS = new Set([1, 3, 6]);

/** A base32 TOTP secret that has been generated or validated here. */
export type Base32Secret = string & { readonly __brand: "Base32Secret" };

/**
 * Generates a new TOTP secret from the operating system's CSPRNG.
 *
 * @returns 160 bits as 32 upper-case base32 characters, no padding.
 */
export function generateSecret(): Base32Secret {
  const secret = otplibGenerateSecret({ length: GENERATED_SECRET_BYTES });
  // otplib already returns canonical base32; checking costs nothing and guards a plugin swap.
  return normaliseSecret(secret);
}

/**
 * Normalises a secret supplied by an operator and refuses one Keystone could not verify.
 *
 * Spaces, hyphens and `=` padding are removed and letters are upper-cased, the forms in which
 * authenticator apps and other systems display keys.
 *
 * @param input - the secret as supplied.
 * @returns the canonical form Keystone decodes.
 * @throws {SecretError} `E_SECRET` if it holds characters outside base32, has an impossible
 *   length, or decodes to fewer than {@link MIN_SECRET_BITS} bits. The message never repeats
 *   the secret.
 */
export function normaliseSecret(input: string): Base32Secret {
  if (typeof input !== "string") {
    throw new SecretError("the secret must be a string of base32 characters (A-Z, 2-7)");
  }
  const s = input
    .replace(/[\s-]+/g, "")
    .replace(/=+$/, "")
    .toUpperCase();
  if (s.length === 0) throw new SecretError("the secret is empty");
  if (s.length > MAX_SECRET_CHARS) {
    throw new SecretError(`the secret is too long (${s.length} characters, at most ${MAX_SECRET_CHARS})`);
  }
  for (let i = 0; i < s.length; i++) {
    if (!BASE32_ALPHABET.includes(s.charAt(i))) {
      throw new SecretError(
        `the secret is not base32: character ${i + 1} is outside A-Z and 2-7 (RFC 4648); ` +
          "hexadecimal or base64 keys must be re-encoded as base32",
      );
    }
  }
  if (IMPOSSIBLE_REMAINDERS.has(s.length % 8)) {
    throw new SecretError(
      `the secret has ${s.length} characters, a length no base32 encoding produces; a character is missing or extra`,
    );
  }
  const bits = Math.floor((s.length * 5) / 8) * 8;
  if (bits < MIN_SECRET_BITS) {
    throw new SecretError(
      `the secret decodes to ${bits} bits; at least ${MIN_SECRET_BITS} are required (RFC 4226), ` +
        "so use at least 26 base32 characters or omit it to have one generated",
    );
  }
  return s as Base32Secret;
}

/**
 * A short, non-secret fingerprint of a secret, to see in state and output whether a secret
 * changed without revealing it.
 *
 * @returns `sha256:` and the first 16 hex digits of SHA-256 over the canonical secret.
 */
export function fingerprint(secret: string): string {
  return `sha256:${createHash("sha256").update(secret, "utf8").digest("hex").slice(0, 16)}`;
}

/**
 * The 6-digit code for a secret at a time, as Keystone computes it (HMAC-SHA1, 30 s step).
 *
 * @param secret - canonical base32 secret.
 * @param atMs - Unix time in milliseconds; default now.
 */
export function totpCode(secret: string, atMs: number = Date.now()): string {
  return generateSync({
    secret,
    algorithm: "sha1",
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
    epoch: Math.floor(atMs / 1000),
  });
}

/** The secret split into groups of four characters, for typing into an app by hand. */
export function groupSecret(secret: string): string {
  return secret.replace(/(.{4})(?=.)/g, "$1 ");
}
