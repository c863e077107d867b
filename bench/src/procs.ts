/**
 * Process accounting for the benchmark, from /proc (Linux only): the peak resident memory
 * (VmHWM, which the kernel keeps as a high-water mark, so polling before a process exits
 * catches its peak) and the CPU time of every process under a root pid, by role:
 *
 *   program   the Node.js process running scripts/provision.ts (the Automation API host and
 *             the inline program)
 *   engine    the Pulumi CLI (Go) that the Automation API starts
 *   provider  the dynamic-provider Node.js processes (`pulumi-resource-pulumi-nodejs`)
 *   other     anything else (the provider's sh shim)
 *
 * Plus helpers to read the CPU time of matching processes anywhere (Keystone's uWSGI workers,
 * PostgreSQL backends) and the whole machine's busy time.
 */
import { readdirSync, readFileSync } from "node:fs";

export type Role = "program" | "engine" | "provider" | "other";

export interface RoleStats {
  /** Largest VmHWM seen among this role's processes, MB. */
  peakRssMb: number;
  /** CPU seconds (user + system) at the last sighting, summed over this role's processes. */
  cpuS: number;
  processes: number;
}

const TICK = 100; // USER_HZ on Linux

interface Seen {
  role: Role;
  hwmKb: number;
  cpuTicks: number;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/**
 * ppid, utime + stime, and cutime + cstime (the reaped children's, ticks) from
 * /proc/<pid>/stat; the command may contain spaces.
 */
function statOf(pid: number): { ppid: number; ticks: number; childTicks: number } | undefined {
  const s = read(`/proc/${pid}/stat`);
  if (!s) return undefined;
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), childTicks: Number(f[13]) + Number(f[14]) };
}

function pids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function cmdline(pid: number): string {
  return (read(`/proc/${pid}/cmdline`) ?? "").split("\0").join(" ").trim();
}

/** The role of a process from its command line. */
export function classify(cmd: string): Role {
  if (cmd.includes("scripts/provision.ts") || cmd.includes("scripts/shards.ts")) return "program";
  if (cmd.includes("dynamic-provider")) return "provider";
  if (/(^|\/)pulumi(\s|$)/.test(cmd)) return "engine";
  return "other";
}

/** Polls the process tree under `root` until stopped. */
export function watchTree(
  root: number,
  everyMs = 250,
): { stop(): Record<Role, RoleStats>; perProcess(): Map<number, { role: Role; cpuS: number; peakRssKb: number }> } {
  const seen = new Map<number, Seen>();
  const poll = () => {
    const all = pids();
    const parent = new Map<number, number>();
    const ticks = new Map<number, number>();
    for (const p of all) {
      const st = statOf(p);
      if (!st) continue;
      parent.set(p, st.ppid);
      ticks.set(p, st.ticks);
    }
    for (const p of all) {
      let q: number | undefined = p;
      let inside = false;
      for (let hops = 0; q !== undefined && q > 1 && hops < 32; hops++) {
        if (q === root) {
          inside = true;
          break;
        }
        q = parent.get(q);
      }
      if (!inside) continue;
      const hwm = /VmHWM:\s+(\d+) kB/.exec(read(`/proc/${p}/status`) ?? "");
      let s = seen.get(p);
      if (!s) {
        s = { role: classify(cmdline(p)), hwmKb: 0, cpuTicks: 0 };
        seen.set(p, s);
      } else if (s.role === "other") {
        s.role = classify(cmdline(p)); // the shim execs later; re-read until it settles
      }
      if (hwm) s.hwmKb = Math.max(s.hwmKb, Number(hwm[1]));
      s.cpuTicks = Math.max(s.cpuTicks, ticks.get(p) ?? 0);
    }
  };
  poll();
  const timer = setInterval(poll, everyMs);
  return {
    stop() {
      clearInterval(timer);
      poll();
      const out = {} as Record<Role, RoleStats>;
      for (const r of ["program", "engine", "provider", "other"] as Role[]) {
        out[r] = { peakRssMb: 0, cpuS: 0, processes: 0 };
      }
      for (const s of seen.values()) {
        const o = out[s.role];
        o.peakRssMb = Math.max(o.peakRssMb, Math.round((s.hwmKb / 1024) * 10) / 10);
        o.cpuS = Math.round((o.cpuS + s.cpuTicks / TICK) * 100) / 100;
        o.processes++;
      }
      return out;
    },
    perProcess() {
      return new Map([...seen].map(([pid, s]) => [pid, { role: s.role, cpuS: s.cpuTicks / TICK, peakRssKb: s.hwmKb }]));
    },
  };
}

/** CPU seconds so far of every live process whose command line matches `pattern`. */
export function cpuOfMatching(pattern: RegExp): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of pids()) {
    if (!pattern.test(cmdline(p))) continue;
    const st = statOf(p);
    if (st) out.set(p, st.ticks / TICK);
  }
  return out;
}

/** CPU seconds used by matching processes between two {@link cpuOfMatching} samples. */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return Math.round(sum * 100) / 100;
}

/** Busy and total CPU seconds of the whole machine so far (all cores), from /proc/stat. */
export function machineCpu(): { busyS: number; totalS: number } {
  const line = (read("/proc/stat") ?? "").split("\n")[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busyS: (total - idle) / TICK, totalS: total / TICK };
}

/** CPU seconds so far of `root` and every live process under it. */
export function cpuOfTree(root: number): Map<number, number> {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const p of pids()) {
    const st = statOf(p);
    if (st) stats.set(p, st);
  }
  const out = new Map<number, number>();
  for (const [p, st] of stats) {
    let q: number | undefined = p;
    for (let hops = 0; q !== undefined && q > 1 && hops < 32; hops++) {
      if (q === root) {
        out.set(p, st.ticks / TICK);
        break;
      }
      q = stats.get(q)?.ppid;
    }
  }
  return out;
}

/**
 * CPU seconds so far of one Keystone instance (state folder `state`), its PostgreSQL
 * backends and its memcached (when started with `--cache memcached`). Other checkouts run
 * Keystones with the same process titles on this machine, so the uWSGI processes are found under the master in this instance's pid file, and the backends by
 * this instance's database. KT_BENCH_KEYSTONE_PROCS / KT_BENCH_POSTGRES_PROCS (regular
 * expressions on the command line) override both, for a Keystone started otherwise.
 */
export function keystoneCpuOf(state: string): Map<number, number> {
  const out = new Map<number, number>();
  const pidFile = `${state}/uwsgi.pid`;
  const master = Number((read(pidFile) ?? "").trim() || Number.NaN);
  const uwsgi = process.env.KT_BENCH_KEYSTONE_PROCS
    ? cpuOfMatching(new RegExp(process.env.KT_BENCH_KEYSTONE_PROCS))
    : Number.isInteger(master)
      ? cpuOfTree(master)
      : cpuOfMatching(/^keystone-default uWSGI/);
  const pg = keystoneBackends(state);
  const cache = memcachedOf(state);
  const cacheCpu = cache === undefined ? [] : [...cpuOfTree(cache)];
  for (const [pid, v] of [...uwsgi, ...cpuOfMatching(pg), ...cacheCpu]) out.set(pid, v);
  return out;
}

/** The command lines of the PostgreSQL backends serving Keystone's database (see keystoneCpuOf). */
function keystoneBackends(state: string): RegExp {
  const db = /^connection = \S+\/(\w+)\s*$/m.exec(read(`${state}/keystone.conf`) ?? "")?.[1];
  return new RegExp(process.env.KT_BENCH_POSTGRES_PROCS ?? `^postgres: .*${db ?? "keystone_default"}( |$)`);
}

/** PostgreSQL's cluster pid file (Debian's 15/main, the one scripts/keystone.sh starts). */
const POSTMASTER_PID = process.env.KT_BENCH_POSTMASTER_PID ?? "/var/run/postgresql/15-main.pid";

/**
 * CPU seconds so far of the PostgreSQL server outside Keystone's database: the postmaster, its
 * live children (backends of every database, the WAL and background writers, autovacuum) and
 * the children it has reaped (a backend of a Pulumi CLI's connection ends with the CLI, before
 * the run's last sample: the postmaster's cutime and cstime still hold it), less Keystone's own
 * live backends. What a PostgreSQL state backend costs the server shows here; with the file
 * backend the same figure is the server's background. Undefined without a readable postmaster.
 */
export function postgresOutsideKeystoneCpu(
  state: string,
): { totalS: number; keystone: Map<number, number> } | undefined {
  const master = Number((read(POSTMASTER_PID) ?? "").split("\n")[0]?.trim() || Number.NaN);
  const st = Number.isInteger(master) ? statOf(master) : undefined;
  if (!st) return undefined;
  let ticks = st.ticks + st.childTicks;
  for (const p of pids()) {
    const c = statOf(p);
    if (c?.ppid === master) ticks += c.ticks;
  }
  return { totalS: ticks / TICK, keystone: cpuOfMatching(keystoneBackends(state)) };
}

/** CPU seconds of the PostgreSQL server outside Keystone's database between two samples. */
export function postgresOutsideKeystoneDelta(
  before: ReturnType<typeof postgresOutsideKeystoneCpu>,
  after: ReturnType<typeof postgresOutsideKeystoneCpu>,
): number | null {
  if (!before || !after) return null;
  return Math.round((after.totalS - before.totalS - cpuDelta(before.keystone, after.keystone)) * 100) / 100;
}

/**
 * The pid of the memcached of the Keystone instance in `state` (scripts/keystone.sh
 * `--cache memcached`), if one runs.
 */
export function memcachedOf(state: string): number | undefined {
  const pid = Number((read(`${state}/memcached.pid`) ?? "").trim() || Number.NaN);
  return Number.isInteger(pid) && (read(`/proc/${pid}/comm`) ?? "").trim() === "memcached" ? pid : undefined;
}

/** CPU seconds of one measured run by class of process, exact where the exit hook reported. */
export interface ClassCpu {
  /** scripts/provision.ts (or shards.ts and the provision.ts it starts). */
  program: number;
  /** The Pulumi CLI processes (engine) and what they start besides the providers (the shims). */
  engine: number;
  /** The dynamic-provider Node.js processes. */
  provider: number;
  /** Everything under the run, from the wrapper shell's `times` (reaped children included). */
  total: number;
  /** Processes whose exit the hook recorded, and those only polled (their last poll counts). */
  exact_processes: number;
  polled_processes: number;
  /** Peak resident memory per class, MB. */
  peak_rss_mb: Record<"program" | "provider" | "engine", number>;
}

/** One line of bench/src/exit-cpu.cjs. */
interface ExitLine {
  pid: number;
  argv: string;
  userUs: number;
  systemUs: number;
  maxRssKb: number;
}

/** Children's user + system seconds from bash's `times` output (its second line). */
export function parseTimes(text: string): number | undefined {
  const line = text.trim().split("\n")[1];
  if (!line) return undefined;
  const parts = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return parts.length === 2 ? (parts[0] as number) + (parts[1] as number) : undefined;
}

/**
 * CPU seconds of one measured run by class: program and providers from the exit hook's exact
 * figures (else their last poll), the total from the wrapper shell's `times` (reaped children
 * included), and the engine as the rest: the Pulumi CLI processes and what they start besides
 * the providers (the provider shims). Peak RSS per class in MB, the hook's where it reported.
 */
export function classCpu(
  polled: ReadonlyMap<number, { role: Role; cpuS: number; peakRssKb: number }>,
  exitLog: string,
  timesFile: string,
): ClassCpu {
  const exact = new Map<number, ExitLine>();
  for (const line of (read(exitLog) ?? "").split("\n")) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as ExitLine;
      exact.set(e.pid, e);
    } catch {
      // a line cut short by a killed process
    }
  }
  const sum = { program: 0, provider: 0, other: 0, engine: 0 };
  const peak = { program: 0, provider: 0, engine: 0 };
  let polledOnly = 0;
  const pidsAll = new Set([...polled.keys(), ...exact.keys()]);
  for (const pid of pidsAll) {
    const e = exact.get(pid);
    const p = polled.get(pid);
    const role: Role = e ? classify(e.argv) : (p?.role ?? "other");
    const cpu = e ? (e.userUs + e.systemUs) / 1e6 : (p?.cpuS ?? 0);
    if (!e) polledOnly++;
    sum[role] += cpu;
    const kb = Math.max(e?.maxRssKb ?? 0, p?.peakRssKb ?? 0);
    if (role !== "other") peak[role] = Math.max(peak[role], kb);
  }
  const all = sum.program + sum.provider + sum.other + sum.engine;
  const total = parseTimes(read(timesFile) ?? "") ?? all;
  const r2 = (v: number) => Math.round(v * 100) / 100;
  const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
  return {
    program: r2(sum.program),
    provider: r2(sum.provider),
    engine: r2(Math.max(0, total - sum.program - sum.provider)),
    total: r2(total),
    exact_processes: exact.size,
    polled_processes: polledOnly,
    peak_rss_mb: { program: mb(peak.program), provider: mb(peak.provider), engine: mb(peak.engine) },
  };
}
