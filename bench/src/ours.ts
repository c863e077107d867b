/**
 * keystone-totp's side of a measurement: on an empty stack, `up` (every user enrolled), a no-op
 * `up --expect-no-changes` and a `preview`, then the state's size. The figures are kept in the
 * partial file as they come (see partial.ts).
 */
import os from "node:os";
import type { Floor } from "./floor.ts";
import { log, round } from "./log.ts";
import { writePartial } from "./partial.ts";
import { cpuPerUser } from "./row.ts";
import { failIf, measureRun, type RunContext, type RunResult } from "./run.ts";
import type { Stack } from "./stack.ts";
import { exportState, type StateSize } from "./state.ts";

/** What the runs measured. */
export interface OursResult {
  up: RunResult;
  /** The no-op `up` with the skip off (`--force`): the engine reads and diffs every resource. */
  noop: RunResult;
  /** The no-op `up` as operators get it: the skip finds nothing can change (docs/daily-run.md). */
  noopSkip: RunResult;
  preview: RunResult;
  state: StateSize;
  /** Load averages before the `up` and after the `preview`: how quiet the machine was. */
  loadStart: number[];
  loadAfterMain: number[];
}

/** Runs and measures the `up`, the no-op `up` and the `preview` of `n` users on `stack`. */
export async function measureOurs(
  stack: Stack,
  n: number,
  parallel: number,
  floor: Floor,
  ctx: RunContext,
): Promise<OursResult> {
  const par = ["--parallel", String(parallel)];
  const loadStart = os.loadavg().map((v) => round(v));
  const { shards, layout } = stack.spec;

  log(`N=${n}: up (stack ${stack.name}${shards > 1 ? `, ${shards} shards` : ""})`);
  const up = await measureRun(stack, "up", ["--yes", ...par], ctx);
  failIf(up, "up");
  log(`N=${n}: up ${up.wall_s} s; noop up`);
  const { measuredUsers, measuredS, ...floorResult } = floor;
  const afterUp = {
    n,
    layout: layout.layout,
    shards,
    parallel,
    floor: floorResult,
    floor_measured_users: measuredUsers,
    floor_measured_s: measuredS,
    up_s: up.wall_s,
    cpu_ms_per_user: cpuPerUser(up, n),
    up_cpu: up.cpu,
    up_keystone: up.keystone,
  };
  writePartial(afterUp);

  // Forced, as every no-op row before the skip existed: the engine's cost of finding nothing.
  const noop = await measureRun(stack, "up", ["--yes", "--expect-no-changes", "--force", ...par], {
    ...ctx,
    expectedOps: 0,
  });
  failIf(noop, "no-op up");
  log(`N=${n}: no-op up (forced) ${noop.wall_s} s; no-op up with the skip`);
  const noopSkip = await measureRun(stack, "up", ["--yes", "--expect-no-changes", ...par], {
    ...ctx,
    expectedOps: 0,
  });
  failIf(noopSkip, "no-op up with the skip");
  if (!/nothing can change: skipped/.test(noopSkip.output)) {
    throw new Error(`the no-op up with the skip on ran the engine:\n${noopSkip.output.slice(-2000)}`);
  }
  writePartial({
    ...afterUp,
    noop_up_s: noop.wall_s,
    noop_cpu_ms_per_user: cpuPerUser(noop, n),
    noop_cpu: noop.cpu,
    noop_keystone_writes: noop.keystone.writes,
    noop_skip_up_s: noopSkip.wall_s,
  });
  log(`N=${n}: no-op up ${noop.wall_s} s; preview`);

  const preview = await measureRun(stack, "preview", [...par], { ...ctx, expectedOps: 0 });
  failIf(preview, "preview");
  log(`N=${n}: preview ${preview.wall_s} s; stack export`);
  const state = await exportState(stack);
  const loadAfterMain = os.loadavg().map((v) => round(v));
  return { up, noop, noopSkip, preview, state, loadStart, loadAfterMain };
}
