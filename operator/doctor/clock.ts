/**
 * Clock skew between this machine and Keystone, and how much of it TOTP logins survive.
 *
 * Keystone checks a passcode against its own clock: it accepts the code of its current 30 s
 * window and of the previous one (`[totp] included_previous_windows`, default 1), never a
 * future one. Phones take their time from the network, so this machine's clock (kept by NTP)
 * stands in for the phone's. Let `s` be Keystone's clock minus the true time, and `d` the
 * seconds a user needs to read and type a code (typically 5 to 15):
 *
 * - Keystone behind (`s < 0`): for the first `|s|` seconds of each window the phone already
 *   shows a code Keystone considers to be from the future, so a code typed within `|s|`
 *   seconds of appearing is refused. Below 10 s this is rare (typing takes about that long);
 *   from 30 s on every fresh code is refused: only a code whose window has already ended on
 *   the phone would work, so in practice nobody can log in.
 * - Keystone ahead (`s > 0`): a code is still accepted `60 - s` seconds after its window
 *   started on the phone, so one read at the end of its window must be typed within `30 - s`
 *   seconds. Below 10 s users keep 20 s or more; past 30 s even a code typed at once is
 *   refused at the end of each window, and past 60 s every code is.
 *
 * Hence {@link SKEW_WARNING_MS} (some logins fail, users retry) and {@link SKEW_FAILURE_MS}
 * (logins fail for everyone, in one direction or both), applied to `|s|`.
 *
 * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
 */
import { TOTP_PERIOD_S } from "../../lib/totp/secret.ts";

/** One TOTP window, in ms. */
export const TOTP_WINDOW_MS = TOTP_PERIOD_S * 1000;
/** From this skew (either direction), in ms, some logins fail: a warning. */
export const SKEW_WARNING_MS = 10_000;
/** Past this skew (either direction), in ms, logins fail for everyone: a failure (one window). */
export const SKEW_FAILURE_MS = TOTP_WINDOW_MS;
/**
 * Resolution of Keystone's `issued_at` (Fernet tokens keep whole seconds) and of the HTTP
 * `Date` header, in ms: both are the server's time truncated to the second.
 */
export const SERVER_TIME_RESOLUTION_MS = 1_000;
/** Measurement uncertainty, in ms, above which the result is flagged as imprecise. */
export const SKEW_UNCERTAINTY_NOTE_MS = 2_000;

/** A clock: milliseconds since the Unix epoch. Injected so that tests can shift it. */
export type Clock = () => number;

/** One timestamp read from the server, bracketed by the local clock. */
export interface ClockObservation {
  /** Local time just before the request was sent, in ms. */
  readonly sentAtMs: number;
  /** Local time just after the answer arrived, in ms. */
  readonly receivedAtMs: number;
  /** The server's timestamp, in ms (truncated to {@link SERVER_TIME_RESOLUTION_MS}). */
  readonly serverMs: number;
}

/** Estimated skew: server clock minus local clock. */
export interface SkewEstimate {
  /** Positive: the server is ahead of this machine; negative: behind. In ms. */
  readonly skewMs: number;
  /** Half the width of the interval the true skew lies in, in ms. */
  readonly uncertaintyMs: number;
}

/**
 * Estimates the skew from one observation.
 *
 * The server read its clock at some moment between `sentAtMs` and `receivedAtMs` (local
 * time) and truncated it to the second, so its true reading lies in
 * `[serverMs, serverMs + resolution)`. The skew therefore lies in
 * `(serverMs - receivedAtMs, serverMs + resolution - sentAtMs)`; the estimate is the middle
 * of that interval (the midpoint of the request, corrected by half a second for truncation),
 * and the uncertainty half its width.
 */
export function estimateSkew(o: ClockObservation, resolutionMs = SERVER_TIME_RESOLUTION_MS): SkewEstimate {
  const low = o.serverMs - o.receivedAtMs;
  const high = o.serverMs + resolutionMs - o.sentAtMs;
  return { skewMs: Math.round((low + high) / 2), uncertaintyMs: Math.round((high - low) / 2) };
}

/** Judges a skew by its size (see the module comment for the reasoning). */
export function assessSkew(skewMs: number): "ok" | "warning" | "failure" {
  const size = Math.abs(skewMs);
  if (size > SKEW_FAILURE_MS) return "failure";
  if (size >= SKEW_WARNING_MS) return "warning";
  return "ok";
}

/** Seconds with one decimal, e.g. `12.3 s`. */
export function formatSeconds(ms: number): string {
  return `${(Math.abs(ms) / 1000).toFixed(1)} s`;
}

/**
 * "Keystone's clock is 12.3 s behind this machine's" and the like; "agrees" when the skew is
 * within the measurement's uncertainty (or under 0.05 s).
 */
export function describeSkew(skewMs: number, who = "Keystone's clock", uncertaintyMs = 0): string {
  if (Math.round(Math.abs(skewMs) / 100) === 0 || Math.abs(skewMs) <= uncertaintyMs) {
    return `${who} agrees with this machine's`;
  }
  return `${who} is ${formatSeconds(skewMs)} ${skewMs < 0 ? "behind" : "ahead of"} this machine's`;
}

/** What goes wrong for users at this skew, for messages. */
export function skewConsequence(skewMs: number): string {
  const status = assessSkew(skewMs);
  if (status === "ok") return "TOTP codes from phones with the right time are accepted";
  if (skewMs < 0) {
    return status === "failure"
      ? "every fresh code from a phone with the right time is refused as a code from the future"
      : `codes typed within ${formatSeconds(skewMs)} of appearing are refused as codes from the future`;
  }
  return status === "failure"
    ? `codes read at the end of their ${TOTP_PERIOD_S} s window are refused even when typed at once`
    : `a code read at the end of its window must be typed within ${formatSeconds(TOTP_WINDOW_MS - skewMs)}`;
}
