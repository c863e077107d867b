/**
 * Pulumi's stack locks in a DIY backend (file or PostgreSQL), and the one safe way to clear
 * a lock a killed runner left behind.
 *
 * A DIY backend locks a stack for a run by writing `.pulumi/locks/<org>/<project>/<stack>/<id>.json`
 * ({pid, username, hostname, timestamp} of the Pulumi CLI process) and removes it when the run
 * ends; a killed runner leaves it, and every later run of the stack is refused ("currently
 * locked by 1 lock(s)"). The locks have no expiry, and `pulumi cancel` removes every lock of the
 * stack, a live run's included: two runs would then write one state at once.
 *
 * {@link clearStaleLocks} removes a lock only when its owner is known to be gone: a process of
 * this machine that no longer exists (or whose PID a newer process, not a Pulumi CLI, now holds),
 * or any process of a machine the operator names as down (`hostIsDown`). A lock of a live
 * process is never removed.
 */
import { existsSync, readFileSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import type { StateBucket } from "./bucket.ts";

const LOCKS_PREFIX = ".pulumi/locks/";

/** Linux's USER_HZ, the unit of a process's start time in `/proc/<pid>/stat` (100 wherever Node.js runs). */
const PROC_TICKS_PER_SECOND = 100;

/**
 * How much later than its lock's timestamp a process must have started to be taken for a newer
 * one that reuses the PID, in ms: `/proc/stat` gives the boot time in whole seconds.
 */
const PID_REUSE_MARGIN_MS = 5_000;

/** How the Pulumi CLI, which writes the locks, shows in `/proc/<pid>/stat` (its executable's name). */
const PULUMI_COMMAND_PREFIX = "pulumi";

/** One lock of a stack. */
export interface StackLock {
  /** Its key in the backend. */
  readonly key: string;
  /** The Pulumi CLI process that holds it, on `hostname`. */
  readonly pid: number | undefined;
  readonly username: string | undefined;
  readonly hostname: string | undefined;
  /** When it was taken (ISO 8601). */
  readonly timestamp: string | undefined;
}

/** Whether a lock's owner is gone, and why. */
export type LockVerdict = "gone" | "live" | "unknown";

/** What {@link clearStaleLocks} needs to know of the machine it runs on. */
export interface Here {
  readonly hostname: string;
  /**
   * Whether a process of this machine exists that may be the one that took a lock at `takenAt`
   * (ISO 8601; without it, any process of that PID).
   */
  readonly alive: (pid: number, takenAt?: string) => boolean;
}

/**
 * Whether process `pid` of this machine runs. A zombie does not: it has exited and only waits
 * for its parent (or, once orphaned, init) to collect its status, and `kill(pid, 0)` still
 * finds it. A runner killed with its process tree leaves the Pulumi CLI orphaned; where init
 * reaps orphans late (seconds, in some containers) or never (a container whose first process
 * does not reap), that zombie would keep its lock "live" for good. Linux says so in
 * `/proc/<pid>/stat`; elsewhere the signal probe decides.
 *
 * With `takenAt` (the lock's timestamp), a process that is not a Pulumi CLI and started after
 * the lock was taken does not count either: the lock's owner is gone and its PID was given to a
 * newer process (PIDs wrap, at 32,768 on many machines), which would otherwise keep the lock
 * "live" for as long as it runs. Both must hold: a step of the wall clock alone (the start time
 * is read against the boot time, which follows the clock) cannot free a live CLI's lock, and a
 * newer Pulumi CLI on that PID keeps it (the safe side: kept, reported).
 *
 * @param procDir - where the proc file system is mounted (tests give a folder of their own).
 * @param takenAt - when the lock was taken (ISO 8601, as the Pulumi CLI writes it).
 */
export function processRuns(pid: number, procDir = "/proc", takenAt?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  let stat: string | undefined;
  try {
    stat = readFileSync(`${procDir}/${pid}/stat`, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No such entry while /proc is mounted: no such process.
    if (code === "ENOENT" && existsSync(`${procDir}/self/stat`)) return false;
  }
  if (stat !== undefined) {
    // "<pid> (<command, which may hold spaces and parentheses>) <state> ...": the state follows the last ")".
    const close = stat.lastIndexOf(")");
    const fields = stat
      .slice(close + 1)
      .trim()
      .split(/\s+/);
    const state = fields[0]?.[0];
    if (state === "Z" || state === "X" || state === "x") return false;
    const command = stat.slice(stat.indexOf("(") + 1, close);
    if (takenAt !== undefined && !command.startsWith(PULUMI_COMMAND_PREFIX)) {
      const started = startedAtMs(fields, procDir);
      const taken = Date.parse(takenAt);
      if (started !== undefined && Number.isFinite(taken) && started > taken + PID_REUSE_MARGIN_MS) return false;
    }
    return true;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * When a process started (ms since the epoch): its start in ticks since boot (field 22 of
 * `/proc/<pid>/stat`, the 20th after the command) plus the boot time of `/proc/stat`;
 * undefined when either cannot be read.
 */
function startedAtMs(fieldsAfterCommand: readonly string[], procDir: string): number | undefined {
  const ticks = Number(fieldsAfterCommand[19]);
  let bootS: number | undefined;
  try {
    const m = /^btime\s+(\d+)$/m.exec(readFileSync(`${procDir}/stat`, "utf8"));
    bootS = m ? Number(m[1]) : undefined;
  } catch {
    bootS = undefined;
  }
  if (bootS === undefined || !Number.isFinite(ticks)) return undefined;
  return bootS * 1000 + (ticks / PROC_TICKS_PER_SECOND) * 1000;
}

/** This machine. */
export const here: Here = {
  hostname: osHostname(),
  alive: (pid, takenAt) => processRuns(pid, "/proc", takenAt),
};

/** The locks of `project/stack`, with what each says of its owner. */
export async function stackLocks(bucket: StateBucket, project: string, stack: string): Promise<StackLock[]> {
  const keys = (await bucket.list(LOCKS_PREFIX)).filter((k) => {
    const parts = k.slice(LOCKS_PREFIX.length).split("/");
    // <org>/<project>/<stack>/<id>.json, or <project>/<stack>/<id>.json, or <stack>/<id>.json (older layouts)
    return parts.length >= 2 && parts.at(-2) === stack && (parts.length < 3 || parts.at(-3) === project);
  });
  const out: StackLock[] = [];
  for (const key of keys) {
    let c: Partial<Record<"pid" | "username" | "hostname" | "timestamp", unknown>> = {};
    try {
      c = JSON.parse((await bucket.read(key))?.toString("utf8") ?? "{}");
    } catch {
      // An unreadable lock names no owner: it is kept (see lockVerdict).
    }
    out.push({
      key,
      pid: typeof c.pid === "number" ? c.pid : undefined,
      username: typeof c.username === "string" ? c.username : undefined,
      hostname: typeof c.hostname === "string" ? c.hostname : undefined,
      timestamp: typeof c.timestamp === "string" ? c.timestamp : undefined,
    });
  }
  return out;
}

/**
 * Whether the lock's owner is gone: `gone` for a process of this machine that no longer runs
 * (see {@link processRuns}: a zombie, or a newer process on its PID) or any process of
 * `hostIsDown`; `live` for a process of this machine that runs; `unknown` for another
 * machine's (only its operator can tell).
 */
export function lockVerdict(lock: StackLock, at: Here = here, hostIsDown?: string): LockVerdict {
  if (lock.hostname === undefined || lock.pid === undefined) return "unknown";
  if (hostIsDown !== undefined && lock.hostname === hostIsDown && hostIsDown !== at.hostname) return "gone";
  if (lock.hostname !== at.hostname) return "unknown";
  return at.alive(lock.pid, lock.timestamp) ? "live" : "gone";
}

/** A lock as a line for the operator. */
export function describeLock(l: StackLock): string {
  return `${l.username ?? "?"}@${l.hostname ?? "?"} (pid ${l.pid ?? "?"}) since ${l.timestamp ?? "?"}`;
}

/**
 * Removes the locks of `project/stack` whose owner is gone (see {@link lockVerdict}); keeps
 * the others.
 */
export async function clearStaleLocks(
  bucket: StateBucket,
  project: string,
  stack: string,
  o: { readonly hostIsDown?: string | undefined; readonly here?: Here } = {},
): Promise<{ removed: StackLock[]; kept: { lock: StackLock; verdict: LockVerdict }[] }> {
  const removed: StackLock[] = [];
  const kept: { lock: StackLock; verdict: LockVerdict }[] = [];
  for (const lock of await stackLocks(bucket, project, stack)) {
    const verdict = lockVerdict(lock, o.here ?? here, o.hostIsDown);
    if (verdict === "gone") {
      await bucket.remove(lock.key);
      removed.push(lock);
    } else {
      kept.push({ lock, verdict });
    }
  }
  return { removed, kept };
}
