/**
 * Retiring replaced credentials, one rule for every resource that rotates. A rotation leaves
 * the old credential valid (`retiring`) for a grace window, so that nobody is locked out by a
 * message still in transit; the first run after the window deletes it.
 *
 *   when  {@link retireAfter}: the start of the window plus `graceHours` (default 24). The
 *         start is the delivery of the new secret for a `TotpEnrollment` (and a 0.1
 *         `TotpDelivery`); the rotation for a `TotpCredential` on its own, which cannot see a
 *         delivery
 *   how   {@link retire}: DELETE /v3/credentials/{id} for each (404 counts as done), never the
 *         current one. A failure is recorded as a {@link RetireFailure} and the credential stays
 *         retiring (an enrollment: its update's record of a message already sent must be
 *         kept), or thrown (a `TotpCredential`: its update records nothing that could be lost);
 *         either way the next run tries again
 */
import { ConfigError } from "../../lib/errors.ts";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { HOUR_MS } from "../../lib/util/clock.ts";
import { errorRecord } from "./error-record.ts";

/** Default grace window, in hours, during which a replaced credential keeps working. */
export const DEFAULT_GRACE_HOURS = 24;
/** Largest grace window, in hours (a year; a larger value is surely a typo). */
export const MAX_GRACE_HOURS = 8760;

/**
 * The last failed attempt to delete retiring credentials, kept in the resource's outputs until
 * a later attempt deletes them (the next run retries): a leaked secret that is still valid must
 * not pass for a healthy "retiring" one. Plain data, no secret; no field is ever undefined (the
 * engine refuses undefined inside a property).
 */
export interface RetireFailure {
  /** The credentials that could not be deleted, still valid in Keystone. */
  readonly ids: readonly string[];
  /** When the attempt failed (ISO 8601, the run's clock). */
  readonly at: string;
  /** Our error code (`E_KEYSTONE_HTTP`, ...), when the failure was one of ours. */
  readonly code?: string;
  /** What failed, as the error said it (method, path, status, Keystone's request id). */
  readonly error: string;
}

/** A grace window as given, or {@link DEFAULT_GRACE_HOURS} when absent or invalid. */
export function graceHoursOf(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : DEFAULT_GRACE_HOURS;
}

/**
 * When `retiring` credentials may be deleted: `since` (an ISO 8601 time: the delivery, or the
 * rotation) plus the grace window. Undefined when none are retiring or `since` is unknown.
 */
export function retireAfter(retiring: unknown, since: unknown, graceHours: unknown): Date | undefined {
  if (!Array.isArray(retiring) || retiring.length === 0) return undefined;
  const t = typeof since === "string" ? Date.parse(since) : Number.NaN;
  return Number.isNaN(t) ? undefined : new Date(t + graceHoursOf(graceHours) * HOUR_MS);
}

/** Whether {@link retireAfter} has come at time `at`. */
export function retireDue(retiring: unknown, since: unknown, graceHours: unknown, at: Date): boolean {
  const due = retireAfter(retiring, since, graceHours);
  return due !== undefined && at.getTime() >= due.getTime();
}

/** Where {@link retire} gets Keystone and the clock. */
export interface RetireContext {
  /** Keystone; without it every deletion fails (`E_CONFIG`). */
  readonly keystone?: () => KeystoneClient;
  readonly now: () => Date;
}

/** What a failed deletion does: see {@link retire}. */
export interface RetireOptions {
  /** `record` (the default): keep it retiring and return the failure; `throw`: stop and throw. */
  readonly onFailure?: "record" | "throw";
}

/** What {@link retire} did. */
export interface RetireResult {
  /** The credentials that could not be deleted: still retiring, tried again by the next run. */
  readonly left: string[];
  /** Why they could not, to record in the outputs; absent when every deletion succeeded. */
  readonly failure?: RetireFailure;
}

/**
 * Deletes retiring credentials (never `current`). By default those that could not be deleted
 * stay retiring, to try again on the next run, and the failure is returned rather than thrown:
 * a message already sent must not be sent again because Keystone failed afterwards, and a
 * thrown update would lose the record of it. The caller records the failure in the outputs,
 * where the operator commands and `status` find it. With `onFailure: "throw"` the first failure
 * is thrown as it is, and nothing after it is tried.
 */
export async function retire(
  ids: readonly string[],
  current: string,
  ctx: RetireContext,
  options: RetireOptions = {},
): Promise<RetireResult> {
  const todo = ids.filter((id) => id !== current);
  const left: string[] = [];
  if (todo.length === 0) return { left };
  let first: unknown;
  const client = ctx.keystone?.();
  for (const id of todo) {
    try {
      if (!client) throw new ConfigError("no Keystone client to retire credentials with");
      await client.deleteCredential(id);
    } catch (e) {
      if (options.onFailure === "throw") throw e;
      left.push(id);
      first ??= e;
    }
  }
  if (left.length === 0) return { left };
  return { left, failure: { ids: [...left], at: ctx.now().toISOString(), ...errorRecord(first) } };
}

/**
 * Right after a delivery: deletes `pending` when the grace window is 0, else keeps them for a
 * later run. Returns what is left, when everything went the time, and when something could
 * not be deleted the failure (see {@link retire}).
 */
export async function retireAtDelivery(
  pending: readonly string[],
  current: string,
  graceHours: unknown,
  ctx: RetireContext,
): Promise<{ retiring: string[]; retiredAt?: string; retireFailed?: RetireFailure }> {
  if (pending.length === 0 || graceHoursOf(graceHours) > 0) return { retiring: [...pending] };
  const { left, failure } = await retire(pending, current, ctx);
  if (failure) return { retiring: left, retireFailed: failure };
  return { retiring: left, retiredAt: ctx.now().toISOString() };
}

/**
 * A failure recorded earlier, kept while no retirement was tried: only for the credentials
 * still retiring (one deleted meanwhile, e.g. by hand, is no longer a failure).
 */
export function carriedFailure(old: RetireFailure | undefined, retiring: readonly string[]): RetireFailure | undefined {
  if (!old || !Array.isArray(old.ids)) return undefined;
  const ids = old.ids.filter((id) => retiring.includes(id));
  return ids.length > 0 ? { ...old, ids } : undefined;
}
