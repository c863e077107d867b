/**
 * `keystone.clock`: the skew between this machine's clock and Keystone's, measured with the
 * probe token (see clock.ts for the arithmetic and the thresholds).
 */
import {
  assessSkew,
  type ClockObservation,
  describeSkew,
  estimateSkew,
  formatSeconds,
  SKEW_UNCERTAINTY_NOTE_MS,
  type SkewEstimate,
  skewConsequence,
} from "./clock.ts";
import { KEYSTONE_CHECK_IDS, type ProbeTokenInfo } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/**
 * Clock skew between this machine and Keystone, from the probe token's `issued_at` (Keystone's
 * own clock, the one that checks TOTP codes), and from an HTTP `Date` header when a proxy in
 * front of Keystone adds one (Keystone under uWSGI sends none). The verdict uses `issued_at`
 * when present; see `clock.ts` for the thresholds and why.
 *
 * @param dateObservation - a `Date` header reading from an earlier request, if any.
 */
export function checkClock(info: ProbeTokenInfo, dateObservation?: ClockObservation): CheckResult {
  const id = KEYSTONE_CHECK_IDS.clock;
  const title = "clock skew";
  const dateObs = info.dateHeader ?? dateObservation;
  const fromToken = info.issuedAt ? estimateSkew(info.issuedAt) : undefined;
  const fromDate = dateObs ? estimateSkew(dateObs) : undefined;
  const used: SkewEstimate | undefined = fromToken ?? fromDate;
  if (!used) {
    return result(id, title, "warning", "cannot measure: the token had no issued_at and no answer had a Date header", {
      fix: "Check by hand that Keystone's hosts keep time with NTP (chronyc tracking or timedatectl).",
    });
  }
  const source = fromToken ? "a fresh token's issued_at" : "the HTTP Date header";
  const details = {
    skewMs: used.skewMs,
    uncertaintyMs: used.uncertaintyMs,
    source: fromToken ? "issued_at" : "date-header",
    ...(fromToken && fromDate ? { dateHeaderSkewMs: fromDate.skewMs } : {}),
  };
  const status = assessSkew(used.skewMs);
  const imprecise =
    used.uncertaintyMs > SKEW_UNCERTAINTY_NOTE_MS
      ? `; slow answer, so only accurate to ${formatSeconds(used.uncertaintyMs)}`
      : "";
  const proxy =
    fromToken &&
    fromDate &&
    Math.abs(fromDate.skewMs - fromToken.skewMs) > 2 * (fromDate.uncertaintyMs + fromToken.uncertaintyMs)
      ? `; by the HTTP Date header (added by a proxy) ${describeSkew(fromDate.skewMs, "the proxy's clock")}`
      : "";
  const message =
    `${describeSkew(used.skewMs, undefined, used.uncertaintyMs)} (${used.skewMs >= 0 ? "+" : "-"}${formatSeconds(used.skewMs)} ` +
    `± ${formatSeconds(used.uncertaintyMs)}, from ${source})${imprecise}${proxy}: ${skewConsequence(used.skewMs)}`;
  if (status === "ok") return result(id, title, "ok", message, { details });
  const fix =
    "Synchronise the clocks with NTP (chrony or systemd-timesyncd) on every Keystone host, and on this machine " +
    "(the comparison trusts this machine's clock, as phones trust the network's).";
  return result(id, title, status, message, {
    fix: status === "failure" ? `${fix} Until then TOTP logins fail.` : fix,
    ...(status === "failure" ? { code: "E_KEYSTONE_HTTP" as const } : {}),
    details,
  });
}
