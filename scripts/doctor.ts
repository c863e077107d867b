/**
 * Preflight checks before enrolling anyone: Keystone reachable, TLS, the operator's token and
 * permissions, the totp auth method, clock skew, the users CSV, and mail. One line per check;
 * nothing is changed in Keystone and no message is sent.
 *
 * Usage: node scripts/doctor.ts [options]      (npm run doctor -- ...)
 */

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { useLocalKeystoneWithNote } from "../operator/commands/local-keystone.ts";
import { MAIL_FROM_ENV, SMTP_URL_ENV } from "../operator/doctor/mail.ts";
import type { DoctorPostureSettings } from "../operator/doctor/posture.ts";
import { formatJson, formatText, runDoctor } from "../operator/doctor/run.ts";
import type { ManagedCredentials } from "../operator/doctor/users.ts";

/** Exit codes, shared with every script: see README, Exit codes. */
const EXIT = { ok: 0, failed: 1, usage: 64 } as const;

const HELP = `usage: npm run doctor -- [options]

Checks, without changing anything, what would make TOTP enrollment or logins fail:
Keystone reachable and TLS, the operator's token and roles, permission to manage
credentials, the totp auth method, clock skew, the users CSV, and mail delivery.
Keystone settings come from OS_* variables or OS_CLOUD (clouds.yaml), as for provision;
with none of them (and, with --stack, no openstack:* config), the local Keystone of
'npm run demo' (.local/keystone/default).

options:
  --csv FILE          also check the users CSV: valid, users found, credentials, MFA rules,
                      who a TOTP code alone logs in, application credentials the rules
                      block, rules naming disabled methods, users whose options cannot be
                      written (LDAP)
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
            3 Keystone, 4 mail, 64 usage
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

function usage(message: string): never {
  process.stderr.write(`doctor: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    json: false,
    csv: undefined,
    smtpUrl: process.env[SMTP_URL_ENV] || undefined,
    mailFrom: process.env[MAIL_FROM_ENV] || undefined,
    smtpCaFile: undefined,
    outbox: undefined,
    noMail: false,
    stack: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v === "") usage(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") {
      process.stdout.write(HELP);
      process.exit(EXIT.ok);
    } else if (a === "--json") o.json = true;
    else if (a === "--csv") o.csv = value();
    else if (a === "--smtp-url") o.smtpUrl = value();
    else if (a === "--mail-from") o.mailFrom = value();
    else if (a === "--smtp-ca-file") o.smtpCaFile = value();
    else if (a === "--outbox") o.outbox = value();
    else if (a === "--no-mail") o.noMail = true;
    else if (a === "--stack") o.stack = value();
    else usage(`unknown option '${a}'`);
  }
  return o;
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** A workspace of this project, for the commands given --stack (needs the Pulumi CLI). */
async function workspace() {
  const { LocalWorkspace } = await import("@pulumi/pulumi/automation/index.js");
  return LocalWorkspace.create({ workDir: REPO });
}

/** The stack's posture settings, as `keystone-totp:*` config (plain values, never secrets). */
const POSTURE_KEYS = ["enforceMfa", "allowTotpOnlyLogin", "refuseApplicationCredentials", "replaceOwnRules"] as const;

/**
 * Keystone credential IDs in a stack's state (`credentialId` outputs are not secret), and the
 * stack's posture settings.
 */
async function fromStack(stack: string): Promise<{ managed: ManagedCredentials; posture: DoctorPostureSettings }> {
  const ws = await workspace();
  const config = await ws.getAllConfig(stack);
  const posture: Record<string, boolean> = {};
  for (const k of POSTURE_KEYS) posture[k] = /^(true|1|yes)$/i.test(config[`keystone-totp:${k}`]?.value ?? "");
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

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  // The stack's openstack:* config, when it has some, is the operator's choice of Keystone.
  const configKeys = o.stack ? Object.keys(await (await workspace()).getAllConfig(o.stack)) : [];
  useLocalKeystoneWithNote("doctor", { repo: REPO, configKeys });
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

try {
  process.exitCode = await main();
} catch (e) {
  // A bug, not a finding: checks report what they find instead of throwing.
  process.stderr.write(`doctor: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = EXIT.failed;
}
