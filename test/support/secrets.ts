/**
 * A register of every secret a test handles (TOTP secrets, passwords, tokens), written to a
 * 0600 file so that scripts/test.sh can scan the whole test output for them afterwards.
 */
import { appendFileSync, chmodSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO } from "./keystone.ts";

/** Where secrets are registered; scripts/test.sh reads it. */
export const SECRETS_FILE = process.env.KEYSTONE_TOTP_SECRETS_FILE ?? join(REPO, ".local", "test-secrets.txt");

/** Records secrets for the final scan. Values shorter than 8 characters are ignored. */
export function registerSecrets(...values: (string | undefined)[]): void {
  const keep = values.filter((v): v is string => typeof v === "string" && v.length >= 8);
  if (keep.length === 0) return;
  mkdirSync(dirname(SECRETS_FILE), { recursive: true, mode: 0o700 });
  const fresh = !existsSync(SECRETS_FILE);
  appendFileSync(SECRETS_FILE, `${keep.join("\n")}\n`, { mode: 0o600 });
  if (fresh) chmodSync(SECRETS_FILE, 0o600);
}

/** The registered secrets found in `text`, for assertions (never prints them). */
export function leakedIn(text: string, secrets: readonly string[]): number {
  return secrets.filter((s) => s.length >= 8 && text.includes(s)).length;
}
