/**
 * The state of the fleet, one line per user: enrolled since, last delivery, next rotation,
 * MFA enforced, and whether Keystone holds exactly the credentials the stack manages. As a
 * table, JSON, CSV (safe to open in a spreadsheet) or a self-contained HTML page.
 *
 * Usage: node scripts/status.ts [options]      (npm run status -- ...)
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { EXIT, exitCodeFor, KeystoneTotpError } from "../lib/errors.ts";
import { resolveKeystoneAuth } from "../lib/keystone/auth.ts";
import { KeystoneClient } from "../lib/keystone/client.ts";
import { now } from "../lib/util/clock.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { formatUnconfirmedDelivery } from "../operator/commands/delivery-unconfirmed.ts";
import { allConfigOf, allConfigOfFile, openStack, readStackCsv, stackConfig } from "../operator/commands/engine.ts";
import { DEFAULT_STACK, defaultEngineOptions } from "../operator/commands/options.ts";
import { formatRetireFailure } from "../operator/commands/retire-failed.ts";
import { resolvePostureFlags } from "../operator/fleet/settings.ts";
import { renderStatusHtml } from "../operator/report/html.ts";
import {
  type AccountOptions,
  buildStatus,
  countStatus,
  formatTable,
  POSTURES,
  type PostureSource,
  type StateResource,
  statusCsv,
} from "../operator/report/status.ts";

export const HELP = `usage: npm run status -- [options]

One line per user of the stack: state, enrolled since, last delivery, next scheduled
rotation, MFA enforced, and the TOTP credentials Keystone actually holds for the user
(checked against what the stack manages). Changes nothing, sends nothing.

posture (how the user may log in now): open (a TOTP code alone logs in: run
'npm run provision -- up --refresh'), staged (the tool's rules: every login as before
but TOTP alone), enforced (password + TOTP), own (the user's own rules, kept); '-' when
Keystone was not asked, or for a user with neither a TOTP credential nor rules

states: ok, retiring (an old credential still valid in its grace window), retire-failed
(Keystone refused to delete an old credential past its grace window: still valid; the next
up tries again), unmanaged (Keystone holds TOTP credentials the stack does not manage),
not-delivered (the next up sends the message), delivery-unconfirmed (the message was sent but
the mail server never confirmed it: the secret stays valid and the next up sends it again),
not-enrolled (in the CSV, not yet applied),
missing (the managed credential is gone from Keystone: run 'npm run provision -- refresh',
then up)

options:
  --stack NAME           stack (default: ${DEFAULT_STACK})
  --config-file FILE     stack config file (default: Pulumi.NAME.yaml)
  --json                 JSON: {at, stack, counts, users: [...]}, with credential IDs
  --csv                  CSV, one record per user (cells that a spreadsheet would run as a
                         formula are quoted)
  --html FILE            also write a self-contained HTML report (counts, charts, table)
  --no-keystone          report from the stack's state only; do not ask Keystone
  --help                 this text

exit codes: 0 every user ok or retiring, 1 some user needs attention (missing,
not-delivered, delivery-unconfirmed, retire-failed, unmanaged, not-enrolled, or posture open without
keystone-totp:allowTotpOnlyLogin), 2 bad config, 3 Keystone, 64 usage (README, Exit codes)
`;

interface StatusOptions {
  stack: string;
  configFile: string | undefined;
  format: "table" | "json" | "csv";
  html: string | undefined;
  keystone: boolean;
}

const STATUS_OPTIONS = {
  stack: { type: "string", short: "s" },
  "config-file": { type: "string" },
  json: { type: "boolean" },
  csv: { type: "boolean" },
  html: { type: "string" },
  "no-keystone": { type: "boolean" },
} as const;

/**
 * The options of a status command line (the last of --json and --csv wins, as before).
 *
 * @throws {UsageError} an unknown option or a missing value.
 */
export function parseStatusArgs(argv: readonly string[]): StatusOptions {
  const { values } = parseCommandLine({ options: STATUS_OPTIONS }, argv);
  const lastFormat = argv.findLast((a) => a === "--json" || a === "--csv");
  return {
    stack: values.stack ?? DEFAULT_STACK,
    configFile: values["config-file"] === undefined ? undefined : resolve(values["config-file"]),
    format: lastFormat === "--json" ? "json" : lastFormat === "--csv" ? "csv" : "table",
    html: values.html === undefined ? undefined : resolve(values.html),
    keystone: !values["no-keystone"],
  };
}

/** Writes a report readable by its owner only: 0600, in a folder made 0700 if we make it. */
function writePrivate(file: string, text: string): void {
  const dir = dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

async function main(argv: readonly string[]): Promise<number> {
  const o = parseStatusArgs(argv);
  const engine = { ...defaultEngineOptions(), stack: o.stack, configFile: o.configFile };
  const stack = await openStack(o.stack, () => ({}), { create: false, configFile: o.configFile });
  const exported = await stack.exportStack();
  const resources = ((exported.deployment as { resources?: StateResource[] } | undefined)?.resources ?? []).filter(
    (r) => typeof r.urn === "string" && typeof r.type === "string",
  );
  let csvUsers: string[] = [];
  const domains = new Set<string>();
  for (const r of resources) if (typeof r.inputs?.domain === "string") domains.add(r.inputs.domain);
  try {
    const csvRows = (await readStackCsv(stack, engine)) ?? [];
    csvUsers = csvRows.map((r) => r.key);
    for (const r of csvRows) domains.add(r.domain);
  } catch (e) {
    if (!(e instanceof KeystoneTotpError)) throw e;
    process.stderr.write(
      `status: users CSV not read, so users not yet enrolled are not listed: [${e.code}] ${e.message}\n`,
    );
  }
  let keystone: Map<string, readonly string[]> | undefined;
  let postures: PostureSource | undefined;
  // The program's reader: a value it refuses is E_CONFIG here too, never taken as false.
  const setting = await stackConfig(stack, engine);
  const { allowTotpOnlyLogin } = resolvePostureFlags((k) => setting(`keystone-totp:${k}`));
  if (o.keystone) {
    // Keystone's settings as the program gets them: --config-file's when given (its secrets
    // decrypted, such as openstack:password), else the stack's.
    const config = o.configFile ? await allConfigOfFile(stack, o.configFile) : await allConfigOf(stack);
    try {
      const client = new KeystoneClient(resolveKeystoneAuth({ config: (k) => config[k]?.value }));
      const index = await client.listAllTotpCredentials();
      // Where Keystone's list_limit cut the fleet-wide list short, the stack's users are listed
      // one by one (and the total counts only theirs): a partial list would show false "missing".
      const userIds = index.all
        ? [...index.all.keys()]
        : [...new Set(buildStatus(resources, undefined).flatMap((r) => (r.userId ? [r.userId] : [])))];
      keystone = new Map(
        await Promise.all(userIds.map(async (u) => [u, (await index.of(u)).map((c) => c.id)] as const)),
      );
      postures = await readPostures(client, domains);
      client.close();
    } catch (e) {
      if (!(e instanceof KeystoneTotpError)) throw e;
      process.stderr.write(`status: [${e.code}] ${e.message} (--no-keystone reports from the state only)\n`);
      return exitCodeFor(e);
    }
  }
  const at = now();
  const rows = buildStatus(resources, keystone, csvUsers, postures);
  const counts = countStatus(rows, at, keystone);
  if (o.format === "json") {
    process.stdout.write(`${JSON.stringify({ at: at.toISOString(), stack: o.stack, counts, users: rows }, null, 2)}\n`);
  } else if (o.format === "csv") {
    process.stdout.write(statusCsv(rows));
  } else {
    process.stdout.write(formatTable(rows));
    const s = counts.byState;
    process.stdout.write(
      `\n${counts.users} users: ${s.ok} ok, ${s.retiring} retiring, ${s["retire-failed"]} retire failed, ` +
        `${s.unmanaged} unmanaged, ` +
        `${s["not-delivered"]} not delivered, ${s["delivery-unconfirmed"]} delivery unconfirmed, ` +
        `${s["not-enrolled"]} not enrolled, ${s.missing} missing; ` +
        `${counts.mfaEnforced} with MFA enforced; ${counts.rotationsDueIn7Days} rotation(s) due within 7 days\n`,
    );
    if (postures) {
      const p = counts.byPosture;
      process.stdout.write(`login posture: ${POSTURES.map((k) => `${p[k]} ${k}`).join(", ")}\n`);
      if (p.open > 0 && !allowTotpOnlyLogin) {
        process.stdout.write(
          `${p.open} user(s) can log in with a TOTP code alone: run 'npm run provision -- up --refresh' to put the tool's rules back\n`,
        );
      }
    }
    for (const r of rows) {
      if (r.retireFailed) process.stdout.write(`${formatRetireFailure({ user: r.user, ...r.retireFailed })}\n`);
      if (r.deliveryUnconfirmed) {
        process.stdout.write(`${formatUnconfirmedDelivery({ user: r.user, ...r.deliveryUnconfirmed })}\n`);
      }
    }
  }
  if (o.html) {
    writePrivate(o.html, renderStatusHtml(`keystone-totp status: stack ${o.stack}`, rows, counts, at));
    process.stderr.write(`status: HTML report written to ${o.html}\n`);
  }
  // A TOTP code alone logging a user in is a weakness unless the operator chose it.
  const attention = rows.some(
    (r) => (r.state !== "ok" && r.state !== "retiring") || (r.posture === "open" && !allowTotpOnlyLogin),
  );
  return attention ? EXIT.failed : EXIT.ok;
}

/**
 * Each user's options and marker, from one user list per domain (never one GET per user),
 * and Keystone's `[auth] methods` (one unauthenticated request).
 */
async function readPostures(client: KeystoneClient, domains: ReadonlySet<string>): Promise<PostureSource> {
  const accounts = new Map<string, AccountOptions>();
  for (const name of domains) {
    const id = await client.domainIdByName(name);
    if (id === undefined) continue;
    for (const u of await client.listUsers(id)) accounts.set(u.id, { options: u.options, marker: u.marker });
  }
  return { methods: await client.authMethods(), accounts };
}

if (import.meta.main) await runCommand({ name: "status", help: HELP }, main);
