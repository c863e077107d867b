/**
 * Scans files for secrets registered by the tests (TOTP secrets, passwords, passphrases,
 * tokens) and fails if any appears. Prints only counts and file names, never a secret.
 *
 * Usage: node scripts/scan-secrets.ts SECRETS_FILE PATH...   (folders are scanned recursively)
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** Shortest value treated as a secret; shorter ones would match by chance. */
const MIN_SECRET_CHARS = 8;

function files(path: string): string[] {
  if (!existsSync(path)) return [];
  if (statSync(path).isDirectory()) return readdirSync(path).flatMap((f) => files(join(path, f)));
  return [path];
}

const [secretsFile, ...paths] = process.argv.slice(2);
if (!secretsFile || paths.length === 0) {
  console.error("usage: node scripts/scan-secrets.ts SECRETS_FILE PATH...");
  process.exit(2);
}
const secrets = existsSync(secretsFile)
  ? [...new Set(readFileSync(secretsFile, "utf8").split("\n"))].filter((s) => s.length >= MIN_SECRET_CHARS)
  : [];
let leaks = 0;
let scanned = 0;
for (const file of paths.flatMap(files)) {
  if (file === secretsFile) continue;
  scanned++;
  const text = readFileSync(file, "utf8");
  const found = secrets.filter((s) => text.includes(s)).length;
  if (found > 0) {
    leaks += found;
    console.error(`secret scan: ${found} secret(s) found in ${file}`);
  }
}
console.log(`secret scan: ${secrets.length} secrets checked in ${scanned} files, ${leaks} leaks`);
process.exit(leaks > 0 || (secrets.length === 0 && scanned > 1 && process.env.CI === "true") ? 1 : 0);
