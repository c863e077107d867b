/**
 * The program's first half: read the stack's settings, load the fleet and check it, all before
 * any resource is declared (so before anything is written).
 *
 *   settings + users CSV (validated whole) -> Keystone users (one list per domain) -> the
 *   operator's own account refused -> clashes with `keystone-totp:credentials` refused ->
 *   fleet members -> Keystone's [auth] methods and the rules they allow
 */
import { existsSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../../lib/errors.ts";
import { type KeystoneAuth, resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { admitsTotpAlone, effectiveRules, enforcedRules } from "../../lib/mfa/posture.ts";
import { readUsersCsv } from "../../lib/users/csv.ts";
import { resolveUsers } from "../../lib/users/resolve.ts";
import { type CredentialSpec, clashesWithFleet, loadCredentialSpecs } from "../fleet/credentials.ts";
import { type FleetMember, planFleet, type RotateRequest } from "../fleet/fleet.ts";
import { refuseOperatorSelf } from "../fleet/operator.ts";
import { type FleetSettings, resolveFleetSettings } from "../fleet/settings.ts";

/** What the program declares resources from. */
export interface LoadedFleet {
  readonly config: pulumi.Config;
  readonly settings: FleetSettings;
  /** `keystone-totp:credentials` entries (a credential only, no message). */
  readonly specs: readonly CredentialSpec[];
  /** The users of the CSV (this stack's shard of them), resolved and planned. */
  readonly members: readonly FleetMember[];
  /** Keystone's `[auth] methods`, comma-separated; undefined when no user is enrolled. */
  readonly authMethods: string | undefined;
}

/**
 * Reads the settings, validates the users CSV completely, resolves its users in Keystone and
 * refuses what must never be enrolled: the operator's own account, a user declared twice.
 *
 * @throws {ConfigError} bad settings, a user declared twice, enforcement rules Keystone cannot hold.
 * @throws {CsvError} a bad users CSV (every problem, with file, line and column).
 * @throws {KeystoneTotpError} `E_OPERATOR_SELF`, `E_USER_NOT_FOUND`, Keystone failures.
 */
export async function loadFleet(rotate: RotateRequest | undefined): Promise<LoadedFleet> {
  const config = new pulumi.Config();
  // runtime.getConfig reads a value without the secret-use warning; nothing read here is logged.
  const raw = (key: string) => pulumi.runtime.getConfig(key);
  const settings = resolveFleetSettings((k) => raw(`keystone-totp:${k}`), process.cwd());
  const specs = loadCredentialSpecs(config.getObject<unknown>("credentials") ?? {});
  const haveCsv = settings.usersCsvExplicit || existsSync(settings.usersCsv) || specs.length === 0;

  // The CSV is validated completely before anything talks to Keystone or the mail server.
  const rows = haveCsv ? readUsersCsv(settings.usersCsv) : [];
  // Credential entries alone need no Keystone settings to be checked: the providers report those.
  const auth = rows.length > 0 ? resolveKeystoneAuth({ config: raw }) : specs.length > 0 ? authIfSet(raw) : undefined;
  const client = auth && rows.length > 0 ? KeystoneClient.shared(auth) : undefined;
  const resolved = client ? await resolveUsers(client, rows) : [];
  // The account the tool logs in with is never enrolled, on any release: MFA rules on it would
  // lock the tool out of MFA administration on Keystone 30 (docs/operator-account.md). Refused
  // here, by name, before any resource is declared (so before anything is written). Without CSV
  // rows, no request is made: credential entries are compared with the configured login (a bad
  // entry still fails preview without a request to Keystone), and each TotpCredential refuses
  // the operator's own user ID again before it writes (providers/credential/handlers.ts).
  if (auth) {
    refuseOperatorSelf(
      client ? await client.whoami() : configuredLogin(auth),
      settings.usersCsv,
      resolved.map(({ row, user }) => ({
        line: row.line,
        username: row.username,
        domain: row.domain,
        userId: user.id,
      })),
      specs,
    );
  }
  const clashes = clashesWithFleet(
    specs,
    resolved.map(({ row, user }) => ({ key: row.key, userId: user.id, username: row.username, domain: row.domain })),
  );
  if (clashes.length > 0) throw new ConfigError(`a user is declared twice:\n  ${clashes.join("\n  ")}`);
  const members = planFleet(resolved, settings, rotate);

  // Keystone's [auth] methods, probed once per run: the rules the providers write name only
  // enabled methods (before Keystone 28, a rule of missing methods would admit any login).
  const methods = client && members.length > 0 ? await client.authMethods() : undefined;
  if (methods) checkRules(settings, members, methods);
  if (members.length > 0 && !settings.smtp) {
    pulumi.log.info(`keystone-totp: no smtpUrl configured: enrollment messages are written to ${settings.outboxDir}`);
  }
  return { config, settings, specs, members, authMethods: methods?.join(",") };
}

/** The Keystone settings when complete; undefined when not (the providers report that). */
function authIfSet(raw: (key: string) => string | undefined): KeystoneAuth | undefined {
  try {
    return resolveKeystoneAuth({ config: raw });
  } catch {
    return undefined;
  }
}

/** Who the configured login is, as far as the settings tell without asking Keystone. */
function configuredLogin(auth: KeystoneAuth) {
  return {
    userId: auth.userId ?? "",
    userName: auth.userName ?? "",
    userDomainId: auth.userDomainId ?? "",
    userDomainName: auth.userDomainName ?? "",
  };
}

/**
 * Refuses enforcement rules Keystone's methods cannot hold, and warns about users whose own
 * rules let a TOTP code alone in (not enrolled unless `replaceOwnRules`).
 *
 * @throws {ConfigError} `keystone-totp:enforceMfa` with rules that cannot be written.
 */
function checkRules(settings: FleetSettings, members: readonly FleetMember[], methods: readonly string[]): void {
  if (settings.enforceMfa) {
    try {
      enforcedRules({ methods, ...settingsForRules(settings) });
    } catch (e) {
      throw new ConfigError(`keystone-totp:enforceMfa: ${(e as Error).message}`);
    }
  }
  if (settings.allowTotpOnlyLogin || settings.replaceOwnRules) return;
  const open = members.filter(
    (m) => m.previousMfa && effectiveRules(m.previousMfa).length > 0 && admitsTotpAlone(m.previousMfa, methods),
  );
  if (open.length > 0) {
    pulumi.log.warn(
      `keystone-totp: ${open.length} user(s) have MFA rules of their own that let a TOTP code alone log in and ` +
        `are not enrolled (set keystone-totp:replaceOwnRules to replace them): ${open.map((m) => m.name).join(", ")}`,
    );
  }
}

/** The settings that shape the rules, as posture.ts takes them. */
function settingsForRules(s: FleetSettings) {
  return {
    allowTotpOnlyLogin: s.allowTotpOnlyLogin,
    refuseApplicationCredentials: s.refuseApplicationCredentials,
    replaceOwnRules: s.replaceOwnRules,
  };
}
