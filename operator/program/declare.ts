/**
 * The program's second half: one `TotpEnrollment` per fleet member (and its `MfaEnforcement`
 * under `enforceMfa`), one `TotpCredential` per `keystone-totp:credentials` entry, and the
 * stack outputs the operator commands read (summary, users to act on).
 */
import * as pulumi from "@pulumi/pulumi";
import type { MfaOptions } from "../../lib/mfa/posture.ts";
import { TotpCredential } from "../../providers/credential/resource.ts";
import { DEFAULT_UNMANAGED } from "../../providers/credential/types.ts";
import { TotpEnrollment } from "../../providers/enrollment/resource.ts";
import { MfaEnforcement } from "../../providers/mfa/resource.ts";
import { DEFAULT_GRACE_HOURS } from "../../providers/shared/retirement.ts";
import type { CredentialSpec } from "../fleet/credentials.ts";
import { formatShard } from "../fleet/shard.ts";
import type { LoadedFleet } from "./fleet.ts";

/** The posture inputs every resource of the run shares (only those that differ from the defaults). */
function postureOf(fleet: LoadedFleet) {
  return {
    ...(fleet.settings.allowTotpOnlyLogin ? { allowTotpOnlyLogin: true } : {}),
    ...(fleet.settings.replaceOwnRules ? { replaceOwnRules: true } : {}),
  };
}

/**
 * Declares each member's enrollment (and enforcement under `enforceMfa`).
 *
 * @param graceHours - this run's grace window for the users it rotates (`npm run rotate`).
 */
export function declareEnrollments(fleet: LoadedFleet, graceHours: number | undefined): TotpEnrollment[] {
  const { settings, members, authMethods } = fleet;
  const posture = postureOf(fleet);
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
      const grace = m.rotateRequest && graceHours !== undefined ? graceHours : settings.rotationGraceHours;
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
          ...(grace !== DEFAULT_GRACE_HOURS ? { graceHours: grace } : {}),
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
  return enrollments;
}

/** The `keystone-totp:credentials` entries this stack declares: all on the first shard, none on the others. */
export function ownSpecs(fleet: LoadedFleet): readonly CredentialSpec[] {
  const { shard } = fleet.settings;
  return shard === undefined || shard.index === 0 ? fleet.specs : [];
}

/** Declares a credential (no message) for each of this stack's `keystone-totp:credentials` entries. */
export function declareCredentials(fleet: LoadedFleet): TotpCredential[] {
  const posture = postureOf(fleet);
  return ownSpecs(fleet).map(
    (s) =>
      new TotpCredential(s.name, {
        ...s.args,
        issuer: s.args.issuer ?? fleet.settings.issuer,
        // Nothing delivers these accounts' secrets, so nothing could retire a replaced one.
        unmanaged: "keep",
        ...(fleet.authMethods ? { authMethods: fleet.authMethods } : {}),
        ...posture,
        ...(s.secretConfigKey ? { secret: fleet.config.requireSecret(s.secretConfigKey) } : {}),
      }),
  );
}

/** The stack outputs: a summary, and the users the operator commands must act on. */
export function stackOutputs(
  fleet: LoadedFleet,
  enrollments: readonly TotpEnrollment[],
  extra: readonly TotpCredential[],
) {
  const { settings, members } = fleet;
  const specs = ownSpecs(fleet);
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
    fingerprints: Object.fromEntries(specs.map((s, i) => [s.name, extra[i]?.fingerprint])),
    credentialIds: Object.fromEntries(specs.map((s, i) => [s.name, extra[i]?.credentialId])),
  };
}

/** MFA options as a resource input (mutable arrays, as Pulumi's Input types want them). */
function asInput(o: MfaOptions): { enabled: boolean | null; rules: string[][] | null } {
  return { enabled: o.enabled, rules: o.rules ? o.rules.map((r) => [...r]) : null };
}
