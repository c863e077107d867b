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
 * this machine that no longer exists, or any process of a machine the operator names as down
 * (`hostIsDown`). A lock of a live process is never removed.
 */
import { existsSync, readFileSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import type { StateBucket } from "./bucket.ts";

const LOCKS_PREFIX = ".pulumi/locks/";

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
  /** Whether a process of this machine exists. */
  readonly alive: (pid: number) => boolean;
}

/**
 * Whether process `pid` of this machine runs. A zombie does not: it has exited and only waits
 * for its parent (or, once orphaned, init) to collect its status, and `kill(pid, 0)` still
 * finds it. A runner killed with its process tree leaves the Pulumi CLI orphaned; where init
 * reaps orphans late (seconds, in some containers) or never (a container whose first process
 * does not reap), that zombie would keep its lock "live" for good. Linux says so in
 * `/proc/<pid>/stat`; elsewhere the signal probe decides.
 */
export function processRuns(pid: number, procDir = "/proc"): boolean {
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
    const state = stat.slice(stat.lastIndexOf(")") + 1).trim()[0];
    return state !== "Z" && state !== "X" && state !== "x";
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** This machine. */
export const here: Here = {
  hostname: osHostname(),
  alive: (pid) => processRuns(pid),
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
 * or any process of `hostIsDown`; `live` for a process of this machine that runs; `unknown`
 * for another machine's (only its operator can tell).
 */
export function lockVerdict(lock: StackLock, at: Here = here, hostIsDown?: string): LockVerdict {
  if (lock.hostname === undefined || lock.pid === undefined) return "unknown";
  if (hostIsDown !== undefined && lock.hostname === hostIsDown && hostIsDown !== at.hostname) return "gone";
  if (lock.hostname !== at.hostname) return "unknown";
  return at.alive(lock.pid) ? "live" : "gone";
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
