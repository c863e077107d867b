/**
 * The `doctor`: every preflight check in order, as one report, in text or JSON.
 *
 * Order: the operator's Keystone settings; Keystone reachable, TLS, operator token, the
 * operator's own MFA rules, credential management, TOTP method, clock skew, the staging round
 * trip on a throwaway user; then (with a CSV) the file, its users, their credentials and MFA
 * rules, expiring passwords, and their login posture (posture.ts); then mail. Nothing is ever
 * written to the operator's own user or to an existing user. A check whose prerequisite failed
 * is reported as skipped. The exit code is that of the first failure (see `exitCodeForResults`).
 */
import { ConfigError } from "../../lib/errors.ts";
import { type KeystoneAuth, resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import type { Transport } from "../../lib/keystone/http.ts";
import type { Clock } from "./clock.ts";
import { checkClock } from "./clock-check.ts";
import { checkCredentialAccess } from "./credential-rights.ts";
import { checkReachable, checkTls } from "./endpoint.ts";
import { checkMail } from "./mail.ts";
import { checkOperatorMfa } from "./operator-mfa.ts";
import { checkPosture, type DoctorPostureSettings, POSTURE_CHECK_TITLES } from "./posture.ts";
import {
  DOCTOR_MAX_ATTEMPTS,
  DOCTOR_REQUEST_TIMEOUT_MS,
  KEYSTONE_CHECK_IDS,
  type KeystoneCheckContext,
  type ProbeSession,
} from "./probe.ts";
import { checkStaging } from "./staging.ts";
import { checkToken } from "./token.ts";
import { checkTotpMethod } from "./totp-method.ts";
import { type CheckResult, type CheckStatus, countByStatus, exitCodeForResults, result } from "./types.ts";
import {
  checkCsv,
  checkEnrollment,
  checkPasswordExpiry,
  checkUsersFound,
  type ManagedCredentials,
  USERS_CHECK_IDS,
} from "./users.ts";

/** Check id of the operator's Keystone settings. */
export const CONFIG_CHECK_ID = "config.keystone";

/** Titles of the Keystone checks, for the skipped lines. */
const KEYSTONE_TITLES: Readonly<Record<string, string>> = {
  [KEYSTONE_CHECK_IDS.reachable]: "Keystone reachable",
  [KEYSTONE_CHECK_IDS.tls]: "TLS",
  [KEYSTONE_CHECK_IDS.token]: "operator token",
  [KEYSTONE_CHECK_IDS.operatorMfa]: "operator's own MFA rules",
  [KEYSTONE_CHECK_IDS.credentials]: "credential management",
  [KEYSTONE_CHECK_IDS.totpMethod]: "TOTP method",
  [KEYSTONE_CHECK_IDS.clock]: "clock skew",
  [KEYSTONE_CHECK_IDS.staging]: "MFA staging round trip",
};

/** What to check, and the seams tests use. Every field optional. */
export interface DoctorOptions {
  /** Environment for `OS_*` / `OS_CLOUD`; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** clouds.yaml search paths; default the standard ones. */
  readonly cloudsYamlPaths?: readonly string[];
  /** The users CSV to check; none by default. */
  readonly csvFile?: string | undefined;
  /** SMTP relay URL (may hold a password; never printed). */
  readonly smtpUrl?: string | undefined;
  /** The sender, required with `smtpUrl`. */
  readonly mailFrom?: string | undefined;
  /** PEM file of extra CA certificates for the SMTP relay. */
  readonly smtpCaFile?: string | undefined;
  /** Outbox folder; default `outbox` in `projectDir`. */
  readonly outboxDir?: string | undefined;
  /** Credential IDs in a stack's state, to count the users' credentials it does not manage. */
  readonly managed?: ManagedCredentials | undefined;
  /**
   * Prove the rights by writing what can be put back on every release (default true;
   * `provision` turns it off so that a no-op run writes nothing): a TOTP credential for a
   * made-up user ID that no user has, deleted at once, and a throwaway user with the tool's
   * staged rules and a credential, deleted at once. Nothing is ever written to the operator's
   * own user or to an existing user.
   */
  readonly credentialRoundTrip?: boolean | undefined;
  /** The stack's posture settings (enforceMfa, allowTotpOnlyLogin ...); all false by default. */
  readonly posture?: DoctorPostureSettings | undefined;
  /** Test seam: called while the probe credential exists (with its made-up user ID). */
  readonly onProbeCredential?: ((userId: string) => Promise<void>) | undefined;
  /** Test seam: called while the throwaway user of the staging round trip holds its credential. */
  readonly onRoundTripCredential?: ((userId: string) => Promise<void>) | undefined;
  /** Skip the mail checks (for callers that check mail themselves). */
  readonly skipMail?: boolean | undefined;
  /** Directory relative paths resolve against; default the current directory. */
  readonly projectDir?: string | undefined;
  /** Local clock for the skew check; default `Date.now`. */
  readonly now?: Clock | undefined;
  /** Transport to Keystone; default one from the auth settings, with the doctor's timeout. */
  readonly transport?: Transport | undefined;
}

/** The doctor's findings. */
export interface DoctorReport {
  /** No failures (warnings allowed). */
  readonly ok: boolean;
  readonly exitCode: number;
  readonly counts: Readonly<Record<CheckStatus, number>>;
  readonly checks: readonly CheckResult[];
  /** When the run started, ISO 8601 UTC. */
  readonly startedAt: string;
  readonly durationMs: number;
}

function skipped(id: string, title: string, why: string): CheckResult {
  return result(id, title, "skipped", why);
}

function describeAuth(a: KeystoneAuth): string {
  const user = a.userId ?? `${a.userName ?? "?"} in domain ${a.userDomainName ?? a.userDomainId ?? "?"}`;
  const project = a.projectId ?? `${a.projectName ?? "?"} in domain ${a.projectDomainName ?? a.projectDomainId ?? "?"}`;
  const how = a.token ? "an existing token (OS_TOKEN)" : `user ${user} with a password`;
  return `${a.authUrl}, ${how}, project ${project}, from ${a.source}`;
}

/** Runs every check and returns the report; never throws for what it finds. */
export async function runDoctor(o: DoctorOptions = {}): Promise<DoctorReport> {
  const started = Date.now();
  const checks: CheckResult[] = [];
  const projectDir = o.projectDir ?? process.cwd();

  let auth: KeystoneAuth | undefined;
  try {
    auth = resolveKeystoneAuth({
      ...(o.env ? { env: o.env } : {}),
      ...(o.cloudsYamlPaths ? { cloudsYamlPaths: o.cloudsYamlPaths } : {}),
    });
    checks.push(
      result(CONFIG_CHECK_ID, "Keystone settings", "ok", describeAuth(auth), {
        details: {
          authUrl: auth.authUrl,
          source: auth.source,
          insecure: auth.insecure,
          caGiven: auth.caPem !== undefined,
        },
      }),
    );
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    checks.push(
      result(CONFIG_CHECK_ID, "Keystone settings", "failure", e.message, {
        fix: "Source your openrc file (OS_* variables) or set OS_CLOUD to a cloud in clouds.yaml.",
        code: "E_CONFIG",
      }),
    );
  }

  let session: ProbeSession | undefined;
  let canReadCredentials = false;
  // One client for every Keystone check: its session issues the run's one operator token (the
  // probe session) and sends the probes, with the doctor's short timeout and few attempts.
  const client =
    auth === undefined
      ? undefined
      : new KeystoneClient(auth, {
          ...(o.transport ? { transport: o.transport } : { timeoutMs: DOCTOR_REQUEST_TIMEOUT_MS }),
          maxAttempts: DOCTOR_MAX_ATTEMPTS,
        });
  try {
    if (client === undefined) {
      for (const [id, title] of Object.entries(KEYSTONE_TITLES)) {
        checks.push(skipped(id, title, "no usable Keystone settings"));
      }
    } else {
      const ctx: KeystoneCheckContext = { client, now: o.now ?? Date.now };
      const reach = await checkReachable(ctx);
      checks.push(reach.result, await checkTls(ctx, reach));
      const rest = [
        KEYSTONE_CHECK_IDS.token,
        KEYSTONE_CHECK_IDS.operatorMfa,
        KEYSTONE_CHECK_IDS.credentials,
        KEYSTONE_CHECK_IDS.totpMethod,
        KEYSTONE_CHECK_IDS.clock,
        KEYSTONE_CHECK_IDS.staging,
      ];
      if (!reach.reachable) {
        for (const id of rest) checks.push(skipped(id, KEYSTONE_TITLES[id] ?? id, "Keystone did not answer"));
      } else {
        const token = await checkToken(ctx);
        checks.push(token.result);
        session = token.session;
        if (token.result.status === "failure" || session === undefined) {
          for (const id of rest.slice(1)) {
            checks.push(skipped(id, KEYSTONE_TITLES[id] ?? id, "the operator could not authenticate"));
          }
          session = undefined;
        } else {
          const write = o.credentialRoundTrip ?? true;
          checks.push(await checkOperatorMfa(session));
          const creds = await checkCredentialAccess(session, write, o.onProbeCredential);
          canReadCredentials = creds.status === "ok";
          const totp = await checkTotpMethod(session);
          const clock = checkClock(session.info, reach.dateObservation);
          checks.push(creds, totp, clock);
          const stagingTitle = KEYSTONE_TITLES[KEYSTONE_CHECK_IDS.staging] ?? KEYSTONE_CHECK_IDS.staging;
          const notStaged = !write
            ? "not asked: this preflight writes nothing"
            : !canReadCredentials
              ? "the account cannot manage credentials (see keystone.credentials)"
              : totp.status === "failure" || clock.status === "failure"
                ? "TOTP logins cannot work yet (see keystone.totp-method and keystone.clock)"
                : undefined;
          checks.push(
            notStaged !== undefined
              ? skipped(KEYSTONE_CHECK_IDS.staging, stagingTitle, notStaged)
              : await checkStaging(session, o.onRoundTripCredential),
          );
        }
      }
    }

    if (o.csvFile !== undefined) {
      const csv = checkCsv(o.csvFile);
      checks.push(csv.result);
      const userIds = [
        USERS_CHECK_IDS.found,
        USERS_CHECK_IDS.credentials,
        USERS_CHECK_IDS.mfa,
        USERS_CHECK_IDS.passwordExpiry,
        ...Object.keys(POSTURE_CHECK_TITLES),
      ];
      const titles = [
        "users in Keystone",
        "TOTP credentials",
        "MFA rules",
        "expiring passwords",
        ...Object.values(POSTURE_CHECK_TITLES),
      ];
      const why = !csv.rows ? "the CSV is invalid" : "Keystone checks did not get a working token";
      if (!csv.rows || !session || !client) {
        userIds.forEach((id, i) => {
          checks.push(skipped(id, titles[i] ?? id, why));
        });
      } else {
        const found = await checkUsersFound(client, csv.rows);
        checks.push(
          found.result,
          ...(await checkEnrollment(session, client, found.users, canReadCredentials, o.managed)),
          checkPasswordExpiry(found.users),
          ...(await checkPosture(session, client, found.users, canReadCredentials, o.posture)),
        );
      }
    }

    if (!o.skipMail) {
      checks.push(
        ...(await checkMail({
          smtpUrl: o.smtpUrl,
          mailFrom: o.mailFrom,
          outboxDir: o.outboxDir,
          smtpCaFile: o.smtpCaFile,
          projectDir,
        })),
      );
    }
  } finally {
    client?.close();
  }

  const exitCode = exitCodeForResults(checks);
  return {
    ok: exitCode === 0,
    exitCode,
    counts: countByStatus(checks),
    checks,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
  };
}

/** Labels of the text output, all the same width. */
const LABELS: Readonly<Record<CheckStatus, string>> = { ok: "ok  ", warning: "WARN", failure: "FAIL", skipped: "skip" };

/** One line per check: `FAIL keystone.totp-method: what was found -> what to do`, and a summary. */
export function formatText(report: DoctorReport): string {
  const lines = report.checks.map(
    (c) => `${LABELS[c.status]} ${c.id}: ${c.message}${c.fix && c.status !== "ok" ? ` -> ${c.fix}` : ""}`,
  );
  const n = report.counts;
  lines.push(
    `${n.ok} ok, ${n.warning} warning(s), ${n.failure} failure(s), ${n.skipped} skipped` +
      `${report.ok ? "" : ` (exit ${report.exitCode})`}`,
  );
  return `${lines.join("\n")}\n`;
}

/** The report as JSON (no secrets: results never hold any). */
export function formatJson(report: DoctorReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
