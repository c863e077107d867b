/**
 * A small hand-written SVG line chart (no chart library): seconds per user against N, both
 * axes logarithmic, one line per series.
 */

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly dash?: string;
  /** [N, seconds per user]; points with a null or non-positive value are skipped. */
  readonly points: readonly (readonly [number, number | null])[];
}

const W = 720;
const H = 420;
const M = { left: 72, right: 190, top: 48, bottom: 56 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function decades(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

function fmt(v: number): string {
  if (v >= 1000) return `${v / 1000}k`;
  if (v >= 1) return String(v);
  return String(Number(v.toPrecision(1)));
}

/** Renders the chart. */
export function renderChart(title: string, subtitle: string, series: readonly Series[]): string {
  const pts = series.flatMap((s) => s.points.filter((p): p is [number, number] => p[1] !== null && p[1] > 0));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const xTicks = decades(Math.min(...xs, 100) / 1.5, Math.max(...xs, 1000) * 1.5);
  const yTicks = decades(Math.min(...ys, 0.01), Math.max(...ys, 1));
  const [x0, x1] = [Math.log10(xTicks[0] as number), Math.log10(xTicks[xTicks.length - 1] as number)];
  const [y0, y1] = [Math.log10(yTicks[0] as number), Math.log10(yTicks[yTicks.length - 1] as number)];
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (n: number) => M.left + ((Math.log10(n) - x0) / (x1 - x0 || 1)) * pw;
  const Y = (v: number) => M.top + ph - ((Math.log10(v) - y0) / (y1 - y0 || 1)) * ph;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${M.left}" y="38" fill="#555">${esc(subtitle)}</text>`,
  );
  // Grid and axes (minor ticks at 2..9 x each decade on both axes).
  for (const t of xTicks) {
    for (let k = 1; k < 10; k++) {
      const v = t * k;
      if (Math.log10(v) > x1 + 1e-9) break;
      o.push(
        `<line x1="${X(v).toFixed(1)}" y1="${M.top}" x2="${X(v).toFixed(1)}" y2="${M.top + ph}" stroke="${k === 1 ? "#ccc" : "#eee"}"/>`,
      );
    }
    o.push(`<text x="${X(t).toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of yTicks) {
    for (let k = 1; k < 10; k++) {
      const v = t * k;
      if (Math.log10(v) > y1 + 1e-9) break;
      o.push(
        `<line x1="${M.left}" y1="${Y(v).toFixed(1)}" x2="${M.left + pw}" y2="${Y(v).toFixed(1)}" stroke="${k === 1 ? "#ccc" : "#eee"}"/>`,
      );
    }
    o.push(`<text x="${M.left - 8}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)} s</text>`);
  }
  o.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 14}" text-anchor="middle">users (N, log scale)</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">seconds per user (log scale)</text>`,
  );
  series.forEach((s, i) => {
    const p = s.points.filter((q): q is [number, number] => q[1] !== null && q[1] > 0).sort((a, b) => a[0] - b[0]);
    if (p.length > 0) {
      const d = p.map((q, j) => `${j === 0 ? "M" : "L"}${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(" ");
      o.push(
        `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
      );
      for (const q of p) {
        o.push(`<circle cx="${X(q[0]).toFixed(1)}" cy="${Y(q[1]).toFixed(1)}" r="4" fill="${s.color}"/>`);
        o.push(
          `<text x="${(X(q[0]) + 7).toFixed(1)}" y="${(Y(q[1]) - 7).toFixed(1)}" fill="${s.color}" font-size="11">${q[1] < 0.1 ? q[1].toFixed(3) : q[1].toFixed(2)}</text>`,
        );
      }
    }
    const ly = M.top + 14 + i * 22;
    const lx = M.left + pw + 16;
    o.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 26}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
      `<text x="${lx + 32}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  o.push("</svg>");
  return `${o.join("\n")}\n`;
}
