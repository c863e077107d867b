/**
 * The split layout of the benchmark: Keystone (its uWSGI master, workers and HTTP router, and
 * its memcached when it has one) and its PostgreSQL backends on one core, everything of
 * keystone-totp's (the program, the Pulumi CLI, the provider processes) on the other, as when
 * Keystone runs on its own hosts. Pinning is done with `taskset` (util-linux), all threads of
 * each process.
 *
 * The PostgreSQL cluster is shared with other checkouts' Keystones on this machine, so the
 * postmaster is NOT pinned (its new backends would inherit the pin, whoever they serve): this
 * instance's backends are found by their database name and pinned as they appear (Keystone
 * keeps a connection pool, so most live for the whole run), along with the cluster's
 * background writers (checkpointer, background writer, WAL writer), whose work the run's
 * writes cause. Everything pinned is given back its previous affinity by {@link Pinning.release}.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { memcachedOf } from "./procs.ts";

/** How often new backends and uWSGI workers are looked for, ms. */
const PIN_EVERY_MS = 500;
const AUX = /^postgres: \S+ (checkpointer|background writer|walwriter)\s*$/;

/** Cores of the split layout. */
export interface Cores {
  /** Keystone, PostgreSQL and the bench's stand-ins for the far side (SMTP sink, counting proxy). */
  readonly keystone: number;
  /** The program, the CLI and engine, the providers, the floor's client, the CLI loop. */
  readonly ours: number;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  return (read(`/proc/${pid}/cmdline`) ?? "").split("\0").join(" ").trim();
}

function ppidOf(pid: number): number | undefined {
  const s = read(`/proc/${pid}/stat`);
  if (!s) return undefined;
  return Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
}

/** The affinity list of a process (`0-1`, `0`), or undefined when it is gone. */
export function affinityOf(pid: number): string | undefined {
  try {
    return execFileSync("taskset", ["-c", "-p", String(pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .split(": ")
      .pop();
  } catch {
    return undefined;
  }
}

/** Pins every thread of `pid` to `cpus` (a taskset list). False when the process is gone. */
export function pin(pid: number, cpus: string): boolean {
  try {
    execFileSync("taskset", ["-a", "-c", "-p", cpus, String(pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** True when `taskset` can be run. */
export function tasksetAvailable(): boolean {
  try {
    execFileSync("taskset", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The GOMAXPROCS a Go program started with this affinity gets (the CPUs it may use). */
export function cpusIn(list: string): number {
  let n = 0;
  for (const part of list.split(",")) {
    const [a, b] = part.split("-").map(Number);
    n += b === undefined ? 1 : (b as number) - (a as number) + 1;
  }
  return n;
}

/**
 * Keeps this Keystone instance and its database backends pinned to `cores.keystone` until
 * released.
 */
export class Pinning {
  private readonly before = new Map<number, string>();
  private readonly timer: NodeJS.Timeout;
  private readonly keystoneState: string;
  private readonly cpus: string;

  constructor(keystoneState: string, cores: Cores) {
    this.keystoneState = keystoneState;
    this.cpus = String(cores.keystone);
    this.sweep();
    this.timer = setInterval(() => this.sweep(), PIN_EVERY_MS);
    this.timer.unref();
  }

  /** Processes pinned so far (the uWSGI ones, memcached, the backends, the cluster's writers). */
  get pinned(): number {
    return this.before.size;
  }

  private targets(): number[] {
    const pidFile = join(this.keystoneState, "uwsgi.pid");
    const master = existsSync(pidFile) ? Number((read(pidFile) ?? "").trim()) : Number.NaN;
    const conf = read(join(this.keystoneState, "keystone.conf")) ?? "";
    const db = /^connection = \S+\/(\w+)\s*$/m.exec(conf)?.[1];
    if (!Number.isInteger(master) || !db) {
      throw new Error(`split layout: no running Keystone with a database in ${this.keystoneState}`);
    }
    const backend = new RegExp(`^postgres: \\S+ ${db} `);
    const cache = memcachedOf(this.keystoneState);
    const out: number[] = cache === undefined ? [] : [cache];
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      const pid = Number(d);
      if (pid === master || ppidOf(pid) === master) out.push(pid);
      else {
        const cmd = cmdline(pid);
        if (backend.test(cmd) || AUX.test(cmd)) out.push(pid);
      }
    }
    return out;
  }

  private sweep(): void {
    for (const pid of this.targets()) {
      if (this.before.has(pid)) continue;
      const was = affinityOf(pid);
      if (was !== undefined && pin(pid, this.cpus)) this.before.set(pid, was);
    }
  }

  /** Gives every process still alive the affinity it had before. */
  release(): void {
    clearInterval(this.timer);
    for (const [pid, was] of this.before) pin(pid, was);
    this.before.clear();
  }
}
