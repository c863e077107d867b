/**
 * The state of the fleet, one line per user: enrolled since, last delivery, next rotation,
 * MFA enforced, and whether Keystone holds exactly the credentials the stack manages. As a
 * table, JSON, CSV (safe to open in a spreadsheet) or a self-contained HTML page.
 *
 * Usage: node scripts/status.ts [options]      (npm run status -- ...)
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { KeystoneTotpError } from "../providers/errors.ts";
import { resolveKeystoneAuth } from "../providers/keystone/auth.ts";
import { KeystoneClient } from "../providers/keystone/client.ts";
import { toCsv } from "../providers/report/csv.ts";
import { renderStatusHtml } from "../providers/report/html.ts";
import {
  buildStatus,
  countStatus,
  formatTable,
  STATUS_COLUMNS,
  type StateResource,
  type StatusRow,
} from "../providers/report/status.ts";
import { now } from "../providers/util/clock.ts";
import { defaultEngineOptions, EXIT, openStack, readStackCsv, runMain } from "./lib/engine.ts";

const HELP = `usage: npm run status -- [options]

One line per user of the stack: state, enrolled since, last delivery, next scheduled
rotation, MFA enforced, and the TOTP credentials Keystone actually holds for the user
(checked against what the stack manages). Changes nothing, sends nothing.

states: ok, retiring (an old credential still valid in its grace window), unmanaged
(Keystone holds TOTP credentials the stack does not manage), not-delivered (the next up
sends the message), not-enrolled (in the CSV, not yet applied), missing (the managed
credential is gone from Keystone: run 'npm run provision -- refresh', then up)

options:
  --stack NAME           stack (default: dev)
  --config-file FILE     stack config file (default: Pulumi.NAME.yaml)
  --json                 JSON: {at, stack, counts, users: [...]}, with credential IDs
  --csv                  CSV, one record per user (cells that a spreadsheet would run as a
                         formula are quoted)
  --html FILE            also write a self-contained HTML report (counts, charts, table)
  --no-keystone          report from the stack's state only; do not ask Keystone
  --help                 this text

exit codes: 0 every user ok or retiring, 1 some user needs attention (missing,
not-delivered, unmanaged, not-enrolled), 2 bad config, 3 Keystone, 64 usage
`;

interface StatusOptions {
  stack: string;
  configFile: string | undefined;
  format: "table" | "json" | "csv";
  html: string | undefined;
  keystone: boolean;
}

function usage(message: string): never {
  process.stderr.write(`status: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
}

function parseArgs(argv: string[]): StatusOptions {
  const o: StatusOptions = { stack: "dev", configFile: undefined, format: "table", html: undefined, keystone: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") {
      process.stdout.write(HELP);
      process.exit(EXIT.ok);
    } else if (a === "--stack" || a === "-s") o.stack = value();
    else if (a === "--config-file") o.configFile = resolve(value());
    else if (a === "--json") o.format = "json";
    else if (a === "--csv") o.format = "csv";
    else if (a === "--html") o.html = resolve(value());
    else if (a === "--no-keystone") o.keystone = false;
    else usage(`unknown option '${a}'`);
  }
  return o;
}

/** Writes a report readable by its owner only: 0600, in a folder made 0700 if we make it. */
function writePrivate(file: string, text: string): void {
  const dir = dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

function csvOf(rows: readonly StatusRow[]): string {
  return toCsv(
    [...STATUS_COLUMNS, "userId", "credentialId", "retireAfter"],
    rows.map((r) => [
      r.user,
      r.state,
      r.enrolledSince,
      r.lastDelivery,
      r.nextRotation,
      r.mfaEnforced,
      r.keystoneCredentialIds?.length,
      r.retiring.length,
      r.unmanagedIds.length,
      r.email,
      r.userId,
      r.credentialId,
      r.retireAfter,
    ]),
  );
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const engine = { ...defaultEngineOptions(), stack: o.stack, configFile: o.configFile };
  const stack = await openStack(o.stack, () => ({}), { create: false, configFile: o.configFile });
  const exported = await stack.exportStack();
  const resources = ((exported.deployment as { resources?: StateResource[] } | undefined)?.resources ?? []).filter(
    (r) => typeof r.urn === "string" && typeof r.type === "string",
  );
  let csvUsers: string[] = [];
  try {
    csvUsers = ((await readStackCsv(stack, engine)) ?? []).map((r) => r.key);
  } catch (e) {
    if (!(e instanceof KeystoneTotpError)) throw e;
    process.stderr.write(
      `status: users CSV not read, so users not yet enrolled are not listed: [${e.code}] ${e.message}\n`,
    );
  }
  let keystone: Map<string, readonly string[]> | undefined;
  if (o.keystone) {
    const config = await stack.getAllConfig();
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
      client.close();
    } catch (e) {
      if (!(e instanceof KeystoneTotpError)) throw e;
      process.stderr.write(`status: [${e.code}] ${e.message} (--no-keystone reports from the state only)\n`);
      return EXIT.keystone;
    }
  }
  const at = now();
  const rows = buildStatus(resources, keystone, csvUsers);
  const counts = countStatus(rows, at, keystone);
  if (o.format === "json") {
    process.stdout.write(`${JSON.stringify({ at: at.toISOString(), stack: o.stack, counts, users: rows }, null, 2)}\n`);
  } else if (o.format === "csv") {
    process.stdout.write(csvOf(rows));
  } else {
    process.stdout.write(formatTable(rows));
    const s = counts.byState;
    process.stdout.write(
      `\n${counts.users} users: ${s.ok} ok, ${s.retiring} retiring, ${s.unmanaged} unmanaged, ` +
        `${s["not-delivered"]} not delivered, ${s["not-enrolled"]} not enrolled, ${s.missing} missing; ` +
        `${counts.mfaEnforced} with MFA enforced; ${counts.rotationsDueIn7Days} rotation(s) due within 7 days\n`,
    );
  }
  if (o.html) {
    writePrivate(o.html, renderStatusHtml(`keystone-totp status: stack ${o.stack}`, rows, counts, at));
    process.stderr.write(`status: HTML report written to ${o.html}\n`);
  }
  const attention = rows.some((r) => r.state !== "ok" && r.state !== "retiring");
  return attention ? EXIT.failed : EXIT.ok;
}

await runMain("status", main);
