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

/** ppid, utime + stime (ticks) from /proc/<pid>/stat; the command may contain spaces. */
function statOf(pid: number): { ppid: number; ticks: number } | undefined {
  const s = read(`/proc/${pid}/stat`);
  if (!s) return undefined;
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}

function pids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function cmdline(pid: number): string {
  return (read(`/proc/${pid}/cmdline`) ?? "").split("\0").join(" ").trim();
}

function classify(cmd: string): Role {
  if (cmd.includes("scripts/provision.ts")) return "program";
  if (cmd.includes("dynamic-provider")) return "provider";
  if (/(^|\/)pulumi(\s|$)/.test(cmd)) return "engine";
  return "other";
}

/** Polls the process tree under `root` until stopped. */
export function watchTree(root: number, everyMs = 250): { stop(): Record<Role, RoleStats> } {
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
