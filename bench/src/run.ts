/**
 * One measured run of the program (`up`, a no-op `up` or `preview`) on a measurement's stacks:
 * its wall time, CPU and peak memory by class of process, the Keystone requests it sent
 * (through the counting proxy), the mail it sent (to the sink), Keystone's CPU meanwhile, and
 * how its resource creations progressed over time.
 */
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { onOurCore } from "./layout.ts";
import { KEYSTONE_STATE, REPO } from "./local.ts";
import { round, since } from "./log.ts";
import {
  type ClassCpu,
  classCpu,
  cpuDelta,
  keystoneCpuOf,
  machineCpu,
  postgresOutsideKeystoneCpu,
  postgresOutsideKeystoneDelta,
  type Role,
  type RoleStats,
  watchTree,
} from "./procs.ts";
import type { CountingProxy, RequestCounts } from "./proxy.ts";
import type { SmtpSink } from "./smtp.ts";
import type { Stack } from "./stack.ts";

/** The shares of the expected creations at which progress is recorded. */
const PROGRESS_MARKS = [0.25, 0.5, 0.75, 1];
/** Characters of a failed run's output kept in the error. */
const ERROR_TAIL = 3000;
/**
 * Runs its arguments, then writes the shell's `times` to $KT_BENCH_TIMES: the CPU of everything
 * under it, reaped children included (the /proc poller misses what ends between two polls).
 */
const WRAPPER = 'rc=0; "$@" || rc=$?; times > "$KT_BENCH_TIMES"; exit $rc';

/** What one run measured. */
export interface RunResult {
  code: number;
  wall_s: number;
  output: string;
  roles: Record<Role, RoleStats>;
  cpu: ClassCpu;
  keystone: RequestCounts;
  smtpConnections: number;
  smtpMessages: number;
  keystoneCpuS: number;
  /**
   * The PostgreSQL server's CPU outside Keystone's database meanwhile (procs.ts): where a
   * PostgreSQL state backend's writes cost; the server's background with the file backend.
   */
  postgresOtherCpuS: number | null;
  machineBusy: number;
  /** Seconds from start at which 25/50/75/100 % of the resource creations had finished. */
  progress: { first_op_s: number | null; quartiles_s: (number | null)[] };
}

/** The instruments a run is measured with, and what it is expected to do. */
export interface RunContext {
  readonly proxy: CountingProxy;
  readonly smtp: SmtpSink;
  /** Resource creations the run should make (2 per user on a first `up`; 0 for a no-op). */
  readonly expectedOps: number;
  /** Variables added to the program's environment. */
  readonly env?: Record<string, string>;
}

/**
 * Follows the program's output for its first operation and each finished creation, as seconds
 * since `t0`: how a run's time is spread (a long start, a slow tail).
 */
class Progress {
  private firstOp: number | null = null;
  private readonly doneAt: number[] = [];
  private pending = "";
  private readonly t0: bigint;

  constructor(t0: bigint) {
    this.t0 = t0;
  }

  /** Reads a chunk of output (lines may be cut across chunks). */
  add(text: string): void {
    this.pending += text;
    const lines = this.pending.split("\n");
    this.pending = lines.pop() ?? "";
    for (const line of lines) {
      if (this.firstOp === null && /\b(creating|updating|deleting)\b/.test(line)) this.firstOp = since(this.t0);
      if (/\bcreated\b/.test(line) && !/Resources:/.test(line)) this.doneAt.push(since(this.t0));
    }
  }

  /** The first operation and the times of {@link PROGRESS_MARKS} of `expectedOps` (null: not reached). */
  result(expectedOps: number): RunResult["progress"] {
    const quartiles_s = PROGRESS_MARKS.map((f) => {
      const k = Math.ceil(f * expectedOps) - 1;
      return expectedOps > 0 && k < this.doneAt.length ? round(this.doneAt[k] as number) : null;
    });
    return { first_op_s: this.firstOp === null ? null : round(this.firstOp), quartiles_s };
  }
}

/** NODE_OPTIONS of a measured run: the exit hook (exact CPU per process) and the profiler, if asked. */
function nodeOptions(cpuProf: string | undefined): string {
  return [
    process.env.NODE_OPTIONS ?? "",
    `--require=${join(REPO, "bench/src/exit-cpu.cjs")}`,
    ...(cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${cpuProf}`] : []),
  ]
    .filter((x) => x !== "")
    .join(" ");
}

/** Runs the program's VERB on `stack` (scripts/provision.ts, or shards.ts), measuring it. */
export function measureRun(stack: Stack, verb: string, extra: string[], ctx: RunContext): Promise<RunResult> {
  const args = stack.programArgs(verb);
  ctx.proxy.reset();
  const smtp0 = { c: ctx.smtp.connections, m: ctx.smtp.messages };
  const ks0 = keystoneCpuOf(KEYSTONE_STATE);
  const pg0 = postgresOutsideKeystoneCpu(KEYSTONE_STATE);
  const m0 = machineCpu();
  const logFile = join(REPO, ".local", "logs", `bench-${stack.name}.log`);
  mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
  const acct = mkdtempSync(join(os.tmpdir(), `kt-bench-${stack.spec.n}-cpu-`));
  const cpuLog = join(acct, "exits.jsonl");
  const timesFile = join(acct, "times");
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(
      "bash",
      ["-c", WRAPPER, "bench-run", ...onOurCore(stack.spec.layout, [process.execPath, ...args, ...extra])],
      {
        cwd: REPO,
        env: {
          ...stack.env,
          ...ctx.env,
          NODE_OPTIONS: nodeOptions(stack.spec.layout.cpuProf),
          KT_BENCH_CPU_LOG: cpuLog,
          KT_BENCH_TIMES: timesFile,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const watch = watchTree(child.pid ?? -1);
    const progress = new Progress(t0);
    let output = "";
    const onData = (b: Buffer) => {
      const text = b.toString("utf8");
      output += text;
      progress.add(text);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", rej);
    child.on("close", (code) => {
      const wall = since(t0);
      const roles = watch.stop();
      const cpu = classCpu(watch.perProcess(), cpuLog, timesFile);
      rmSync(acct, { recursive: true, force: true });
      const ks1 = keystoneCpuOf(KEYSTONE_STATE);
      const pg1 = postgresOutsideKeystoneCpu(KEYSTONE_STATE);
      const m1 = machineCpu();
      appendFileSync(
        logFile,
        `$ provision ${verb} ${extra.join(" ")}\n${output}\n[exit ${code}, ${wall.toFixed(2)} s]\n\n`,
        {
          mode: 0o600,
        },
      );
      res({
        code: code ?? -1,
        wall_s: round(wall),
        output,
        roles,
        cpu,
        keystone: ctx.proxy.counts(),
        smtpConnections: ctx.smtp.connections - smtp0.c,
        smtpMessages: ctx.smtp.messages - smtp0.m,
        keystoneCpuS: cpuDelta(ks0, ks1),
        postgresOtherCpuS: postgresOutsideKeystoneDelta(pg0, pg1),
        machineBusy: round((m1.busyS - m0.busyS) / (m1.totalS - m0.totalS || 1), 2),
        progress: progress.result(ctx.expectedOps),
      });
    });
  });
}

/** Throws with the end of the run's output when it failed. */
export function failIf(r: RunResult, what: string): void {
  if (r.code !== 0) {
    throw new Error(`${what} exited ${r.code}; output (last ${ERROR_TAIL} chars):\n${r.output.slice(-ERROR_TAIL)}`);
  }
}
