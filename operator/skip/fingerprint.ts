/**
 * The fingerprint of everything a run of one stack reads besides its state and the clock: the
 * tool's own code, the stack's settings as stored (secrets as ciphertext), the environment
 * that configures it (no secret values), the stack's users' CSV rows and those users as
 * Keystone has them, Keystone's `[auth] methods` and who the tool logs in as. Two runs with
 * the same fingerprint, the same state and no clock due declare the same resources with the
 * same inputs: the second changes nothing.
 *
 * Only hashes leave this module (SHA-256, hex): a fingerprint says whether something changed,
 * never what.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { type KeystoneUser, sortedRuleSet } from "../../lib/keystone/users.ts";
import type { UserRow } from "../../lib/users/csv.ts";
import { sortedKeys } from "../../lib/util/props.ts";

/** Folders (under the project) whose code decides what a run declares and does. */
const CODE_DIRS = ["lib", "providers", "operator"] as const;
/** Files of those folders that are code. */
const CODE_FILE = /\.(ts|cjs|js|json)$/;
/** Project files that decide it too (versions of the engine's SDK, the package). */
const CODE_FILES = ["package.json", "package-lock.json"] as const;
/** Environment variables that configure a run (Keystone, mail, the tool). */
const RUN_ENV = /^(OS_|KEYSTONE_TOTP_|SMTP_)/;
/** Of those, the ones a run ignores or that only say when (the clock is checked apart). */
const IGNORED_ENV = new Set([
  "KEYSTONE_TOTP_NOW",
  "KEYSTONE_TOTP_RUN_TOKEN",
  "KEYSTONE_TOTP_NO_SKIP",
  "KEYSTONE_TOTP_SKIP_DOCTOR",
  "OS_PASSCODE",
]);
/** Names of secrets: only their presence is taken, never their value. */
const SECRET_ENV = /PASS|TOKEN|SECRET|KEY|CREDENTIAL/i;

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

let codeDigestCache: { readonly root: string; readonly digest: string } | undefined;

/**
 * The digest of the tool's code under `root` (names and contents), computed once per process.
 * A new version, or a local change, runs every stack once.
 */
export function codeDigest(root: string): string {
  if (codeDigestCache?.root === root) return codeDigestCache.digest;
  const h = createHash("sha256");
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (name !== "node_modules") walk(path);
      } else if (CODE_FILE.test(name)) {
        h.update(relative(root, path)).update("\0").update(readFileSync(path)).update("\0");
      }
    }
  };
  for (const d of CODE_DIRS) if (existsSync(join(root, d))) walk(join(root, d));
  for (const f of CODE_FILES)
    if (existsSync(join(root, f)))
      h.update(f)
        .update("\0")
        .update(readFileSync(join(root, f)));
  codeDigestCache = { root, digest: h.digest("hex") };
  return codeDigestCache.digest;
}

/** The digest of the environment that configures a run; secrets count by name only. */
export function environmentDigest(env: NodeJS.ProcessEnv = process.env): string {
  const parts = Object.keys(env)
    .filter((k) => RUN_ENV.test(k) && !IGNORED_ENV.has(k))
    .sort()
    .map((k) => (SECRET_ENV.test(k) ? `${k}=(set)` : `${k}=${env[k]}`));
  return sha256(parts.join("\n"));
}

/** A user of the stack as the program sees it: the CSV row (its place aside) and Keystone's record. */
export interface FingerprintUser {
  readonly row: UserRow;
  readonly user: KeystoneUser;
}

/** Everything {@link runFingerprint} hashes. */
export interface FingerprintParts {
  /** {@link codeDigest}. */
  readonly code: string;
  /** The stack's stored settings, as text (the config file; secrets are ciphertext there). */
  readonly config: string;
  /** {@link environmentDigest}. */
  readonly environment: string;
  /** The stack's share of the users CSV, matched to Keystone's users. */
  readonly users: readonly FingerprintUser[];
  /** Keystone's `[auth] methods`; undefined when the stack has no users. */
  readonly authMethods: readonly string[] | undefined;
  /** The ID of the user the tool logs in as; undefined when the stack has no users. */
  readonly operatorId: string | undefined;
}

/** A user as the fingerprint takes it: MFA rules as sets (see sortedRuleSet), everything else as listed. */
function userForPrint(user: KeystoneUser): unknown {
  const options = { ...user.options };
  const rules = options.multi_factor_auth_rules;
  if (Array.isArray(rules)) options.multi_factor_auth_rules = sortedRuleSet(rules);
  return sortedKeys({ ...user, options });
}

/**
 * The fingerprint of one stack's run inputs (hex SHA-256). Row order, line numbers and the
 * order Keystone lists options in do not count (a sorted CSV declares the same resources);
 * every field the program can read does.
 */
export function runFingerprint(p: FingerprintParts): string {
  const users = p.users
    .map(({ row, user }) => {
      const { line: _line, ...fields } = row;
      return JSON.stringify(sortedKeys([fields, userForPrint(user)]));
    })
    .sort();
  return sha256(
    JSON.stringify({
      v: 1,
      code: p.code,
      config: sha256(p.config),
      environment: p.environment,
      users,
      authMethods: p.authMethods ?? null,
      operatorId: p.operatorId ?? null,
    }),
  );
}
