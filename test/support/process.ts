/**
 * Processes for the crash tests: starting `provision up` detached, SIGKILL of a whole process
 * tree at one instant (provision, the Pulumi CLI and its provider plugins, which Pulumi starts
 * in process groups of their own), waiting on conditions (never fixed sleeps), and running the
 * Pulumi CLI itself for what `provision` does not offer (`refresh --clear-pending-creates`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./keystone.ts";
import type { RunResult, TestStack } from "./pulumi.ts";

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
  exited: Promise<number | null>;
  output(): string;
} {
  const child = spawn(
    "node",
    [join(REPO, "scripts/provision.ts"), "up", "--yes", "--stack", stack.name, "--config-file", stack.configFile],
    { cwd: REPO, env: stack.environment(), stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString("utf8");
  });
  child.stderr?.on("data", (c: Buffer) => {
    out += c.toString("utf8");
  });
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return { child, exited, output: () => out };
}

/**
 * Runs the Pulumi CLI itself on the stack (`npm run pulumi -- ARGS` for an operator), for
 * what `provision` does not offer.
 */
export function pulumiCli(stack: TestStack, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const full = [...args, "--stack", stack.name, "--config-file", stack.configFile, "--non-interactive"];
    const child = spawn("pulumi", full, { cwd: REPO, env: stack.environment(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString("utf8");
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
