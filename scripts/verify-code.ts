/**
 * Helpdesk check: is the 6-digit code a user reads out valid for them right now, the way a
 * login would see it? Asks Keystone with a TOTP login, once (the token it may issue is
 * discarded); never reads, prints or stores a secret. On Keystone 2026.2 (30) and later with a
 * cache, that login spends the code: the output says so.
 *
 * Usage: node scripts/verify-code.ts USER@DOMAIN CODE      (npm run verify-code -- ...)
 */

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, EXIT, KeystoneError, UserNotFoundError } from "../lib/errors.ts";
import { type KeystoneAuth, normaliseAuthUrl, resolveKeystoneAuth } from "../lib/keystone/auth.ts";
import { KeystoneClient } from "../lib/keystone/client.ts";
import { createTransport } from "../lib/keystone/http.ts";
import { TOTP_DIGITS, TOTP_PERIOD_S } from "../lib/totp/secret.ts";
import { isOn } from "../lib/util/flag.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { useLocalKeystoneWithNote } from "../operator/commands/local-keystone.ts";
import { DOCTOR_MAX_ATTEMPTS, DOCTOR_REQUEST_TIMEOUT_MS } from "../operator/doctor/probe.ts";
import {
  explainInvalid,
  lookUpUser,
  normalisePasscode,
  parseUserAtDomain,
  SPENT_CODE_NOTE,
  type UserFacts,
  verifyCode,
} from "../operator/doctor/verify.ts";

/** This command's verdicts, as rows of the one exit-code table (lib/errors.ts EXIT). */
const VERDICT = { valid: EXIT.ok, invalid: EXIT.failed, unknownUser: EXIT.badInput } as const;

export const HELP = `usage: npm run verify-code -- USER@DOMAIN CODE

Asks Keystone whether CODE (the ${TOTP_DIGITS} digits in the user's authenticator app) is valid for
the user right now, as a login would. The last @ separates the domain, so
ops@corp.example@Default is user ops@corp.example in domain Default. Keystone accepts
the code of the current ${TOTP_PERIOD_S} s window and of the previous one.

The check is a login: on Keystone 2026.2 (30) and later with a cache, each code is
accepted once, so the code checked is then used (the user waits for the next one before
logging in), and a code already used once is refused. Earlier releases accept a code
again within its window. The release cannot be read from Keystone's API, so the output
says this in every case.

Keystone is found through OS_AUTH_URL or OS_CLOUD. With operator credentials (OS_*
as for provision), a refused code is explained: user missing or disabled, not enrolled.

exit codes: 0 valid, 1 invalid, 2 bad input (USER@DOMAIN, CODE, unknown user),
            3 Keystone unreachable or failing, 64 usage (README, Exit codes)
`;

/**
 * USER@DOMAIN and CODE from the command line (checked later, by parseUserAtDomain and
 * normalisePasscode, for exit 2).
 *
 * @throws {UsageError} an option (there are none but --help), or not exactly two arguments.
 */
export function parseVerifyCodeArgs(argv: readonly string[]): { who: string; code: string } {
  const { positionals } = parseCommandLine(
    { options: {}, positionals: [2, 2], positionalsName: "USER@DOMAIN and CODE" },
    argv,
  );
  return { who: positionals[0] as string, code: positionals[1] as string };
}

/** The operator's full settings, or just the endpoint when only OS_AUTH_URL is set. */
function keystoneSettings(): { auth: KeystoneAuth | undefined; authUrl: string; caPem?: string; insecure: boolean } {
  try {
    const auth = resolveKeystoneAuth();
    return { auth, authUrl: auth.authUrl, ...(auth.caPem ? { caPem: auth.caPem } : {}), insecure: auth.insecure };
  } catch (e) {
    const url = process.env.OS_AUTH_URL;
    if (!(e instanceof ConfigError) || !url) throw e;
    return {
      auth: undefined,
      authUrl: normaliseAuthUrl(url, "OS_AUTH_URL"),
      insecure: isOn(process.env.OS_INSECURE),
    };
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const { who, code: rawCode } = parseVerifyCodeArgs(argv);
  const user = parseUserAtDomain(who);
  const code = normalisePasscode(rawCode);
  useLocalKeystoneWithNote("verify-code", { repo: resolve(dirname(fileURLToPath(import.meta.url)), "..") });
  const settings = keystoneSettings();
  const transport = createTransport({
    caPem: settings.caPem,
    insecure: settings.insecure,
    timeoutMs: DOCTOR_REQUEST_TIMEOUT_MS,
  });
  const label = `${user.name}@${user.domain}`;
  try {
    const verdict = await verifyCode(settings.authUrl, user, code, transport);
    if (verdict.valid) {
      // Keystone lists a rule's methods in no fixed order (a Python set): sort them for a stable message.
      const more = verdict.moreMethodsRequired
        ? ` Keystone also requires ${verdict.requiredMethods.map((r) => [...r].sort().join(" + ")).join(" or ")} at login (MFA rules), so the user logs in with their password and this code.`
        : "";
      process.stdout.write(`VALID: the code is valid for ${label} right now.${more} ${SPENT_CODE_NOTE}\n`);
      return VERDICT.valid;
    }
    let facts: UserFacts | undefined;
    if (settings.auth) {
      const client = new KeystoneClient(settings.auth, { transport, maxAttempts: DOCTOR_MAX_ATTEMPTS });
      try {
        facts = await lookUpUser(client, user);
      } catch (e) {
        if (e instanceof UserNotFoundError) {
          process.stdout.write(
            `INVALID: user ${label} does not exist in Keystone (or the domain does not). Check the spelling; names are case-sensitive.\n`,
          );
          return VERDICT.unknownUser;
        }
        if (!(e instanceof KeystoneError)) throw e;
        // The account may not look users up: explain less.
      }
    }
    process.stdout.write(`INVALID: Keystone refused the code for ${label}. ${explainInvalid(facts)}\n`);
    return VERDICT.invalid;
  } finally {
    transport.close();
  }
}

if (import.meta.main) await runCommand({ name: "verify-code", help: HELP }, main);
