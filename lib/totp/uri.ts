/**
 * `otpauth://totp/` URIs in the Key URI format that Google Authenticator defined and every
 * TOTP app reads from a QR code.
 *
 * Only SHA1, 6 digits and a 30 s period are ever written: it is the one combination Keystone
 * verifies, and apps that honoured another would show codes Keystone refuses.
 *
 * @see https://github.com/google/google-authenticator/wiki/Key-Uri-Format
 */
import { InputError } from "../errors.ts";
import { TOTP_DIGITS, TOTP_PERIOD_S } from "./secret.ts";

/** Longest issuer or account label accepted, in characters; apps truncate long ones anyway. */
export const MAX_LABEL_CHARS = 128;

/** What an authenticator app shows for an account, and the key behind it. */
export interface OtpauthParts {
  /** The provider shown above the code, e.g. `ACME Cloud`. Must not contain `:`. */
  readonly issuer: string;
  /** The account shown under it, e.g. `alice@Default` or an email address. */
  readonly account: string;
  /** Canonical base32 secret (see `normaliseSecret`). */
  readonly secret: string;
}

/**
 * Checks an issuer or account label.
 *
 * @throws {InputError} `E_INPUT` if it is empty, too long, holds control characters, or (for
 *   the issuer) a colon, which would split the label in the wrong place.
 */
export function validateLabel(property: "issuer" | "account", value: string): string {
  const v = typeof value === "string" ? value.trim() : "";
  if (v.length === 0) throw new InputError(property, `${property} must not be empty`);
  if ([...v].length > MAX_LABEL_CHARS) {
    throw new InputError(property, `${property} is longer than ${MAX_LABEL_CHARS} characters`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  if (/[\u0000-\u001f\u007f]/.test(v)) {
    throw new InputError(property, `${property} contains a control character`);
  }
  if (!v.isWellFormed()) {
    // A lone surrogate cannot be encoded as UTF-8, so no app could show it.
    throw new InputError(property, `${property} contains an invalid (unpaired surrogate) character`);
  }
  if (property === "issuer" && v.includes(":")) {
    throw new InputError(property, "issuer must not contain ':' (the Key URI label is 'issuer:account')");
  }
  return v;
}

/**
 * Builds the `otpauth://totp/Issuer:account?secret=...&issuer=...` URI.
 *
 * The label's issuer prefix and the `issuer` parameter are equal, as the format asks; both
 * parts are percent-encoded (UTF-8), so spaces, `@`, `/` and non-ASCII survive.
 *
 * @throws {InputError} for an invalid issuer or account (see {@link validateLabel}).
 */
export function otpauthUri(parts: OtpauthParts): string {
  const issuer = validateLabel("issuer", parts.issuer);
  const account = validateLabel("account", parts.account);
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const query = [
    `secret=${parts.secret}`,
    `issuer=${encodeURIComponent(issuer)}`,
    "algorithm=SHA1",
    `digits=${TOTP_DIGITS}`,
    `period=${TOTP_PERIOD_S}`,
  ].join("&");
  return `otpauth://totp/${label}?${query}`;
}

/** The fields of an `otpauth://totp/` URI, as an app would read them. */
export interface ParsedOtpauth {
  readonly issuer: string;
  readonly account: string;
  readonly secret: string;
  readonly algorithm: string;
  readonly digits: number;
  readonly period: number;
}

/**
 * Reads an `otpauth://totp/` URI back, as an authenticator app would (used by tests and by the
 * checks on what users were sent).
 *
 * @throws {InputError} if it is not a TOTP Key URI.
 */
export function parseOtpauthUri(uri: string): ParsedOtpauth {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (cause) {
    throw new InputError("uri", "not a URI", { cause });
  }
  if (url.protocol !== "otpauth:" || url.host !== "totp") {
    throw new InputError("uri", "not an otpauth://totp/ URI");
  }
  const label = decodeURIComponent(url.pathname.replace(/^\//, ""));
  const colon = label.indexOf(":");
  const labelIssuer = colon >= 0 ? label.slice(0, colon) : "";
  const account = colon >= 0 ? label.slice(colon + 1) : label;
  const p = url.searchParams;
  return {
    issuer: p.get("issuer") ?? labelIssuer,
    account,
    secret: p.get("secret") ?? "",
    algorithm: (p.get("algorithm") ?? "SHA1").toUpperCase(),
    digits: Number(p.get("digits") ?? TOTP_DIGITS),
    period: Number(p.get("period") ?? TOTP_PERIOD_S),
  };
}
