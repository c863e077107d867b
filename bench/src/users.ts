/**
 * The bench's users and leftovers: N users `bench-<N>-<i>` in a domain of their own, created
 * before a measurement and deleted after it (Keystone deletes their credentials with them), and
 * what a crashed run leaves behind (its users, stack files and temp folders).
 */
import { readdirSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pool, type RawKeystone } from "./keystone.ts";
import { REPO } from "./local.ts";

/** The domain of the bench's users: nothing else is ever created in it or deleted from it. */
export const DOMAIN = "keystone-totp-bench";
/** Names of the bench's users; only these are deleted. */
const USER_RE = /^bench-\d+-\d+$/;
/** Users created or deleted at once: setting up is not measured, only kept short. */
const SETUP_CONCURRENCY = 8;

/** One user of a measurement. */
export interface BenchUser {
  name: string;
  id: string;
  email: string;
}

/**
 * Creates the users `bench-<n>-1` .. `bench-<n>-<n>` in the bench's domain (`domainId`), without
 * passwords, so that Keystone does no bcrypt.
 */
export function createUsers(ks: RawKeystone, domainId: string, n: number): Promise<BenchUser[]> {
  return pool(
    Array.from({ length: n }, (_, i) => i + 1),
    SETUP_CONCURRENCY,
    async (i) => {
      const name = `bench-${n}-${i}`;
      const email = `${name}@example.com`;
      return { name, email, id: await ks.createUser(name, domainId, email) };
    },
  );
}

/** Deletes the bench's users (those of `onlyN` only, when given); returns how many. */
export async function cleanupUsers(ks: RawKeystone, onlyN?: number): Promise<number> {
  const domainId = await ks.domainId(DOMAIN);
  if (!domainId) return 0;
  const users = (await ks.listUsers(domainId)).filter(
    (u) => USER_RE.test(u.name) && (onlyN === undefined || u.name.startsWith(`bench-${onlyN}-`)),
  );
  await pool(users, SETUP_CONCURRENCY, (u) => ks.deleteUser(u.id));
  return users.length;
}

/** Removes the stack files and temp folders a crashed run left. */
export function cleanupStaleFiles(): void {
  for (const f of readdirSync(REPO)) {
    if (/^Pulumi\.bench-\d+-[0-9a-f]{6}(-\d+)?\.yaml$/.test(f)) rmSync(join(REPO, f), { force: true });
  }
  // Only the folders this bench makes (mkdtemp adds six characters).
  for (const d of readdirSync(os.tmpdir(), { withFileTypes: true })) {
    if (d.isDirectory() && /^kt-bench-\d+-(csv-|cpu-)?[A-Za-z0-9]{6}$/.test(d.name)) {
      rmSync(join(os.tmpdir(), d.name), { recursive: true, force: true });
    }
  }
}

/** The users as the program's users CSV (username,email,domain). */
export function usersCsv(users: readonly BenchUser[]): string {
  return `username,email,domain\n${users.map((u) => `${u.name},${u.email},${DOMAIN}`).join("\n")}\n`;
}
