import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import type { KeystoneUser } from "../../../../lib/keystone/client.ts";
import { parseUsersCsv, userKey } from "../../../../lib/users/csv.ts";
import { planFleet } from "../../../../operator/fleet/fleet.ts";
import { resolveFleetSettings } from "../../../../operator/fleet/settings.ts";
import { formatShard, inShard, jumpHash, parseShard, shardOf } from "../../../../operator/fleet/shard.ts";

const keys = (n: number, domain = "Default") => Array.from({ length: n }, (_, i) => userKey(domain, `user-${i}`));

describe("shardOf", () => {
  it("puts a user in the same bucket on every run and machine (pinned values)", () => {
    // Pinned: a change here re-homes users between stacks, i.e. issues them new secrets.
    expect([shardOf("alice@Default", 4), shardOf("bob@Default", 4), shardOf("a%40b.com@eng", 4)]).toEqual(PINNED_4);
    expect(keys(12).map((k) => shardOf(k, 3))).toEqual(PINNED_12_OF_3);
  });

  it("agrees with the published jump hash (reference vectors of other implementations)", () => {
    expect([jumpHash(1n, 1), jumpHash(42n, 57), jumpHash(0xdead10ccn, 666), jumpHash(256n, 1024)]).toEqual([
      0, 43, 361, 520,
    ]);
  });

  it("does not move a user when only the case or Unicode form of their name changes", () => {
    expect(shardOf("Alice@default", 7)).toBe(shardOf("alice@Default", 7));
    expect(shardOf(userKey("Default", "Zoe\u0308"), 7)).toBe(shardOf(userKey("Default", "Zo\u00eb"), 7));
  });

  it("puts every user in exactly one shard", () => {
    for (const k of [1, 2, 3, 5, 16]) {
      for (const key of keys(500)) {
        const owners = Array.from({ length: k }, (_, index) => index).filter((index) =>
          inShard(key, { index, count: k }),
        );
        expect(owners, `${key} of ${k}`).toHaveLength(1);
      }
    }
  });

  it("spreads 10,000 users evenly (each of 8 shards within 5 % of 1,250)", () => {
    const counts = new Array<number>(8).fill(0);
    for (const key of keys(10_000)) counts[shardOf(key, 8)] = (counts[shardOf(key, 8)] ?? 0) + 1;
    for (const c of counts) expect(Math.abs(c - 1250)).toBeLessThan(1250 * 0.05);
  });

  it("growing from K to K+1 stacks moves about 1/(K+1) of the users, and only into the new stack", () => {
    const all = keys(10_000);
    const moved = all.filter((key) => shardOf(key, 4) !== shardOf(key, 5));
    expect(moved.length / all.length).toBeGreaterThan(0.17);
    expect(moved.length / all.length).toBeLessThan(0.23);
    for (const key of moved) expect(shardOf(key, 5)).toBe(4);
    // Shrinking is the reverse: only the users of the removed stack move.
    for (const key of all) if (shardOf(key, 5) !== 4) expect(shardOf(key, 4)).toBe(shardOf(key, 5));
  });
});

describe("parseShard", () => {
  it("reads I/K and round-trips", () => {
    expect(parseShard("2/4")).toEqual({ index: 2, count: 4 });
    expect(parseShard(" 0 / 1 ")).toEqual({ index: 0, count: 1 });
    expect(formatShard({ index: 3, count: 8 })).toBe("3/8");
    expect(parseShard(undefined)).toBeUndefined();
    expect(parseShard("")).toBeUndefined();
  });

  it("refuses what is not a shard of a fleet, naming the setting", () => {
    for (const bad of ["4/4", "1/0", "-1/4", "1", "1/4/2", "a/b", "1.5/4", "0/2000"]) {
      expect(() => parseShard(bad), bad).toThrow(ConfigError);
      expect(() => parseShard(bad), bad).toThrow(/keystone-totp:shard must be I\/K/);
    }
  });
});

describe("a sharded stack's fleet", () => {
  const user = (id: string, name: string): KeystoneUser => ({
    id,
    name,
    domainId: "default",
    email: undefined,
    enabled: true,
    options: {},
  });
  const csv = `username,email,domain\n${Array.from({ length: 30 }, (_, i) => `u${i},u${i}@example.com,${i % 2 ? "eng" : "Default"}`).join("\n")}\n`;
  const resolved = parseUsersCsv(csv, "t.csv").map((row, i) => ({ row, user: user(`id${i}`, row.username) }));

  it("declares each CSV user in exactly one of the stacks, and all of them together", () => {
    const names = [0, 1, 2].flatMap((i) =>
      planFleet(
        resolved,
        resolveFleetSettings((k) => (k === "shard" ? `${i}/3` : undefined), "/p"),
      ).map((m) => m.name),
    );
    expect(names.sort()).toEqual(resolved.map((r) => r.row.key).sort());
    expect(new Set(names).size).toBe(30);
  });

  it("declares every user when no shard is set, and refuses a malformed setting", () => {
    expect(
      planFleet(
        resolved,
        resolveFleetSettings(() => undefined, "/p"),
      ),
    ).toHaveLength(30);
    expect(() => resolveFleetSettings((k) => (k === "shard" ? "3/3" : undefined), "/p")).toThrow(/shard/);
  });
});

const PINNED_4 = [1, 2, 1];
const PINNED_12_OF_3 = [0, 1, 2, 1, 0, 0, 2, 2, 1, 0, 0, 2];
