/**
 * Helpdesk check: is the 6-digit code a user reads out valid for them right now, the way a
 * login would see it? Asks Keystone with a TOTP login (the token it may issue is discarded);
 * never reads, prints or stores a secret, and does not spend the code (Keystone accepts it
 * again within its window).
 *
 * Usage: node scripts/verify-code.ts USER@DOMAIN CODE      (npm run verify-code -- ...)
 */

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, exitCodeFor, InputError, KeystoneError, UserNotFoundError } from "../lib/errors.ts";
import { type KeystoneAuth, normaliseAuthUrl, resolveKeystoneAuth } from "../lib/keystone/auth.ts";
import { KeystoneClient } from "../lib/keystone/client.ts";
import { createTransport } from "../lib/keystone/http.ts";
import { useLocalKeystoneWithNote } from "../operator/commands/local-keystone.ts";
import { DOCTOR_MAX_ATTEMPTS, DOCTOR_REQUEST_TIMEOUT_MS } from "../operator/doctor/keystone.ts";
import {
  explainInvalid,
  lookUpUser,
  normalisePasscode,
  parseUserAtDomain,
  type UserFacts,
  verifyCode,
} from "../operator/doctor/verify.ts";

/** Exit codes of this script. */
const EXIT = { valid: 0, invalid: 1, badInput: 2, keystone: 3, usage: 64 } as const;

const HELP = `usage: npm run verify-code -- USER@DOMAIN CODE

Asks Keystone whether CODE (the 6 digits in the user's authenticator app) is valid for
the user right now, as a login would. The last @ separates the domain, so
ops@corp.example@Default is user ops@corp.example in domain Default. Keystone accepts
the code of the current 30 s window and of the previous one.

Keystone is found through OS_AUTH_URL or OS_CLOUD. With operator credentials (OS_*
as for provision), a refused code is explained: user missing or disabled, not enrolled.

exit codes: 0 valid, 1 invalid, 2 bad input (USER@DOMAIN, CODE, unknown user),
            3 Keystone unreachable or failing, 64 usage
`;

function usage(message: string): never {
  process.stderr.write(`verify-code: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
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
      insecure: /^(1|true|yes)$/i.test(process.env.OS_INSECURE ?? ""),
    };
  }
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(HELP);
    return EXIT.valid;
  }
  const unknown = args.find((a) => a.startsWith("--"));
  if (unknown) usage(`unknown option '${unknown}'`);
  if (args.length !== 2) usage("expected USER@DOMAIN and CODE");
  const [who = "", rawCode = ""] = args;

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
      process.stdout.write(`VALID: the code is valid for ${label} right now.${more}\n`);
      return EXIT.valid;
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
          return EXIT.badInput;
        }
        if (!(e instanceof KeystoneError)) throw e;
        // The account may not look users up: explain less.
      }
    }
    process.stdout.write(`INVALID: Keystone refused the code for ${label}. ${explainInvalid(facts)}\n`);
    return EXIT.invalid;
  } finally {
    transport.close();
  }
}

try {
  process.exitCode = await main();
} catch (e) {
  if (e instanceof InputError || e instanceof ConfigError) {
    process.stderr.write(`verify-code: ${e.message}\n`);
    process.exitCode = EXIT.badInput;
  } else if (e instanceof KeystoneError) {
    process.stderr.write(`verify-code: ${e.message}\n`);
    process.exitCode = EXIT.keystone;
  } else {
    process.stderr.write(`verify-code: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = exitCodeFor(e);
  }
}
