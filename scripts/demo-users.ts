/**
 * Creates the users of a CSV (and their domains) in the LOCAL demo Keystone, each with a
 * random password, so that `npm run demo` has someone to enroll. The passwords go to a 0600
 * file, never to the terminal. Not for production Keystones: it refuses any auth URL that
 * is not on loopback.
 *
 * Usage: node scripts/demo-users.ts USERS_CSV PASSWORDS_FILE
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { ConfigError, EXIT } from "../lib/errors.ts";
import { resolveKeystoneAuth } from "../lib/keystone/auth.ts";
import { KeystoneClient } from "../lib/keystone/client.ts";
import { readUsersCsv } from "../lib/users/csv.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { createDomain, createUser } from "./demo/keystone-admin.ts";

/** Host names of loopback, the only place demo users may be made. */
const LOOPBACK_HOSTS: readonly string[] = ["127.0.0.1", "localhost", "::1", "[::1]"];

export const HELP = `usage: node scripts/demo-users.ts USERS_CSV PASSWORDS_FILE

Creates the CSV's users (and domains) missing from the local demo Keystone (OS_* variables),
each with a random password written to PASSWORDS_FILE (mode 0600), never to the terminal.
Refuses a Keystone that is not on loopback.

exit codes: 0 ok, 2 bad input (CSV, settings, not loopback), 3 Keystone, 64 usage
`;

async function main(argv: readonly string[]): Promise<number> {
  const { positionals } = parseCommandLine(
    { options: {}, positionals: [2, 2], positionalsName: "USERS_CSV and PASSWORDS_FILE" },
    argv,
  );
  const [csv, passwordsFile] = positionals as [string, string];
  const auth = resolveKeystoneAuth();
  const host = new URL(auth.authUrl).hostname;
  if (!LOOPBACK_HOSTS.includes(host)) {
    throw new ConfigError(`refusing to create demo users in a Keystone that is not on loopback (${host})`);
  }
  const client = new KeystoneClient(auth);
  try {
    const passwords: Record<string, string> = existsSync(passwordsFile)
      ? (JSON.parse(readFileSync(passwordsFile, "utf8")) as Record<string, string>)
      : {};
    let created = 0;
    for (const row of readUsersCsv(csv)) {
      const domainId = (await client.domainIdByName(row.domain)) ?? (await createDomain(client, row.domain));
      if (await client.findUser(row.username, row.domain)) continue;
      const password = `Demo-${randomBytes(9).toString("base64url")}`;
      await createUser(client, { name: row.username, domainId, password, email: row.email });
      passwords[row.key] = password;
      created++;
    }
    writeFileSync(passwordsFile, `${JSON.stringify(passwords, null, 2)}\n`, { mode: 0o600 });
    console.log(`demo users: ${created} created in the local Keystone (passwords in ${passwordsFile})`);
    return EXIT.ok;
  } finally {
    client.close();
  }
}

if (import.meta.main) await runCommand({ name: "demo-users", help: HELP }, main);
