/**
 * Processes for the tests: the one spawn-and-collect helper every test runs a child with
 * ({@link collect}: stdout and stderr collected, settled with the exit code); and for the crash
 * tests, starting `provision up` detached, SIGKILL of a whole process tree at one instant
 * (provision, the Pulumi CLI and its provider plugins, which Pulumi starts in process groups of
 * their own), waiting on conditions (never fixed sleeps), and running the Pulumi CLI itself for
 * what `provision` does not offer (`refresh --clear-pending-creates`).
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./keystone.ts";
import type { RunResult, TestStack } from "./pulumi.ts";

/** A child being collected: see {@link spawnCollecting}. */
export interface Collecting {
  readonly child: ChildProcess;
  /** Settles when the child has closed: its exit code (-1 when a signal ended it) and output. */
  readonly result: Promise<RunResult>;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
}

/**
 * Starts `cmd args` (stdin ignored, stdout and stderr piped unless `opts.stdio` says otherwise)
 * and collects what it prints. `result` rejects only when the child cannot be started; a
 * failing child resolves with its exit code.
 */
export function spawnCollecting(cmd: string, args: readonly string[], opts: SpawnOptions = {}): Collecting {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  let stdout = "";
  let stderr = "";
  let both = "";
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stdout?.on("data", (c: string) => {
    stdout += c;
    both += c;
  });
  child.stderr?.on("data", (c: string) => {
    stderr += c;
    both += c;
  });
  const result = new Promise<RunResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
  return { child, result, output: () => both };
}

/** Runs `cmd args` to its end and resolves with its exit code, stdout and stderr (see {@link spawnCollecting}). */
export function collect(cmd: string, args: readonly string[], opts: SpawnOptions = {}): Promise<RunResult> {
  return spawnCollecting(cmd, args, opts).result;
}

/** Every live descendant of `root` (any process group). */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so cut at the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(d), ppid);
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent) {
      if (pp === p && !out.includes(c)) {
        out.push(c);
        walk(c);
      }
    }
  };
  walk(root);
  return out;
}

function signal(pids: readonly number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}

/**
 * SIGKILL for a whole process tree at one instant, as when the machine or the container dies:
 * everything is stopped first (so nothing can react or fork), then killed.
 */
export function killTree(root: number): number[] {
  let all = [root, ...descendants(root)];
  signal(all, "SIGSTOP");
  all = [...new Set([...all, ...descendants(root)])];
  signal(all, "SIGSTOP");
  signal(all, "SIGKILL");
  return all;
}

/** Whether a process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\S+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Waits until `ok()` holds (polled every 100 ms), or fails after `timeoutMs`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A detached `provision up` on a stack, to be killed; `output()` is what it printed so far. */
export function startDetachedUp(stack: TestStack): {
  child: ChildProcess;
  exited: Promise<number>;
  output(): string;
} {
  const run = spawnCollecting(
    "node",
    [join(REPO, "scripts/provision.ts"), "up", "--yes", "--stack", stack.name, "--config-file", stack.configFile],
    { cwd: REPO, env: stack.environment(), detached: true },
  );
  return { child: run.child, exited: run.result.then((r) => r.code), output: run.output };
}

/**
 * Runs the Pulumi CLI itself on the stack (`npm run pulumi -- ARGS` for an operator), for
 * what `provision` does not offer.
 */
export function pulumiCli(stack: TestStack, args: string[]): Promise<RunResult> {
  const full = [...args, "--stack", stack.name, "--config-file", stack.configFile, "--non-interactive"];
  return collect("pulumi", full, { cwd: REPO, env: stack.environment() });
}
