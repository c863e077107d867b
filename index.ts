/**
 * The keystone-totp Pulumi program: read config, load the fleet, declare the resources,
 * export a summary.
 *
 *   users CSV -> validated rows -> Keystone users (one list per domain) -> per user:
 *   TotpEnrollment (the credential and the message with its QR code) -> MfaEnforcement (opt-in)
 *
 * Accounts listed in the stack config map `keystone-totp:credentials` get a credential only.
 */
import { existsSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, KeystoneTotpError } from "./lib/errors.ts";
import { resolveKeystoneAuth } from "./lib/keystone/auth.ts";
import { KeystoneClient } from "./lib/keystone/client.ts";
import { admitsTotpAlone, effectiveRules, enforcedRules, type MfaOptions } from "./lib/mfa/posture.ts";
import { readUsersCsv } from "./lib/users/csv.ts";
import { resolveUsers } from "./lib/users/resolve.ts";
import { clashesWithFleet, loadCredentialSpecs } from "./operator/fleet/credentials.ts";
import { planFleet, type RotateRequest } from "./operator/fleet/fleet.ts";
import { resolveFleetSettings } from "./operator/fleet/settings.ts";
import { formatShard } from "./operator/fleet/shard.ts";
import { TotpCredential } from "./providers/credential/resource.ts";
import { DEFAULT_UNMANAGED } from "./providers/credential/types.ts";
import { DEFAULT_GRACE_HOURS } from "./providers/delivery/types.ts";
import { TotpEnrollment } from "./providers/enrollment/resource.ts";
import { MfaEnforcement } from "./providers/mfa/resource.ts";
import { omitResourceStackTraces } from "./providers/stack-traces.ts";

/** Set to 1 to let the SDK's debug messages reach the engine (shown by `pulumi up --debug`). */
const SDK_DEBUG_ENV = "KEYSTONE_TOTP_SDK_DEBUG";
// The SDK sends the engine three debug messages per resource it registers ("Registering
// resource", "RPC prepared", "RPC finished"), each a gRPC call, one after another, that the
// engine decodes and drops unless run with --debug: on a no-op up, about a sixth of the program's
// CPU and part of the engine's. The operator commands never ask for --debug.
if (!/^(1|true|yes)$/i.test(process.env[SDK_DEBUG_ENV] ?? "")) {
  (pulumi.log as { debug: (...args: unknown[]) => Promise<void> }).debug = () => Promise.resolve();
}

/** What an operator command asks of one run, beyond the stack's configuration. */
export interface ProgramOptions {
  /** Rotate these users now (`npm run rotate`). */
  readonly rotate?: RotateRequest | undefined;
  /** Grace window for this run's rotations, in hours, instead of `rotationGraceHours`. */
  readonly graceHours?: number | undefined;
  /** Told which users this run declares (resource names), for progress reporting. */
  readonly onPlan?: ((plan: { delivered: string[]; credentialOnly: string[] }) => void) | undefined;
}

/**
 * The program: returns the stack outputs. The default export, so that both the Node.js
 * language host (`pulumi up`) and the Automation API (`scripts/provision.ts`) can run it.
 */
export default async function program(options: ProgramOptions = {}) {
  // A fleet's state is rewritten after every step: the ~500 bytes of file paths Pulumi would
  // record per resource are not worth that (see stack-traces.ts).
  omitResourceStackTraces();
  try {
    return await main(options);
  } catch (e) {
    // Our errors carry a complete message; a stack trace would only bury it.
    if (e instanceof KeystoneTotpError) throw new pulumi.RunError(`[${e.code}] ${e.message}`);
    throw e;
  }
}

async function main(options: ProgramOptions) {
  const config = new pulumi.Config();
  // runtime.getConfig reads a value without the secret-use warning; nothing read here is logged.
  const raw = (key: string) => pulumi.runtime.getConfig(key);
  const settings = resolveFleetSettings((k) => raw(`keystone-totp:${k}`), process.cwd());
  const specs = loadCredentialSpecs(config.getObject<unknown>("credentials") ?? {});
  const haveCsv = settings.usersCsvExplicit || existsSync(settings.usersCsv) || specs.length === 0;

  // The CSV is validated completely before anything talks to Keystone or the mail server.
  const rows = haveCsv ? readUsersCsv(settings.usersCsv) : [];
  const client = rows.length > 0 ? KeystoneClient.shared(resolveKeystoneAuth({ config: raw })) : undefined;
  const resolved = client ? await resolveUsers(client, rows) : [];
  const clashes = clashesWithFleet(
    specs,
    resolved.map(({ row, user }) => ({ key: row.key, userId: user.id, username: row.username, domain: row.domain })),
  );
  if (clashes.length > 0) throw new ConfigError(`a user is declared twice:\n  ${clashes.join("\n  ")}`);
  const members = planFleet(resolved, settings, options.rotate);

  // Keystone's [auth] methods, probed once per run: the rules the providers write name only
  // enabled methods (before Keystone 28, a rule of missing methods would admit any login).
  const methods = client && members.length > 0 ? await client.authMethods() : undefined;
  const authMethods = methods?.join(",");
  const posture = {
    ...(settings.allowTotpOnlyLogin ? { allowTotpOnlyLogin: true } : {}),
    ...(settings.replaceOwnRules ? { replaceOwnRules: true } : {}),
  };
  if (client && methods && settings.enforceMfa) {
    try {
      enforcedRules({ methods, ...settingsForRules(settings) });
    } catch (e) {
      throw new ConfigError(`keystone-totp:enforceMfa: ${(e as Error).message}`);
    }
    // Enforcement on the account the tool logs in with would lock the tool out of Keystone.
    const me = (await client.whoami()).userId;
    const self = members.find((m) => m.userId === me);
    if (self) {
      throw new ConfigError(
        `user ${self.name} is the account keystone-totp logs in with: enforcing MFA on it would lock the tool out. ` +
          "Remove it from the users CSV, or log in as another administrator.",
      );
    }
  }
  if (methods && !settings.allowTotpOnlyLogin && !settings.replaceOwnRules) {
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

  if (members.length > 0 && !settings.smtp) {
    pulumi.log.info(`keystone-totp: no smtpUrl configured: enrollment messages are written to ${settings.outboxDir}`);
  }

  options.onPlan?.({
    delivered: members.map((m) => m.name),
    credentialOnly: settings.shard === undefined || settings.shard.index === 0 ? specs.map((s) => s.name) : [],
  });

  const enrollments: TotpEnrollment[] = [];
  // The SDK records a stack trace (`new Error().stack`) on each of the hundred-odd promises it
  // makes while a resource is declared, for its promise-leak report: at 10 frames each, capturing
  // and formatting them was a third of the program's CPU on a no-op run. The declarations are
  // synchronous, so traces are off only while they run; our errors carry their own messages.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (const m of members) {
      // A grace window given to `rotate` applies to the users it rotates, nobody else.
      const graceHours =
        m.rotateRequest && options.graceHours !== undefined ? options.graceHours : settings.rotationGraceHours;
      // Values equal to the defaults are left out: every byte is stored once per user and rewritten
      // at every checkpoint of the run.
      const enrollment = new TotpEnrollment(
        m.name,
        {
          userId: m.userId,
          username: m.username,
          domain: m.domain,
          email: m.email,
          ...(m.displayName !== m.username ? { displayName: m.displayName } : {}),
          issuer: m.issuer,
          account: m.account,
          ...(m.rotationDays > 0 ? { rotationDays: m.rotationDays } : {}),
          ...(m.rotateRequest ? { rotateRequest: m.rotateRequest } : {}),
          ...(settings.unmanagedCredentials !== DEFAULT_UNMANAGED ? { unmanaged: settings.unmanagedCredentials } : {}),
          ...(m.resendTrigger ? { resendTrigger: m.resendTrigger } : {}),
          ...(graceHours !== DEFAULT_GRACE_HOURS ? { graceHours } : {}),
          ...(authMethods ? { authMethods } : {}),
          ...posture,
          ...(m.previousMfa ? { previousMfa: asInput(m.previousMfa) } : {}),
          ...(settings.enforceMfa ? { enforceMfa: true } : {}),
        },
        { aliases: m.aliases.map((name) => ({ name })) },
      );
      enrollments.push(enrollment);
      if (settings.enforceMfa) {
        new MfaEnforcement(
          m.name,
          {
            userId: m.userId,
            userKey: m.name,
            deliveredAt: enrollment.deliveredAt,
            userChecked: true,
            ...(authMethods ? { authMethods } : {}),
            ...posture,
            ...(settings.refuseApplicationCredentials ? { refuseApplicationCredentials: true } : {}),
            ...(m.previousMfa ? { previousMfa: asInput(m.previousMfa) } : {}),
          },
          { aliases: m.aliases.map((name) => ({ name })) },
        );
      }
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }

  // Individually declared accounts belong to one stack of a split fleet: the first.
  const ownSpecs = settings.shard === undefined || settings.shard.index === 0 ? specs : [];
  const extra = ownSpecs.map(
    (s) =>
      new TotpCredential(s.name, {
        ...s.args,
        issuer: s.args.issuer ?? settings.issuer,
        // Nothing delivers these accounts' secrets, so nothing could retire a replaced one.
        unmanaged: "keep",
        ...(authMethods ? { authMethods } : {}),
        ...posture,
        ...(s.secretConfigKey ? { secret: config.requireSecret(s.secretConfigKey) } : {}),
      }),
  );

  return {
    summary: {
      users: members.length,
      credentials: members.length + extra.length,
      mail: settings.smtp ? "smtp" : `outbox: ${settings.outboxDir}`,
      mfaEnforced: settings.enforceMfa,
      shard: settings.shard === undefined ? "all" : formatShard(settings.shard),
    },
    // Users whose replaced credentials Keystone would not delete (still valid): the operator
    // commands end with exit 3 on them (operator/commands/retire-failed.ts).
    retireFailed: pulumi
      .all(enrollments.map((e) => e.retireFailed))
      .apply((fs) => fs.flatMap((f, i) => (f ? [{ user: members[i]?.name ?? "", ...f }] : []))),
    // Users whose message may or may not have reached the mail server (the credential was kept;
    // the next run sends it again): the operator commands end with exit 4 on them
    // (operator/commands/delivery-unconfirmed.ts).
    deliveryUnconfirmed: pulumi
      .all(enrollments.map((e) => e.deliveryUnconfirmed))
      .apply((us) =>
        us.flatMap((u, i) =>
          u ? [{ user: members[i]?.name ?? "", at: u.at, code: u.code, error: u.error, reason: u.reason }] : [],
        ),
      ),
    deliveries: pulumi
      .all(enrollments.map((d) => d.deliveredAt))
      .apply((at) => at.filter((a) => typeof a === "string" && a !== "").length),
    fingerprints: Object.fromEntries(ownSpecs.map((s, i) => [s.name, extra[i]?.fingerprint])),
    credentialIds: Object.fromEntries(ownSpecs.map((s, i) => [s.name, extra[i]?.credentialId])),
  };
}

/** The settings that shape the rules, as posture.ts takes them. */
function settingsForRules(s: ReturnType<typeof resolveFleetSettings>) {
  return {
    allowTotpOnlyLogin: s.allowTotpOnlyLogin,
    refuseApplicationCredentials: s.refuseApplicationCredentials,
    replaceOwnRules: s.replaceOwnRules,
  };
}

/** MFA options as a resource input (mutable arrays, as Pulumi's Input types want them). */
function asInput(o: MfaOptions): { enabled: boolean | null; rules: string[][] | null } {
  return { enabled: o.enabled, rules: o.rules ? o.rules.map((r) => [...r]) : null };
}
