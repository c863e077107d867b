/**
 * The optional diagnoses of a measurement (--diagnose, --diagnose-parallel): further `up`s of
 * the same users, each on a fresh stack, that tell where the engine's time goes. They are not
 * part of the comparison with the floor.
 */
import os from "node:os";
import { log, round } from "./log.ts";
import type { ByParallel } from "./row.ts";
import { failIf, measureRun, type RunContext, type RunResult } from "./run.ts";
import type { Stack } from "./stack.ts";

/** Makes a fresh stack of the same users and settings. */
export type NewStack = () => Promise<Stack>;

/**
 * An `up` with PULUMI_SKIP_CHECKPOINTS=true: how much of the time is the file backend's
 * checkpoint after every step (not advised for operators: a crash loses the state).
 */
export async function diagnoseCheckpoints(
  n: number,
  newStack: NewStack,
  par: string[],
  ctx: RunContext,
): Promise<RunResult> {
  const second = await newStack();
  log(`N=${n}: diagnose: up with PULUMI_SKIP_CHECKPOINTS=true (stack ${second.name})`);
  const diag = await measureRun(second, "up", ["--yes", ...par], { ...ctx, env: { PULUMI_SKIP_CHECKPOINTS: "true" } });
  failIf(diag, "up (PULUMI_SKIP_CHECKPOINTS)");
  log(`N=${n}: up with PULUMI_SKIP_CHECKPOINTS=true: ${diag.wall_s} s`);
  return diag;
}

/** An `up` with each of these --parallel values: whether the engine's concurrency matters. */
export async function diagnoseParallel(
  n: number,
  newStack: NewStack,
  values: readonly number[],
  ctx: RunContext,
): Promise<ByParallel> {
  const byParallel: ByParallel = {};
  for (const p of values) {
    const other = await newStack();
    const load = round(os.loadavg()[0] ?? 0);
    log(`N=${n}: diagnose: up with --parallel ${p} (stack ${other.name})`);
    const r = await measureRun(other, "up", ["--yes", "--parallel", String(p)], ctx);
    failIf(r, `up --parallel ${p}`);
    byParallel[String(p)] = { up_s: r.wall_s, engine_cpu_s: r.roles.engine.cpuS, load_average_1m: load };
    log(`N=${n}: up with --parallel ${p}: ${r.wall_s} s`);
  }
  return byParallel;
}
