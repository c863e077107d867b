/**
 * Preflight checks before enrolling anyone: Keystone reachable, TLS, the operator's token and
 * permissions, the totp auth method, clock skew, the users CSV, and mail. One line per check;
 * no message is sent, and nothing existing is changed in Keystone: what it writes to prove the
 * rights (see HELP) it deletes at once.
 *
 * Usage: node scripts/doctor.ts [options]      (npm run doctor -- ...)
 */

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { nonEmptyOption, parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { useLocalKeystoneWithNote } from "../operator/commands/local-keystone.ts";
import { loginOnceForRun } from "../operator/commands/mfa-login.ts";
import { MAIL_FROM_ENV, SMTP_URL_ENV } from "../operator/doctor/mail.ts";
import type { DoctorPostureSettings } from "../operator/doctor/posture.ts";
import { formatJson, formatText, runDoctor } from "../operator/doctor/run.ts";
import type { ManagedCredentials } from "../operator/doctor/users.ts";
import { resolvePostureFlags } from "../operator/fleet/settings.ts";

export const HELP = `usage: npm run doctor -- [options]

Checks what would make TOTP enrollment or logins fail: Keystone reachable and TLS, the
operator's token and roles, whether the operator's own account has MFA rules (on Keystone
2026.2 (30) it then cannot make MFA changes in bulk), permission to manage credentials,
the totp auth method, clock skew, the users CSV, and mail delivery. No message is sent.

It never writes to the operator's own user nor to any existing user. What it writes, it
deletes at once, on every Keystone release:
  - a TOTP credential (random secret, never shown) for a made-up user ID no user has;
  - a throwaway user keystone-totp-doctor-<random> (random password, never shown) in the
    operator's domain, with the tool's staged MFA rules and a TOTP credential: one TOTP
    login (which must be refused) and one password login completing it; then the user is
    deleted with its credential. Skipped, with a warning, if the account may not create
    users. If a delete fails, the doctor names what is left and how to remove it.
See docs/operator-account.md.

Keystone settings come from OS_* variables or OS_CLOUD (clouds.yaml), as for provision;
with none of them (and, with --stack, no openstack:* config), the local Keystone of
'npm run demo' (.local/keystone/default).

options:
  --csv FILE          also check the users CSV: valid, users found, credentials, MFA rules,
                      who a TOTP code alone logs in, application credentials the rules
                      block, rules naming disabled methods, users whose options cannot be
                      written (LDAP), enrolled users whose password expires
  --stack NAME        with --csv: count the users' credentials this stack does not manage
                      (made by hand, or left by a crash), and compare with the stack's
                      keystone-totp:enforceMfa, allowTotpOnlyLogin, refuseApplicationCredentials
                      and replaceOwnRules (default false); needs the Pulumi CLI
  --smtp-url URL      check this SMTP relay (smtp:// or smtps://); better: set ${SMTP_URL_ENV}
                      (a URL on the command line, password included, is visible to other users)
  --mail-from ADDR    the sender to check with the relay (or ${MAIL_FROM_ENV})
  --smtp-ca-file FILE PEM file of the CA that signed the relay's certificate (private CA)
  --outbox DIR        check this outbox folder instead (default: outbox)
  --no-mail           skip the mail checks
  --json              print the report as JSON
  --help              this text

exit codes: 0 no failure (warnings allowed), 1 failed, 2 bad input (CSV, settings),
            3 Keystone, 4 mail, 64 usage (README, Exit codes)
`;

interface Options {
  json: boolean;
  csv: string | undefined;
  smtpUrl: string | undefined;
  mailFrom: string | undefined;
  smtpCaFile: string | undefined;
  outbox: string | undefined;
  noMail: boolean;
  stack: string | undefined;
}

const DOCTOR_OPTIONS = {
  json: { type: "boolean" },
  csv: { type: "string" },
  "smtp-url": { type: "string" },
  "mail-from": { type: "string" },
  "smtp-ca-file": { type: "string" },
  outbox: { type: "string" },
  "no-mail": { type: "boolean" },
  stack: { type: "string" },
} as const;

/**
 * The options of a doctor command line; the relay and sender default to the environment.
 *
 * @throws {UsageError} an unknown option, a missing or empty value.
 */
export function parseDoctorArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Options {
  const { values: v } = parseCommandLine({ options: DOCTOR_OPTIONS }, argv);
  return {
    json: v.json ?? false,
    csv: nonEmptyOption("--csv", v.csv),
    smtpUrl: nonEmptyOption("--smtp-url", v["smtp-url"]) ?? (env[SMTP_URL_ENV] || undefined),
    mailFrom: nonEmptyOption("--mail-from", v["mail-from"]) ?? (env[MAIL_FROM_ENV] || undefined),
    smtpCaFile: nonEmptyOption("--smtp-ca-file", v["smtp-ca-file"]),
    outbox: nonEmptyOption("--outbox", v.outbox),
    noMail: v["no-mail"] ?? false,
    stack: nonEmptyOption("--stack", v.stack),
  };
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** A workspace of this project, for the commands given --stack (needs the Pulumi CLI). */
async function workspace() {
  const { LocalWorkspace } = await import("@pulumi/pulumi/automation/index.js");
  return LocalWorkspace.create({ workDir: REPO });
}

/**
 * Keystone credential IDs in a stack's state (`credentialId` outputs are not secret), and the
 * stack's posture settings.
 */
async function fromStack(stack: string): Promise<{ managed: ManagedCredentials; posture: DoctorPostureSettings }> {
  const ws = await workspace();
  const config = await ws.getAllConfig(stack);
  // The program's reader: a value the program would refuse is E_CONFIG here too.
  const posture = resolvePostureFlags((k) => config[`keystone-totp:${k}`]?.value);
  const state = await ws.exportStack(stack);
  const resources = (state.deployment as { resources?: { type: string; outputs?: Record<string, unknown> }[] })
    .resources;
  const ids = new Set<string>();
  for (const r of resources ?? []) {
    if (!r.type.endsWith(":TotpCredential") && !r.type.endsWith(":TotpEnrollment")) continue;
    // The current credential and those retiring after a rotation are all the stack's own.
    const retiring = Array.isArray(r.outputs?.retiring) ? r.outputs.retiring : [];
    for (const id of [r.outputs?.credentialId, ...retiring]) if (typeof id === "string") ids.add(id);
  }
  return { managed: { stack, ids }, posture };
}

async function main(argv: readonly string[]): Promise<number> {
  const o = parseDoctorArgs(argv);
  // The stack's openstack:* config, when it has some, is the operator's choice of Keystone.
  const config = o.stack ? await (await workspace()).getAllConfig(o.stack) : {};
  useLocalKeystoneWithNote("doctor", { repo: REPO, configKeys: Object.keys(config) });
  // An operator account with MFA logs in once: its checks share that token (a code works once on 30).
  await loginOnceForRun("doctor", { config: (k) => config[k]?.value });
  const stack = o.stack && o.csv ? await fromStack(o.stack) : undefined;
  const report = await runDoctor({
    ...(stack ? { managed: stack.managed, posture: stack.posture } : {}),
    csvFile: o.csv,
    smtpUrl: o.smtpUrl,
    mailFrom: o.mailFrom,
    smtpCaFile: o.smtpCaFile,
    outboxDir: o.outbox,
    skipMail: o.noMail,
  });
  process.stdout.write(o.json ? formatJson(report) : formatText(report));
  return report.exitCode;
}

// Checks report what they find instead of throwing: what is thrown is a bad setting or a bug.
if (import.meta.main) await runCommand({ name: "doctor", help: HELP }, main);
