/**
 * Which locks `unlock` removes, on a file bucket laid out as the Pulumi CLI lays out its locks:
 * only those whose owner is gone; never a live process's, never another machine's unless named.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileBackendDir, openBucket, redactedUrl, type StateBucket } from "../../../../operator/backend/bucket.ts";
import { clearStaleLocks, type Here, lockVerdict, stackLocks } from "../../../../operator/backend/locks.ts";

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
