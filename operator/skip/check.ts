/**
 * The no-op skip: before Pulumi's engine starts, whether an `up` of a stack could change
 * anything. A stack is skipped only when all of these hold (else it runs, as before):
 *   - its last `up` through the operator commands succeeded and left a skip record
 *     (record.ts), and no run of any kind touched the stack since (the backend's time of its
 *     last update is the one recorded);
 *   - nothing the run reads changed: code, settings, environment, the stack's CSV rows, those
 *     users as Keystone has them, Keystone's auth methods, the login (fingerprint.ts);
 *   - no resource had work pending after that run and no clock is due yet (state.ts).
 *
 * What it cannot see, like a plain `up` without `--refresh`: credentials or rules changed in
 * Keystone behind the state's back (a credential deleted by hand). `refresh` finds those.
 *
 * Keystone is asked once per login and users CSV for the whole fleet: one token, one user list
 * per domain, the auth methods, who the login is.
 */
import { existsSync } from "node:fs";
import { resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { readUsersCsv, type UserRow } from "../../lib/users/csv.ts";
import { type ResolvedUser, resolveUsers } from "../../lib/users/resolve.ts";
import { resolveFleetSettings } from "../fleet/settings.ts";
import { inShard } from "../fleet/shard.ts";
import { codeDigest, environmentDigest, runFingerprint } from "./fingerprint.ts";
import { SKIP_RECORD_VERSION, type SkipRecord } from "./record.ts";
import { stateVerdict } from "./state.ts";

/** One stack to check. */
export interface StackToCheck {
  readonly stack: string;
  /** The stack's stored settings as text (its config file): what the fingerprint takes. */
  readonly configText: string;
  /** Reads a setting's value (`keystone-totp:usersCsv`, `openstack:authUrl`, ...). */
  readonly config: (key: string) => string | undefined;
}

/** What the backend says of a stack (`pulumi stack ls`). */
export interface StackUpdateInfo {
  readonly lastUpdate: string | undefined;
  readonly updateInProgress: boolean;
}

/**
 * The time of a stack's last update as `pulumi stack ls --json` prints it, read from the
 * stack's own exported state instead: the DIY backends (file, PostgreSQL) report a stack's
 * last update as its checkpoint's `manifest.time`, printed in UTC to the millisecond, which is
 * what `Date#toISOString` gives. Reading it here saves listing every stack (reading every
 * checkpoint) after each stack's run. Undefined when the state has no such time.
 *
 * A value that ever differed from the listing's would only make the next run run (the record
 * would not match), never skip one.
 *
 * @param deployment - the `deployment` of an exported stack (`pulumi stack export`).
 * @see {@link decide}, which compares it with {@link StackUpdateInfo.lastUpdate}
 */
export function lastUpdateOf(deployment: unknown): string | undefined {
  if (typeof deployment !== "object" || deployment === null) return undefined;
  const manifest = (deployment as { readonly manifest?: unknown }).manifest;
  if (typeof manifest !== "object" || manifest === null) return undefined;
  const time = (manifest as { readonly time?: unknown }).time;
  if (typeof time !== "string") return undefined;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

/** Whether to run a stack, and why. */
export type SkipDecision =
  | { readonly skip: true; readonly dueAt: string | undefined }
  | { readonly skip: false; readonly reason: string };

interface Fleet {
  readonly rows: readonly UserRow[];
  readonly resolved: readonly ResolvedUser<UserRow>[];
  readonly authMethods: readonly string[] | undefined;
  readonly operatorId: string | undefined;
}

/**
 * The input fingerprint of each stack; an Error where it cannot be known (a bad CSV or setting,
 * Keystone unreachable, a user missing): such a stack runs, and its run reports the problem.
 */
export async function fingerprintStacks(
  stacks: readonly StackToCheck[],
  projectDir: string,
): Promise<Map<string, string | Error>> {
  const fleets = new Map<string, Promise<Fleet>>();
  const out = new Map<string, string | Error>();
  const code = codeDigest(projectDir);
  const environment = environmentDigest();
  for (const s of stacks) {
    try {
      const settings = resolveFleetSettings((k) => s.config(`keystone-totp:${k}`), projectDir);
      const csv = existsSync(settings.usersCsv) ? settings.usersCsv : undefined;
      const auth = csv ? resolveKeystoneAuth({ config: s.config }) : undefined;
      const key = JSON.stringify([csv ?? null, auth ?? null]);
      let fleet = fleets.get(key);
      if (!fleet) {
        fleet = listFleet(csv, auth ? KeystoneClient.shared(auth) : undefined);
        fleets.set(key, fleet);
      }
      const f = await fleet;
      const users = f.resolved.filter(({ row }) => inShard(row.key, settings.shard));
      out.set(
        s.stack,
        runFingerprint({
          code,
          config: s.configText,
          environment,
          users,
          authMethods: users.length > 0 ? f.authMethods : undefined,
          operatorId: users.length > 0 ? f.operatorId : undefined,
        }),
      );
    } catch (e) {
      out.set(s.stack, e instanceof Error ? e : new Error(String(e)));
    }
  }
  return out;
}

/** The CSV rows and, when there are any, their users as Keystone lists them (one list per domain). */
async function listFleet(csv: string | undefined, client: KeystoneClient | undefined): Promise<Fleet> {
  const rows = csv ? readUsersCsv(csv) : [];
  if (!client || rows.length === 0) return { rows, resolved: [], authMethods: undefined, operatorId: undefined };
  const resolved = await resolveUsers(client, rows);
  const [authMethods, me] = await Promise.all([client.authMethods(), client.whoami()]);
  return { rows, resolved, authMethods, operatorId: me.userId };
}

/** The first line of an error's message: what a one-line verdict quotes of it. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";
}

/**
 * Whether an `up` of the stack may be skipped, at time `now`.
 *
 * @param fingerprint - this run's {@link fingerprintStacks} value for the stack.
 * @param info - what the backend says of the stack now; undefined: no such stack.
 */
export function decide(
  record: SkipRecord | undefined,
  fingerprint: string | Error | undefined,
  info: StackUpdateInfo | undefined,
  now: Date,
): SkipDecision {
  if (fingerprint === undefined) return { skip: false, reason: "its inputs were not read" };
  if (fingerprint instanceof Error)
    return { skip: false, reason: `its inputs could not be read (${firstLine(fingerprint)})` };
  if (!record) return { skip: false, reason: "no record of a successful run with nothing left to do" };
  if (!info?.lastUpdate) return { skip: false, reason: "the backend has no update of it" };
  if (info.updateInProgress) return { skip: false, reason: "an update of it is in progress" };
  if (info.lastUpdate !== record.lastUpdate) return { skip: false, reason: "another run changed it since" };
  if (record.fingerprint !== fingerprint)
    return { skip: false, reason: "its inputs changed (CSV, settings, Keystone users, code)" };
  if (record.dueAt !== undefined && now.getTime() >= Date.parse(record.dueAt)) {
    return { skip: false, reason: `a rotation or retirement fell due at ${record.dueAt}` };
  }
  return { skip: true, dueAt: record.dueAt };
}

/**
 * The record to keep after a successful `up`: undefined when some resource still has work
 * pending (the next `up` must run).
 *
 * @param deployment - the stack's state, exported right after the run: what is pending, and
 *   the last update the next check compares (see {@link lastUpdateOf}), both from it.
 */
export function recordAfterRun(
  stack: string,
  fingerprint: string,
  deployment: unknown,
  now: Date,
): { record: SkipRecord | undefined; pending: string | undefined } {
  const v = stateVerdict(deployment, now);
  const lastUpdate = lastUpdateOf(deployment);
  if (v.pending || !lastUpdate) return { record: undefined, pending: v.pending ?? "the backend has no update of it" };
  return {
    record: {
      version: SKIP_RECORD_VERSION,
      stack,
      fingerprint,
      lastUpdate,
      ...(v.dueAt ? { dueAt: v.dueAt.toISOString() } : {}),
      recordedAt: now.toISOString(),
    },
    pending: undefined,
  };
}
