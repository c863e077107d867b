/**
 * bench/results.json and bench/time-per-user.svg: the rows of every run so far, one per N,
 * number of stacks, layout and state backend (a new run replaces only the rows it measured again), and the
 * chart drawn from them.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { renderChart, type Series } from "./chart.ts";
import type { Layout } from "./layout.ts";
import { REPO } from "./local.ts";
import type { Result } from "./row.ts";

const RESULTS_FILE = join(REPO, "bench", "results.json");
const CHART_FILE = join(REPO, "bench", "time-per-user.svg");
/** Colours of the lines of 2, 3, ... stacks in the shared layout, in turn. */
const SHARD_COLORS = ["#e67e22", "#16a085", "#7f8c8d"];

/** The layout a result was measured in (results from before --split: shared). */
export function layoutOf(r: Result): Layout {
  return r.layout === "split" ? "split" : "shared";
}

/** Stacks a result was measured on (results from before --shards existed: 1). */
export function shardsOf(r: Result): number {
  return typeof r.shards === "number" ? r.shards : 1;
}

/** The rows in bench/results.json (none when it is missing or unreadable). */
function readResults(): Result[] {
  try {
    return JSON.parse(readFileSync(RESULTS_FILE, "utf8")) as Result[];
  } catch {
    return [];
  }
}

/** The state backend of a row: `file` for every row before the field existed. */
function backendOf(r: Result): string {
  return typeof r.state_backend === "string" ? r.state_backend : "file";
}

/** `old` with `fresh` in place of the rows of the same N, stacks, layout and state backend, sorted. */
function merge(old: readonly Result[], fresh: readonly Result[]): Result[] {
  // A split run does not replace the shared figures, nor 4 stacks those of one.
  const same = (a: Result, b: Result) =>
    a.n === b.n && shardsOf(a) === shardsOf(b) && layoutOf(a) === layoutOf(b) && backendOf(a) === backendOf(b);
  return [...old.filter((r) => !fresh.some((f) => same(f, r))), ...fresh].sort(
    (a, b) => a.n - b.n || shardsOf(a) - shardsOf(b) || layoutOf(a).localeCompare(layoutOf(b)),
  );
}

/** The chart's series: seconds per user against N, per kind of run, stacks and layout. */
function series(rows: readonly Result[]): Series[] {
  const per = (k: "floor" | "up" | "cli_loop" | "noop_up", shards = 1, layout: Layout = "shared") =>
    rows
      .filter((r) => shardsOf(r) === shards && layoutOf(r) === layout)
      .map((r) => [r.n, (r.s_per_user as Record<string, number | null>)[k] ?? null] as const);
  const splits = [...new Set(rows.filter((r) => layoutOf(r) === "shared").map(shardsOf))]
    .filter((k) => k > 1)
    .sort((a, b) => a - b);
  const pinned = [...new Set(rows.filter((r) => layoutOf(r) === "split").map(shardsOf))].sort((a, b) => a - b);
  return [
    { name: "openstack CLI loop", color: "#c0392b", dash: "6 4", points: per("cli_loop") },
    { name: "keystone-totp up", color: "#2c6fbb", points: per("up") },
    ...splits.map((k, i) => ({
      name: `up, ${k} stacks`,
      color: SHARD_COLORS[i % SHARD_COLORS.length] as string,
      dash: "8 3",
      points: per("up", k),
    })),
    ...pinned.map((k) => ({
      name: `up, split layout${k > 1 ? `, ${k} stacks` : ""}`,
      color: "#1a3e6e",
      points: per("up", k, "split"),
    })),
    { name: "raw REST floor", color: "#27ae60", points: per("floor") },
    ...(pinned.length > 0
      ? [{ name: "floor, split layout", color: "#145a32", dash: "4 2", points: per("floor", pinned[0], "split") }]
      : []),
    { name: "no-op up", color: "#8e44ad", dash: "2 3", points: per("noop_up") },
  ];
}

/** Merges `fresh` into bench/results.json, redraws bench/time-per-user.svg; returns every row. */
export function writeOutputs(fresh: readonly Result[]): Result[] {
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  const merged = merge(readResults(), fresh);
  writeFileSync(RESULTS_FILE, `${JSON.stringify(merged, null, 2)}\n`);
  const m = merged[merged.length - 1]?.machine as { cores?: number } | undefined;
  const svg = renderChart(
    "keystone-totp: time per user to enroll N users",
    `local Keystone ${String((merged[0]?.versions as { keystone?: string })?.keystone ?? "")}, ${m?.cores ?? "?"} cores; bench/results.json`,
    series(merged),
  );
  writeFileSync(CHART_FILE, svg);
  return merged;
}
