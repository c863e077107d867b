/**
 * The clock that scheduled rotation and grace windows are measured against.
 *
 * `KEYSTONE_TOTP_NOW` (ISO 8601) replaces the real time in the program and in the provider
 * processes, which inherit the environment of the run: tests and rehearsals can move a
 * fleet forward by months without waiting, and see exactly what the next run would do.
 */
import { ConfigError } from "../errors.ts";

/** Environment variable that overrides the current time (ISO 8601, e.g. `2027-03-01T00:00:00Z`). */
export const NOW_ENV = "KEYSTONE_TOTP_NOW";
/** Milliseconds in an hour. */
export const HOUR_MS = 3_600_000;
/** Milliseconds in a day. */
export const DAY_MS = 24 * HOUR_MS;

/**
 * The current time, or the time given in {@link NOW_ENV}.
 *
 * @throws {ConfigError} when `KEYSTONE_TOTP_NOW` is set but is not a date.
 */
export function now(env: NodeJS.ProcessEnv = process.env): Date {
  const v = env[NOW_ENV];
  if (v === undefined || v === "") return new Date();
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new ConfigError(`${NOW_ENV}='${v}' is not an ISO 8601 date`);
  return new Date(t);
}

/** `iso` plus `ms` milliseconds, as ISO 8601; undefined when `iso` is not a date. */
export function addMs(iso: string | undefined, ms: number): string | undefined {
  const t = iso === undefined ? Number.NaN : Date.parse(iso);
  return Number.isNaN(t) ? undefined : new Date(t + ms).toISOString();
}
