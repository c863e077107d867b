/**
 * The status report as one self-contained HTML page (inline CSS and SVG, no script, no
 * external resource), for operators to share: counts, enrollments over time, upcoming
 * rotations by week, and the table of users. It holds no secret: only what `status` prints.
 */

import type { Posture } from "../../lib/mfa/posture.ts";
import { DAY_MS } from "../../lib/util/clock.ts";
import type { StatusCounts, StatusRow, UserState } from "./status.ts";

/** Weeks ahead shown in the chart of upcoming rotations. */
export const ROTATION_WEEKS = 12;
/** Chart size, in CSS pixels. */
const CHART_W = 640;
const CHART_H = 200;
const PAD = { left: 44, right: 12, top: 12, bottom: 36 } as const;

const STATE_LABEL: Readonly<Record<UserState, string>> = {
  ok: "OK",
  retiring: "Old credential in grace window",
  "retire-failed": "Old credential could not be deleted",
  unmanaged: "Unmanaged credentials",
  "not-delivered": "Enrollment not delivered",
  "delivery-unconfirmed": "Delivery not confirmed by the mail server",
  "not-enrolled": "Not enrolled yet",
  missing: "Credential missing in Keystone",
};

const POSTURE_LABEL: Readonly<Record<Posture, string>> = {
  open: "Open: a TOTP code alone logs in",
  staged: "Staged: TOTP alone refused",
  enforced: "Enforced: password + TOTP",
  own: "Own rules, kept",
};

/** Escapes text for HTML content and attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function day(iso: string): string {
  return iso.slice(0, 10);
}

/** Cumulative enrollments per day: [day, total enrolled by the end of that day]. */
export function enrollmentSeries(rows: readonly StatusRow[]): [string, number][] {
  const perDay = new Map<string, number>();
  for (const r of rows)
    if (r.enrolledSince) perDay.set(day(r.enrolledSince), (perDay.get(day(r.enrolledSince)) ?? 0) + 1);
  let total = 0;
  return [...perDay.keys()].sort().map((d) => {
    total += perDay.get(d) ?? 0;
    return [d, total];
  });
}

/**
 * Scheduled rotations per week from `at`: bucket 0 holds overdue ones and those due this week.
 * Returns [label, count] for {@link ROTATION_WEEKS} weeks.
 */
export function rotationSeries(rows: readonly StatusRow[], at: Date): [string, number][] {
  const buckets = Array.from({ length: ROTATION_WEEKS }, () => 0);
  for (const r of rows) {
    if (!r.nextRotation) continue;
    const week = Math.max(0, Math.floor((Date.parse(r.nextRotation) - at.getTime()) / (7 * DAY_MS)));
    if (week < ROTATION_WEEKS) buckets[week] = (buckets[week] ?? 0) + 1;
  }
  return buckets.map((n, i) => [day(new Date(at.getTime() + i * 7 * DAY_MS).toISOString()), n]);
}

function axis(max: number): { top: number; ticks: number[] } {
  const top = Math.max(1, max);
  const step = Math.max(1, Math.ceil(top / 4));
  const ticks: number[] = [];
  for (let v = 0; v <= top; v += step) ticks.push(v);
  return { top: Math.max(top, ticks[ticks.length - 1] ?? top), ticks };
}

function frame(title: string, max: number, body: (x0: number, w: number, y: (v: number) => number) => string): string {
  const { top, ticks } = axis(max);
  const w = CHART_W - PAD.left - PAD.right;
  const h = CHART_H - PAD.top - PAD.bottom;
  const y = (v: number) => PAD.top + h - (v / top) * h;
  const grid = ticks
    .map(
      (t) =>
        `<line x1="${PAD.left}" x2="${PAD.left + w}" y1="${y(t)}" y2="${y(t)}" class="grid"/>` +
        `<text x="${PAD.left - 6}" y="${y(t) + 4}" text-anchor="end">${t}</text>`,
    )
    .join("");
  return `<svg viewBox="0 0 ${CHART_W} ${CHART_H}" width="${CHART_W}" height="${CHART_H}" role="img" aria-label="${esc(title)}">${grid}${body(PAD.left, w, y)}</svg>`;
}

/** SVG step chart of cumulative enrollments. */
export function enrollmentChart(series: readonly [string, number][]): string {
  if (series.length === 0) return `<p class="empty">No enrollments yet.</p>`;
  const max = series[series.length - 1]?.[1] ?? 0;
  return frame("Users enrolled over time", max, (x0, w, y) => {
    const n = series.length;
    // Linear in time, so that a quiet month looks like one; one day alone sits in the middle.
    const t = series.map(([d2]) => Date.parse(d2));
    const t0 = t[0] ?? 0;
    const span = (t[n - 1] ?? t0) - t0;
    const x = (i: number) => x0 + (span === 0 ? w / 2 : (((t[i] ?? t0) - t0) / span) * w);
    let d = `M ${x0} ${y(0)}`;
    series.forEach(([, v], i) => {
      d += ` L ${x(i)} ${y(i === 0 ? 0 : (series[i - 1]?.[1] ?? 0))} L ${x(i)} ${y(v)}`;
    });
    // The first and last dates, anchored inwards so that neither is cut at the edge.
    const labels = (
      span === 0
        ? [[0, "middle"]]
        : [
            [0, "start"],
            [n - 1, "end"],
          ]
    )
      .map(
        ([i, anchor]) =>
          `<text x="${x(i as number)}" y="${CHART_H - 12}" text-anchor="${anchor}">${esc(series[i as number]?.[0] ?? "")}</text>`,
      )
      .join("");
    const dots = series
      .map(([d2, v], i) => `<circle cx="${x(i)}" cy="${y(v)}" r="3"><title>${esc(d2)}: ${v}</title></circle>`)
      .join("");
    return `<path d="${d}" class="line"/>${dots}${labels}`;
  });
}

/** SVG bar chart of rotations due per week. */
export function rotationChart(series: readonly [string, number][]): string {
  const max = Math.max(0, ...series.map(([, v]) => v));
  if (max === 0) return `<p class="empty">No scheduled rotation in the next ${ROTATION_WEEKS} weeks.</p>`;
  return frame("Rotations due per week", max, (x0, w, y) => {
    const slot = w / series.length;
    return series
      .map(([label, v], i) => {
        const bx = x0 + i * slot + slot * 0.15;
        const text =
          i % 2 === 0
            ? `<text x="${x0 + i * slot + slot / 2}" y="${CHART_H - 12}" text-anchor="middle">${esc(label.slice(5))}</text>`
            : "";
        return `<rect x="${bx}" y="${y(v)}" width="${slot * 0.7}" height="${y(0) - y(v)}" class="bar"><title>week of ${esc(label)}: ${v}</title></rect>${text}`;
      })
      .join("");
  });
}

/**
 * Renders the whole page.
 *
 * @param title - e.g. "keystone-totp status: stack prod".
 * @param at - the time the report describes.
 */
export function renderStatusHtml(title: string, rows: readonly StatusRow[], counts: StatusCounts, at: Date): string {
  const cards: [string, number | string][] = [
    ["Users", counts.users],
    ["OK", counts.byState.ok],
    ["Not delivered", counts.byState["not-delivered"]],
    ["Delivery unconfirmed", counts.byState["delivery-unconfirmed"]],
    ["Not enrolled", counts.byState["not-enrolled"]],
    ["In grace window", counts.byState.retiring],
    ["Unmanaged credentials", counts.byState.unmanaged],
    ["Missing in Keystone", counts.byState.missing],
    ["MFA enforced", counts.mfaEnforced],
    ["TOTP alone logs in (open)", counts.byPosture.open],
    ["Rotations due in 7 days", counts.rotationsDueIn7Days],
    ["TOTP credentials in Keystone", counts.keystoneCredentials ?? "not checked"],
  ];
  const t = (iso: string | undefined) => (iso ? esc(`${iso.slice(0, 16).replace("T", " ")}Z`) : "&ndash;");
  const body = rows
    .map(
      (r) =>
        `<tr class="s-${r.state}"><td>${esc(r.user)}</td><td>${esc(STATE_LABEL[r.state])}</td><td>${t(r.enrolledSince)}</td>` +
        `<td>${t(r.lastDelivery)}</td><td>${t(r.nextRotation)}</td><td>${r.mfaEnforced ? "yes" : "no"}</td>` +
        `<td class="p-${r.posture ?? "none"}">${r.posture ? esc(POSTURE_LABEL[r.posture]) : "&ndash;"}</td>` +
        `<td>${r.keystoneCredentialIds === undefined ? "?" : r.keystoneCredentialIds.length}</td>` +
        `<td>${r.retiring.length}${r.retireAfter ? ` (until ${t(r.retireAfter)})` : ""}</td><td>${r.unmanagedIds.length}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fff}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
.meta{color:#5b6474;margin:0 0 1.5rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}
.card{border:1px solid #d7dbe3;border-radius:8px;padding:.6rem .9rem;min-width:9rem}
.card b{display:block;font-size:1.5rem}
svg text{font-size:11px;fill:#5b6474}.grid{stroke:#e6e9ef}.line{fill:none;stroke:#2f6fde;stroke-width:2}
circle{fill:#2f6fde}.bar{fill:#e08a1e}.empty{color:#5b6474}
table{border-collapse:collapse;width:100%;margin-top:.5rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eceef2;white-space:nowrap}
th{background:#f5f6f8}
tr.s-missing td,tr.s-not-delivered td{background:#fdecec}
tr.s-unmanaged td,tr.s-not-enrolled td,tr.s-delivery-unconfirmed td{background:#fff6e0}
td.p-open{color:#b00020;font-weight:bold}
</style></head>
<body>
<h1>${esc(title)}</h1>
<p class="meta">As of ${esc(at.toISOString())} &middot; ${counts.users} users</p>
<div class="cards">${cards.map(([k, v]) => `<div class="card"><b>${esc(String(v))}</b>${esc(k)}</div>`).join("")}</div>
<h2>Users enrolled over time</h2>
${enrollmentChart(enrollmentSeries(rows))}
<h2>Scheduled rotations, next ${ROTATION_WEEKS} weeks (by week starting)</h2>
${rotationChart(rotationSeries(rows, at))}
<h2>Users</h2>
<table><thead><tr><th>User</th><th>State</th><th>Enrolled</th><th>Last delivery</th><th>Next rotation</th><th>MFA</th><th>Login posture</th><th>Credentials in Keystone</th><th>Retiring</th><th>Unmanaged</th></tr></thead>
<tbody>
${body}
</tbody></table>
</body></html>
`;
}
