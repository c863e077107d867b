/**
 * The helpdesk check behind `verify-code USER@DOMAIN CODE`: is this code valid for this user
 * right now, the way a login would see it? Keystone is asked with a TOTP login; the token it
 * may issue is discarded, and no secret is read, printed or stored.
 *
 * A code is valid when Keystone issues a token (201), or when it answers 401 with an auth
 * receipt listing `totp` among the methods that passed: the user's MFA rules require more
 * (typically the password too), but the code itself was accepted. Keystone accepts the
 * current 30 s window and the previous one. Before Keystone 2026.2 (30), or without a cache, the
 * same code may be used again within its window; on 30 with a cache a code is accepted once
 * (a refused login spends it too), so checking a code spends it: the output says so (the
 * release cannot be read from `GET /v3`, so it says it conditionally), and it is checked once.
 *
 * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
 */
import { InputError, KeystoneError, UserNotFoundError } from "../../lib/errors.ts";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { type Transport, TransportError } from "../../lib/keystone/http.ts";
import { login } from "../../lib/keystone/login.ts";
import { TOTP_DIGITS, TOTP_PERIOD_S } from "../../lib/totp/secret.ts";
import { mfaFacts } from "./users.ts";

/** Said after every verdict on a code Keystone accepted: on releases that spend codes, it is now used. */
export const SPENT_CODE_NOTE =
  "On Keystone 2026.2 (30) and later with a cache, this code is now used: wait for the next one (up to " +
  `${TOTP_PERIOD_S} s) before logging in.`;
/** Said when a code is refused: a code used once (a login, or this check) is refused on those releases. */
export const REUSED_CODE_NOTE =
  "On Keystone 2026.2 (30) and later with a cache, a code already used once (by a login or by this check) is " +
  "refused: ask for the next code.";
/** Longest user or domain name accepted, in characters (Keystone's columns hold 255 and 64). */
export const MAX_NAME_CHARS = 255;

/** A user by name and domain name. */
export interface UserAtDomain {
  readonly name: string;
  readonly domain: string;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Splits `USER@DOMAIN` on the last `@`, so that user names that are addresses work:
 * `ops@corp.example@Default` is user `ops@corp.example` in domain `Default`.
 *
 * @throws {InputError} `E_INPUT` when there is no `@`, either part is empty or too long, or
 *   holds control characters or surrounding spaces.
 */
export function parseUserAtDomain(raw: string): UserAtDomain {
  const at = raw.lastIndexOf("@");
  const form = "expected USER@DOMAIN, e.g. alice@Default (the last @ separates the domain)";
  if (at < 0) throw new InputError("user", `'${raw.slice(0, 80)}' has no @DOMAIN: ${form}`);
  const name = raw.slice(0, at);
  const domain = raw.slice(at + 1);
  for (const [what, v] of [
    ["user name", name],
    ["domain", domain],
  ] as const) {
    if (v.length === 0) throw new InputError("user", `the ${what} is empty: ${form}`);
    if (v.length > MAX_NAME_CHARS)
      throw new InputError("user", `the ${what} is longer than ${MAX_NAME_CHARS} characters`);
    if (CONTROL.test(v) || v.trim() !== v) {
      throw new InputError("user", `the ${what} has control characters or surrounding spaces: ${form}`);
    }
  }
  return { name, domain };
}

/**
 * Checks a code as read out by a user: six digits, spaces allowed between them (apps show
 * `123 456`).
 *
 * @returns the six digits.
 * @throws {InputError} `E_INPUT` otherwise. The message does not repeat the code.
 */
export function normalisePasscode(raw: string): string {
  const digits = raw.replace(/[ \u00a0]/g, "");
  if (!new RegExp(`^[0-9]{${TOTP_DIGITS}}$`).test(digits)) {
    throw new InputError("code", `CODE must be the ${TOTP_DIGITS} digits shown in the authenticator app`);
  }
  return digits;
}

/** Keystone's verdict on a code. */
export interface CodeVerdict {
  readonly valid: boolean;
  /** Valid, and the user's MFA rules require more methods (the receipt case). */
  readonly moreMethodsRequired: boolean;
  /** The rules Keystone listed with a receipt, e.g. `[["password","totp"]]`. */
  readonly requiredMethods: readonly (readonly string[])[];
  /** HTTP status of the login attempt. */
  readonly status: number;
  /** Keystone's message when refused. */
  readonly keystoneMessage: string | undefined;
}

/**
 * Asks Keystone whether `code` is valid for the user now, with an unscoped TOTP login by name
 * and domain. Any token issued is discarded by `login()`.
 *
 * @throws {KeystoneError} `E_KEYSTONE_NETWORK` / `E_KEYSTONE_TIMEOUT` when Keystone cannot be
 *   reached, `E_KEYSTONE_HTTP` when it answers anything but 201 or 401.
 */
export async function verifyCode(
  authUrl: string,
  user: UserAtDomain,
  code: string,
  transport: Transport,
): Promise<CodeVerdict> {
  const path = "/v3/auth/tokens";
  let r: Awaited<ReturnType<typeof login>>;
  try {
    r = await login(authUrl, { name: user.name, domain: user.domain }, { passcode: code }, transport);
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const timeout = e.failure === "timeout";
    throw new KeystoneError(
      timeout ? "E_KEYSTONE_TIMEOUT" : "E_KEYSTONE_NETWORK",
      { method: "POST", path },
      e.failure === "tls"
        ? `TLS verification of ${authUrl} failed (${e.message}); give Keystone's CA with OS_CACERT.`
        : `Keystone at ${authUrl} could not be reached (${e.message}); check OS_AUTH_URL and that Keystone is up.`,
      { cause: e },
    );
  }
  const base = { status: r.status, keystoneMessage: r.message, requiredMethods: r.requiredMethods };
  if (r.ok) return { ...base, valid: true, moreMethodsRequired: false };
  if (r.status === 401 && r.receipt && r.methods.includes("totp")) {
    return { ...base, valid: true, moreMethodsRequired: true };
  }
  if (r.status === 401) return { ...base, valid: false, moreMethodsRequired: false };
  throw new KeystoneError(
    "E_KEYSTONE_HTTP",
    { method: "POST", path, status: r.status, ...(r.message ? { keystoneMessage: r.message } : {}) },
    "Keystone answered neither 201 nor 401 to a TOTP login; check its logs.",
  );
}

/** What an operator account can tell about a user, to explain an invalid code. */
export interface UserFacts {
  readonly enabled: boolean;
  readonly totpCredentials: number;
  readonly requiresTotp: boolean;
}

/**
 * Looks the user up with the operator's account, to explain a refused code.
 *
 * @throws {UserNotFoundError} when the user (or the domain) does not exist.
 * @throws {KeystoneError} when the account may not look (the caller then explains less).
 */
export async function lookUpUser(client: KeystoneClient, user: UserAtDomain): Promise<UserFacts> {
  const found = await client.findUser(user.name, user.domain);
  if (!found) throw new UserNotFoundError([`${user.name}@${user.domain}`]);
  const creds = await client.listTotpCredentials(found.id);
  return { enabled: found.enabled, totpCredentials: creds.length, requiresTotp: mfaFacts(found).requiresTotp };
}

/** Why a code may have been refused, given what is known about the user. */
export function explainInvalid(facts: UserFacts | undefined): string {
  if (!facts) {
    return (
      `Either the code is wrong or old (more than one ${TOTP_PERIOD_S} s window), the user has no TOTP credential, ` +
      "or the user or domain does not exist. Ask for a fresh code; check that the phone sets its time automatically. " +
      REUSED_CODE_NOTE
    );
  }
  if (!facts.enabled) return "The user is disabled in Keystone: no code can work until the account is enabled.";
  if (facts.totpCredentials === 0) {
    return (
      "The user has no TOTP credential in Keystone: they are not enrolled (or their enrollment was removed). " +
      "Enroll them with keystone-totp; a code from an old app entry cannot work."
    );
  }
  return (
    `The user has ${facts.totpCredentials} TOTP credential(s), but the code matches none for the current or the ` +
    `previous ${TOTP_PERIOD_S} s window. Ask for a fresh code; check that the phone sets its time automatically and that the ` +
    "code comes from the app entry of this cloud and user (an old entry from an earlier enrollment does not work). " +
    REUSED_CODE_NOTE
  );
}
