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
import { exitCodeFor } from "../lib/errors.ts";
import { resolveKeystoneAuth } from "../lib/keystone/auth.ts";
import { KeystoneClient } from "../lib/keystone/client.ts";
import { readUsersCsv } from "../lib/users/csv.ts";

const [csv, passwordsFile] = process.argv.slice(2);
if (!csv || !passwordsFile) {
  console.error("usage: node scripts/demo-users.ts USERS_CSV PASSWORDS_FILE");
  process.exit(2);
}

try {
  const auth = resolveKeystoneAuth();
  const host = new URL(auth.authUrl).hostname;
  if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host)) {
    console.error(`refusing to create demo users in a Keystone that is not on loopback (${host})`);
    process.exit(2);
  }
  const client = new KeystoneClient(auth);
  const passwords: Record<string, string> = existsSync(passwordsFile)
    ? (JSON.parse(readFileSync(passwordsFile, "utf8")) as Record<string, string>)
    : {};
  let created = 0;
  for (const row of readUsersCsv(csv)) {
    const domainId = (await client.domainIdByName(row.domain)) ?? (await client.createDomain(row.domain));
    if (await client.findUser(row.username, row.domain)) continue;
    const password = `Demo-${randomBytes(9).toString("base64url")}`;
    await client.createUser({ name: row.username, domainId, password, email: row.email });
    passwords[row.key] = password;
    created++;
  }
  writeFileSync(passwordsFile, `${JSON.stringify(passwords, null, 2)}\n`, { mode: 0o600 });
  console.log(`demo users: ${created} created in the local Keystone (passwords in ${passwordsFile})`);
  client.close();
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(exitCodeFor(e));
}
