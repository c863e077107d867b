/**
 * Which locks `unlock` removes, on a file bucket laid out as the Pulumi CLI lays out its locks:
 * only those whose owner is gone; never a live process's, never another machine's unless named.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileBackendDir, openBucket, redactedUrl, type StateBucket } from "../../../../operator/backend/bucket.ts";
import {
  clearStaleLocks,
  type Here,
  lockVerdict,
  processRuns,
  stackLocks,
} from "../../../../operator/backend/locks.ts";

const here: Here = { hostname: "runner-1", alive: (pid) => pid === 100 };
const lockKey = (stack: string, id: string) => `.pulumi/locks/organization/keystone-totp/${stack}/${id}.json`;
const content = (pid: number, hostname: string) =>
  Buffer.from(JSON.stringify({ pid, username: "ops", hostname, timestamp: "2026-12-06T10:00:00Z" }));

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function bucket(): StateBucket {
  dir = mkdtempSync(join(tmpdir(), "kt-bucket-"));
  return openBucket(`file://${dir}`) as StateBucket;
}

describe("lockVerdict", () => {
  it("gone only for a dead process of this machine or of the machine named down", () => {
    const l = (pid: number, hostname: string) => ({ key: "k", pid, hostname, username: "ops", timestamp: "t" });
    expect(lockVerdict(l(100, "runner-1"), here)).toBe("live");
    expect(lockVerdict(l(200, "runner-1"), here)).toBe("gone");
    expect(lockVerdict(l(200, "runner-2"), here)).toBe("unknown");
    expect(lockVerdict(l(200, "runner-2"), here, "runner-2")).toBe("gone");
    // Naming this machine "down" changes nothing: its processes are checked.
    expect(lockVerdict(l(100, "runner-1"), here, "runner-1")).toBe("live");
    expect(
      lockVerdict({ key: "k", pid: undefined, hostname: undefined, username: undefined, timestamp: undefined }, here),
    ).toBe("unknown");
  });
});

describe("clearStaleLocks on a file bucket", () => {
  it("removes the dead process's lock of this stack only, keeps the live one and other stacks'", async () => {
    const b = bucket();
    await b.write(lockKey("prod", "a"), content(200, "runner-1"));
    await b.write(lockKey("prod", "b"), content(100, "runner-1"));
    await b.write(lockKey("prod", "c"), content(300, "runner-2"));
    await b.write(lockKey("prod-2", "d"), content(200, "runner-1"));
    expect((await stackLocks(b, "keystone-totp", "prod")).map((l) => l.key)).toEqual([
      lockKey("prod", "a"),
      lockKey("prod", "b"),
      lockKey("prod", "c"),
    ]);
    const r = await clearStaleLocks(b, "keystone-totp", "prod", { here });
    expect(r.removed.map((l) => l.key)).toEqual([lockKey("prod", "a")]);
    expect(r.kept.map((k) => k.verdict)).toEqual(["live", "unknown"]);
    // Sorted as the keys sort ('-' before '/').
    expect(await b.list(".pulumi/locks/")).toEqual([
      lockKey("prod-2", "d"),
      lockKey("prod", "b"),
      lockKey("prod", "c"),
    ]);
    const named = await clearStaleLocks(b, "keystone-totp", "prod", { here, hostIsDown: "runner-2" });
    expect(named.removed.map((l) => l.key)).toEqual([lockKey("prod", "c")]);
  });
});

describe("bucket URLs", () => {
  it("reads file:// paths and hides a PostgreSQL password", () => {
    expect(fileBackendDir("file:///var/lib/kt?x=1")).toBe("/var/lib/kt");
    expect(fileBackendDir("file://~/state")).toMatch(/\/state$/);
    expect(redactedUrl("postgres://kt:s3cret-pw@db:5432/kt?sslmode=disable")).not.toContain("s3cret-pw");
    expect(openBucket("https://api.pulumi.com")).toBeUndefined();
  });
});

describe("processRuns: whether a lock's owner on this machine still runs", () => {
  it("a running process runs; one that exited and was collected does not", () => {
    expect(processRuns(process.pid)).toBe(true);
    const done = spawnSync("true");
    expect(done.status).toBe(0);
    expect(processRuns(done.pid ?? 0)).toBe(false);
    expect(processRuns(0)).toBe(false);
    expect(processRuns(-1)).toBe(false);
  });

  it("a zombie (exited, its status not yet collected: a killed runner's orphaned CLI) does not run", async () => {
    // bash starts `sleep 0` and becomes `sleep 30`, which never collects its child: a real zombie.
    const parent = spawn("bash", ["-c", "sleep 0 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const pid = await new Promise<number>((resolve) => parent.stdout.once("data", (d) => resolve(Number(String(d)))));
      const t0 = Date.now();
      const state = () => readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0];
      while (state() !== "Z" && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
      expect(state()).toBe("Z");
      // The signal probe alone would call it alive, and keep its lock for good.
      expect(() => process.kill(pid, 0)).not.toThrow();
      expect(processRuns(pid)).toBe(false);
    } finally {
      parent.kill("SIGKILL");
    }
  });

  it("a PID now held by a newer process that is not a Pulumi CLI does not run for the lock; a Pulumi CLI does", () => {
    // This process started before now: to a lock taken an hour before it started, it is a newer
    // process on the owner's PID (the owner died and the PID wrapped round).
    const startedMs = Date.now() - process.uptime() * 1000;
    const before = new Date(startedMs - 3_600_000).toISOString();
    expect(processRuns(process.pid, "/proc", before)).toBe(false);
    // A lock taken after it started (as the owner takes its own lock): it may be the owner.
    expect(processRuns(process.pid, "/proc", new Date().toISOString())).toBe(true);
    // No timestamp, or one that cannot be read: kept as before.
    expect(processRuns(process.pid, "/proc")).toBe(true);
    expect(processRuns(process.pid, "/proc", "yesterday")).toBe(true);
    // Through lockVerdict, as unlock asks.
    const lock = (timestamp: string) => ({ key: "k", pid: process.pid, hostname: "h", username: "ops", timestamp });
    const me: Here = { hostname: "h", alive: (pid, takenAt) => processRuns(pid, "/proc", takenAt) };
    expect(lockVerdict(lock(before), me)).toBe("gone");
    expect(lockVerdict(lock(new Date().toISOString()), me)).toBe("live");
  });

  it("reads a process's start against the boot time; a Pulumi CLI on the PID keeps the lock", () => {
    const proc = mkdtempSync(join(tmpdir(), "kt-proc-"));
    try {
      mkdirSync(join(proc, "self"));
      writeFileSync(join(proc, "self", "stat"), "1 (node) R 0\n");
      // Booted 2026-12-06T00:00:00Z; a start of 3,600,000 ticks is 10:00:00.
      writeFileSync(
        join(proc, "stat"),
        `cpu  1 2 3\nbtime ${Date.parse("2026-12-06T00:00:00Z") / 1000}\nprocesses 9\n`,
      );
      const stat = (pid: number, command: string) =>
        `${pid} (${command}) S ${Array.from({ length: 18 }, () => "0").join(" ")} 3600000 0 0\n`;
      for (const [pid, command] of [
        [51, "bash"],
        [52, "pulumi"],
        [53, "a (b) c"],
      ] as const) {
        mkdirSync(join(proc, String(pid)));
        writeFileSync(join(proc, String(pid), "stat"), stat(pid, command));
      }
      expect(processRuns(51, proc, "2026-12-06T09:00:00Z")).toBe(false);
      expect(processRuns(53, proc, "2026-12-06T09:00:00.123456789Z")).toBe(false);
      // Within the margin of a whole-second boot time, or started before the lock: may be the owner.
      expect(processRuns(51, proc, "2026-12-06T09:59:58Z")).toBe(true);
      expect(processRuns(51, proc, "2026-12-06T10:30:00Z")).toBe(true);
      // A newer Pulumi CLI may be the owner as far as /proc tells (a clock step): kept.
      expect(processRuns(52, proc, "2026-12-06T09:00:00Z")).toBe(true);
      // No boot time to read against: kept.
      rmSync(join(proc, "stat"));
      expect(processRuns(51, proc, "2026-12-06T09:00:00Z")).toBe(true);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });

  it("reads the state after the command's last parenthesis; without /proc, asks the process", () => {
    const proc = mkdtempSync(join(tmpdir(), "kt-proc-"));
    try {
      mkdirSync(join(proc, "self"));
      writeFileSync(join(proc, "self", "stat"), "1 (node) R 0\n");
      for (const [pid, line] of [
        [41, "41 (odd) Z name) R 1 41 41\n"],
        [42, "42 (odd) R name) Z 1 42 42\n"],
      ] as const) {
        mkdirSync(join(proc, String(pid)));
        writeFileSync(join(proc, String(pid), "stat"), line);
      }
      expect(processRuns(41, proc)).toBe(true);
      expect(processRuns(42, proc)).toBe(false);
      // Mounted /proc without the entry: gone.
      expect(processRuns(43, proc)).toBe(false);
      // No /proc at all: the signal probe (this process exists).
      expect(processRuns(process.pid, join(proc, "missing"))).toBe(true);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });
});
