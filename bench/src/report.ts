/**
 * What `npm run bench` prints when it is done (and `--report` prints alone): a markdown table of
 * every row, a table of CPU per user, and each row's standing against issue 15's targets.
 */
import { layoutOf, shardsOf } from "./results.ts";
import type { cpuPerUser, Result } from "./row.ts";

/** Issue 15's 1,000-user targets apply to the split layout at this N. */
const TARGET_N = 1000;
/** The no-op target applies from this N. */
const NOOP_TARGET_N = 10_000;
/** Issue 15: peak memory of any one of our processes below 1 GiB, in MB. */
const PEAK_RSS_LIMIT_MB = 1024;

type CpuPerUser = ReturnType<typeof cpuPerUser>;

/** Issue 15's targets, for the rows they apply to (null: not this row's). */
function targets(r: Result) {
  const n = r.n;
  const cpu = r.cpu_ms_per_user as CpuPerUser | undefined;
  const split = layoutOf(r) === "split";
  const skipRatio = skipOverForced(r);
  const peak = Math.max(
    r.peak_rss_program_mb as number,
    r.peak_rss_provider_mb as number,
    r.peak_rss_engine_mb as number,
  );
  return {
    n,
    stacks: shardsOf(r),
    layout: layoutOf(r),
    up_within_1_5x_floor: split && n === TARGET_N ? (r.up_over_floor as number) <= 1.5 : null,
    // The same against the safe floor (five requests and a pause per user), rows that measured it.
    up_within_1_5x_safe_floor:
      split && n === TARGET_N && r.up_over_floor_safe != null ? (r.up_over_floor_safe as number) <= 1.5 : null,
    cli_loop_20x_slower:
      split && n === TARGET_N && r.cli_loop_over_up != null ? (r.cli_loop_over_up as number) >= 20 : null,
    ours_cpu_at_most_keystones: cpu?.ours_over_keystone != null ? cpu.ours_over_keystone <= 1 : null,
    peak_rss_under_1_gib: peak < PEAK_RSS_LIMIT_MB,
    noop_up_within_5pct_of_floor:
      split && n >= NOOP_TARGET_N ? (r.noop_up_s as number) <= 0.05 * (r.floor_s as number) : null,
    // Issue 26: the no-op as operators get it (the skip), against the forced one of the same run.
    noop_skip_within_5pct_of_forced: n >= NOOP_TARGET_N && skipRatio != null ? skipRatio <= 0.05 : null,
    noop_zero_writes_by_resources:
      ((r.noop_keystone_requests_by_agent as Record<string, { writes: number }> | undefined)?.["keystone-totp"]
        ?.writes ?? 0) === 0,
    preview_sends_nothing: r.preview_keystone_writes === 0 && r.preview_smtp_messages === 0,
    s_per_user: (r.s_per_user as { up: number }).up,
  };
}

/** The skipped no-op's time over the forced one's, in rows that measured both. */
function skipOverForced(r: Result): number | null {
  const skip = r.noop_with_skip as { over_forced?: number | null } | undefined;
  return skip?.over_forced ?? null;
}

/** A markdown table. */
function md(head: readonly string[], rows: readonly string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((x) => `| ${x.join(" | ")} |`),
  ].join("\n");
}

/** `N`, or `N (K stacks)`. */
function nOf(r: Result): string {
  return shardsOf(r) > 1 ? `${r.n} (${shardsOf(r)} stacks)` : String(r.n);
}

/** The main table: one line per row. */
function timesTable(results: readonly Result[]): string {
  const head = [
    "N",
    "layout",
    "floor s (in flight)",
    "up s",
    "up/floor",
    "up/safe floor",
    "no-op up s",
    "no-op skipped s",
    "preview s",
    "Keystone req/user",
    "no-op writes",
    "SMTP conns/msgs",
    "state B/user",
    "CLI s/user",
    "CLI loop/up",
    "peak RSS MB program/provider/engine",
  ];
  const rows = results.map((r) => [
    nOf(r),
    layoutOf(r),
    `${r.floor_s} (${r.floor_concurrency})`,
    String(r.up_s),
    `${r.up_over_floor}x`,
    r.up_over_floor_safe == null ? "n/a" : `${r.up_over_floor_safe}x`,
    String(r.noop_up_s),
    r.noop_with_skip == null ? "n/a" : String((r.noop_with_skip as { up_s: number }).up_s),
    String(r.preview_s),
    String(r.keystone_requests_per_credential),
    String(r.noop_keystone_writes),
    `${r.smtp_connections}/${r.smtp_messages}`,
    String(r.state_bytes_per_user),
    r.cli_loop_s_per_user == null ? "n/a" : String(r.cli_loop_s_per_user),
    r.cli_loop_over_up == null ? "n/a" : `${r.cli_loop_over_up}x`,
    `${r.peak_rss_program_mb}/${r.peak_rss_provider_mb}/${r.peak_rss_engine_mb}`,
  ]);
  return md(head, rows);
}

/** CPU ms per user: one line per row and run (rows from before the CPU accounting have none). */
function cpuTable(results: readonly Result[]): string {
  const head = [
    "N",
    "layout",
    "run",
    "engine",
    "providers",
    "program",
    "ours",
    "Keystone + PostgreSQL",
    "ours / Keystone",
    "floor: Keystone / client",
  ];
  const runs = [
    ["up", "cpu_ms_per_user"],
    ["no-op up", "noop_cpu_ms_per_user"],
    ["preview", "preview_cpu_ms_per_user"],
  ] as const;
  const rows: string[][] = [];
  for (const r of results) {
    for (const [run, key] of runs) {
      const c = r[key] as CpuPerUser | undefined;
      if (!c) continue;
      rows.push([
        nOf(r),
        layoutOf(r),
        run,
        String(c.engine),
        String(c.providers),
        String(c.program),
        String(c.ours),
        String(c.keystone_and_postgres),
        c.ours_over_keystone === null ? "n/a" : `${c.ours_over_keystone}x`,
        run === "up" ? `${r.floor_keystone_cpu_ms_per_user ?? "n/a"} / ${r.floor_client_cpu_ms_per_user ?? "n/a"}` : "",
      ]);
    }
  }
  return md(head, rows);
}

/** Prints the tables and the targets of every row on stdout. */
export function printReport(merged: readonly Result[]): void {
  const cpuTitle = "CPU ms per user (from /proc; ours = engine + providers + program)";
  process.stdout.write(`\n${timesTable(merged)}\n\n${cpuTitle}\n\n${cpuTable(merged)}\n\n`);
  for (const r of merged) process.stdout.write(`targets ${JSON.stringify(targets(r))}\n`);
  process.stdout.write("\nwrote bench/results.json and bench/time-per-user.svg\n");
}
