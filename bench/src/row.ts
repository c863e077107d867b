/**
 * One row of bench/results.json: everything one N measured in one layout, flattened for
 * people and for the chart. The keys and their order are the file's format: rows from earlier
 * runs are kept beside new ones, so a key is added, never renamed or moved.
 */
import os from "node:os";
import type { CliLoop } from "./cli-loop.ts";
import type { Floor } from "./floor.ts";
import type { LayoutSpec } from "./layout.ts";
import { round } from "./log.ts";
import type { Meta } from "./meta.ts";
import type { RunResult } from "./run.ts";
import { SEND_RATE } from "./stack.ts";
import type { StateSize } from "./state.ts";

/** A row (rows of older runs may lack the newer keys). */
export type Result = Record<string, unknown> & { n: number };

/** The --parallel diagnosis: per value, the `up`'s time, the engine's CPU and the load before it. */
export type ByParallel = Record<string, { up_s: number; engine_cpu_s: number; load_average_1m: number }>;

/** What one N measured in one layout: the inputs of its row. */
export interface Measured {
  readonly n: number;
  readonly layout: LayoutSpec;
  readonly parallel: number;
  readonly shards: number;
  readonly shardConcurrency: number;
  readonly setupS: number;
  readonly floor: Floor;
  readonly up: RunResult;
  readonly noop: RunResult;
  readonly noopSkip: RunResult;
  readonly preview: RunResult;
  readonly state: StateSize;
  /** 1-minute, 5-minute and 15-minute load averages before the `up` and after the preview. */
  readonly loadStart: number[];
  readonly loadAfterMain: number[];
  /** The `up` with PULUMI_SKIP_CHECKPOINTS=true (--diagnose), if run. */
  readonly diag: RunResult | undefined;
  readonly byParallel: ByParallel;
  readonly cli: CliLoop;
  /** `file` or `postgres`: where the measured stacks kept their state. */
  readonly stateBackend: "file" | "postgres";
  readonly meta: Meta;
}

/**
 * CPU ms per user of one run by class, and ours (engine + providers + program) over Keystone's
 * (its uWSGI processes and PostgreSQL backends) in the same run.
 */
export function cpuPerUser(r: RunResult, n: number) {
  const ms = (s: number) => round((s * 1000) / n, 2);
  const ours = r.cpu.engine + r.cpu.provider + r.cpu.program;
  return {
    engine: ms(r.cpu.engine),
    providers: ms(r.cpu.provider),
    program: ms(r.cpu.program),
    ours: ms(ours),
    keystone_and_postgres: ms(r.keystoneCpuS),
    ours_over_keystone: r.keystoneCpuS > 0 ? round(ours / r.keystoneCpuS) : null,
    // Not in either side above: the PostgreSQL server outside Keystone's database (a
    // PostgreSQL state backend's writes; with the file backend, the server's background).
    postgres_outside_keystone: r.postgresOtherCpuS === null ? null : ms(r.postgresOtherCpuS),
  };
}

/** Bytes per user of each key, to one decimal. */
function perUser(bytes: Record<string, number>, n: number): Record<string, number> {
  return Object.fromEntries(Object.entries(bytes).map(([k, v]) => [k, Math.round((v / n) * 10) / 10]));
}

/** The row of one measurement. */
export function buildRow(m: Measured): Result {
  const { n, layout, floor, up, noop, noopSkip, preview, state, diag, cli } = m;
  const creds = up.keystone.byRoute["POST /v3/credentials"] ?? 0;
  const cliLoopS = cli.s_per_user === null ? null : round(cli.s_per_user * n, 1);
  return {
    n,
    date: new Date().toISOString(),
    layout: layout.layout,
    cores: layout.layout === "split" ? layout.cores : null,
    floor_s: floor.floor_s,
    floor_concurrency: floor.floor_concurrency,
    floor_enrollments_per_s: floor.floor_enrollments_per_s,
    floor_probe_enrollments_per_s: floor.floor_probe_enrollments_per_s,
    floor_measured_users: floor.measuredUsers,
    floor_measured_s: floor.measuredS,
    floor_requests: "PATCH /v3/users/{id} (MFA rules) + POST /v3/credentials per user",
    floor_keystone_cpu_ms_per_user: round((floor.floor_keystone_cpu_s * 1000) / floor.measuredUsers, 1),
    floor_client_cpu_ms_per_user: round((floor.floor_client_cpu_s * 1000) / floor.measuredUsers, 1),
    floor_safe_s: floor.floor_safe_s,
    floor_safe_concurrency: floor.floor_safe_concurrency,
    floor_safe_requests:
      "PATCH /v3/users/{id}, settling pause, PATCH again + GET /v3/users/{id} (read back) + GET /v3/credentials?user_id&type=totp + POST /v3/credentials per user",
    floor_safe_keystone_cpu_ms_per_user: round((floor.floor_safe_keystone_cpu_s * 1000) / floor.measuredUsers, 1),
    floor_safe_client_cpu_ms_per_user: round((floor.floor_safe_client_cpu_s * 1000) / floor.measuredUsers, 1),
    state_backend: m.stateBackend,
    up_s: up.wall_s,
    // noop_* are the forced no-op (the engine runs: as in every row before the skip);
    // noop_with_skip_* the same no-op as operators now get it.
    noop_skip: false,
    noop_up_s: noop.wall_s,
    noop_with_skip: {
      noop_skip: true,
      up_s: noopSkip.wall_s,
      over_forced: noop.wall_s > 0 ? round(noopSkip.wall_s / noop.wall_s, 4) : null,
      cpu_ms_per_user: cpuPerUser(noopSkip, n),
      keystone_requests: noopSkip.keystone.total,
      keystone_requests_by_route: noopSkip.keystone.byRoute,
      keystone_writes: noopSkip.keystone.writes,
      smtp_connections: noopSkip.smtpConnections,
    },
    preview_s: preview.wall_s,
    up_over_floor: round(up.wall_s / floor.floor_s),
    up_over_floor_safe: round(up.wall_s / floor.floor_safe_s),
    cli_loop_s: cliLoopS,
    cli_loop_s_per_user: cli.s_per_user,
    cli_loop_sample: cli.sample,
    cli_loop_note: cli.note,
    cli_loop_over_up: cliLoopS === null ? null : round(cliLoopS / up.wall_s, 1),
    s_per_user: {
      floor: round(floor.floor_s / n, 4),
      up: round(up.wall_s / n, 4),
      noop_up: round(noop.wall_s / n, 4),
      preview: round(preview.wall_s / n, 4),
      cli_loop: cli.s_per_user,
    },
    keystone_credentials_created: creds,
    keystone_requests: up.keystone.total,
    keystone_requests_per_credential: creds > 0 ? round(up.keystone.total / creds, 3) : null,
    // Without the preflight's requests (the doctor's, which include a refused POST probe).
    keystone_requests_per_credential_program: round((up.keystone.byAgent["keystone-totp"]?.requests ?? 0) / n, 3),
    keystone_requests_by_route: up.keystone.byRoute,
    keystone_tokens_issued: up.keystone.tokens,
    keystone_requests_by_agent: up.keystone.byAgent,
    noop_keystone_requests_by_agent: noop.keystone.byAgent,
    noop_keystone_requests: noop.keystone.total,
    noop_keystone_writes: noop.keystone.writes,
    preview_keystone_requests: preview.keystone.total,
    preview_keystone_writes: preview.keystone.writes,
    preview_smtp_messages: preview.smtpMessages,
    smtp_messages: up.smtpMessages,
    smtp_connections: up.smtpConnections,
    noop_smtp_connections: noop.smtpConnections + preview.smtpConnections,
    state_bytes: state.bytes,
    state_bytes_per_user: Math.round(state.bytes / n),
    state_provider_bytes_per_user: Math.round(state.providerBytes / n),
    state_resources: state.resources,
    peak_rss_program_mb: Math.max(up.cpu.peak_rss_mb.program, noop.cpu.peak_rss_mb.program),
    peak_rss_provider_mb: Math.max(up.cpu.peak_rss_mb.provider, noop.cpu.peak_rss_mb.provider),
    peak_rss_engine_mb: Math.max(up.cpu.peak_rss_mb.engine, noop.cpu.peak_rss_mb.engine),
    provider_processes: up.roles.provider.processes,
    up_cpu_s: {
      program: up.cpu.program,
      engine: up.cpu.engine,
      provider: up.cpu.provider,
      keystone_and_postgres: up.keystoneCpuS,
      postgres_outside_keystone: up.postgresOtherCpuS,
    },
    noop_up_cpu_s: {
      program: noop.cpu.program,
      engine: noop.cpu.engine,
      provider: noop.cpu.provider,
      keystone_and_postgres: noop.keystoneCpuS,
      postgres_outside_keystone: noop.postgresOtherCpuS,
    },
    up_machine_busy_fraction: up.machineBusy,
    up_progress: up.progress,
    up_skip_checkpoints_s: diag ? diag.wall_s : null,
    up_skip_checkpoints_over_floor: diag ? round(diag.wall_s / floor.floor_s) : null,
    up_by_parallel: m.byParallel,
    shards: m.shards,
    shard_concurrency: m.shards > 1 ? m.shardConcurrency : null,
    state_compact_bytes_per_user: Math.round(state.compactBytes / n),
    state_checkpoint_bytes_per_user: Math.round(state.checkpointBytes / n),
    state_bytes_per_user_by_type: perUser(state.byType, n),
    state_bytes_per_user_by_field: perUser(
      Object.fromEntries(Object.entries(state.byField).sort(([, a], [, b]) => b - a)),
      n,
    ),
    load_average_during: { start: m.loadStart, after_up_noop_preview: m.loadAfterMain },
    users_setup_s: round(m.setupS, 1),
    floor_cleanup_s: floor.floor_cleanup_s,
    send_rate_per_second: SEND_RATE,
    parallel: m.parallel,
    // Go sizes GOMAXPROCS from the CPUs the engine may run on.
    engine_gomaxprocs: layout.layout === "split" ? 1 : os.cpus().length,
    cpu_ms_per_user: cpuPerUser(up, n),
    noop_cpu_ms_per_user: cpuPerUser(noop, n),
    preview_cpu_ms_per_user: cpuPerUser(preview, n),
    cpu_accounting: { up: up.cpu, noop_up: noop.cpu, preview: preview.cpu },
    cpu_profiled: layout.cpuProf !== undefined,
    machine: m.meta.machine,
    versions: m.meta.versions,
  };
}
