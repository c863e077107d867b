/**
 * Explicitly declared credentials from the stack config key `keystone-totp:credentials`: a
 * map of resource name to arguments, for a handful of named accounts (service accounts,
 * break-glass admins). Fleets come from the users CSV instead.
 *
 * ```yaml
 * keystone-totp:credentials:
 *   alice: { userName: alice, userDomain: Default, issuer: ACME Cloud, rotationTrigger: "2026-11" }
 *   ops:   { userId: 0123abcd..., secretConfigKey: opsSecret }   # secret from a secret config key
 * ```
 */
import { ConfigError } from "../../lib/errors.ts";
import { DEFAULT_DOMAIN } from "../../providers/credential/types.ts";

/** Arguments accepted per entry (plain values; a supplied secret comes from a secret key). */
export interface CredentialSpecArgs {
  readonly userId?: string;
  readonly userName?: string;
  readonly userDomain?: string;
  readonly issuer?: string;
  readonly account?: string;
  readonly rotationTrigger?: unknown;
}

/** One declared credential. */
export interface CredentialSpec {
  /** Pulumi resource name. */
  readonly name: string;
  readonly args: CredentialSpecArgs;
  /** Name of a secret config key (in this project's namespace) holding a supplied secret. */
  readonly secretConfigKey: string | undefined;
}

const ALLOWED = new Set([
  "userId",
  "userName",
  "userDomain",
  "issuer",
  "account",
  "rotationTrigger",
  "secretConfigKey",
]);
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

/**
 * Validates the `credentials` map.
 *
 * @throws {ConfigError} naming every bad entry and key at once. A plaintext `secret` key is
 *   refused: secrets must come from a secret config key.
 */
export function loadCredentialSpecs(raw: unknown): CredentialSpec[] {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError("keystone-totp:credentials must be a map of resource name to arguments");
  }
  const problems: string[] = [];
  const specs: CredentialSpec[] = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const where = `keystone-totp:credentials.${name}`;
    if (!NAME.test(name)) problems.push(`${where}: name must be 1-128 letters, digits, '.', '_', '@' or '-'`);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      problems.push(`${where}: must be a map of arguments`);
      continue;
    }
    const v = value as Record<string, unknown>;
    for (const key of Object.keys(v)) {
      if (key === "secret") {
        problems.push(
          `${where}.secret: never put a secret in plain config; use secretConfigKey and 'pulumi config set --secret'`,
        );
      } else if (!ALLOWED.has(key)) {
        problems.push(`${where}.${key}: unknown argument (allowed: ${[...ALLOWED].join(", ")})`);
      }
    }
    for (const key of ["userId", "userName", "userDomain", "issuer", "account", "secretConfigKey"]) {
      if (v[key] !== undefined && typeof v[key] !== "string") problems.push(`${where}.${key}: must be a string`);
    }
    if (v.userId === undefined && v.userName === undefined) problems.push(`${where}: give userId or userName`);
    const { secretConfigKey, ...args } = v;
    specs.push({
      name,
      args: args as CredentialSpecArgs,
      secretConfigKey: typeof secretConfigKey === "string" ? secretConfigKey : undefined,
    });
  }
  if (problems.length > 0) throw new ConfigError(`invalid credentials config:\n  ${problems.join("\n  ")}`);
  return specs;
}

/** A user the CSV enrolls, as the overlap check needs it. */
export interface FleetUserRef {
  /** The user key (`username@domain`), also the resource name. */
  readonly key: string;
  readonly userId: string;
  readonly username: string;
  readonly domain: string;
}

/**
 * Entries of `keystone-totp:credentials` that name a user the users CSV already enrolls, by ID
 * or by name and domain (case-insensitively, as Keystone compares them), or that take a CSV
 * user's key as their name. Two managed credentials for one Keystone user would each count the
 * other's as unmanaged and retire it at the next rotation.
 *
 * @returns one line per clashing entry, naming the entry and the CSV user; empty when none.
 */
export function clashesWithFleet(specs: readonly CredentialSpec[], fleet: readonly FleetUserRef[]): string[] {
  const byId = new Map(fleet.map((u) => [u.userId, u]));
  const byName = new Map(fleet.map((u) => [`${u.username}\n${u.domain}`.toLowerCase(), u]));
  const byKey = new Map(fleet.map((u) => [u.key.toLowerCase(), u]));
  const out: string[] = [];
  for (const s of specs) {
    const named = s.args.userName
      ? byName.get(`${s.args.userName}\n${s.args.userDomain ?? DEFAULT_DOMAIN}`.toLowerCase())
      : undefined;
    const u = (s.args.userId ? byId.get(s.args.userId) : undefined) ?? named ?? byKey.get(s.name.toLowerCase());
    if (u) {
      out.push(
        `keystone-totp:credentials.${s.name}: ${u.key} is also in the users CSV; ` +
          "enroll a user in one place only (remove the entry or the row)",
      );
    }
  }
  return out;
}
