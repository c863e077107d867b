/**
 * Splitting one users CSV across K stacks: stack I of K manages exactly the users whose key
 * hashes to bucket I. Plain functions, no I/O: the program filters its fleet with them and
 * `scripts/shards.ts` uses them to plan a change of K.
 *
 * The bucket is Lamping and Veach's jump consistent hash of the first 64 bits of SHA-256 of
 * the user's key, case-folded. Why these choices:
 * - SHA-256 of the key, not of the row: a user's bucket must not depend on the row order, the
 *   address or the display name, only on who the user is.
 * - case-folded: the CSV treats names that differ only in case as the same user, so a change
 *   of case in the CSV must not move the user to another stack.
 * - jump hash, not `hash mod K`: a user whose bucket changes is deleted by one stack and
 *   created by another, i.e. gets a new secret and a new enrollment message. Going from K to
 *   K' > K moves only the users that land in the new buckets K..K'-1, about (K'-K)/K' of the
 *   fleet (`mod K` would move nearly everyone), and never moves a user between old buckets,
 *   which is what lets `scripts/shards.ts --reshard` order the runs safely.
 *
 * @see https://arxiv.org/abs/1406.2294 (A Fast, Minimal Memory, Consistent Hash Algorithm)
 */
import { createHash } from "node:crypto";
import { ConfigError } from "../../lib/errors.ts";

/** Most shards accepted: far beyond any fleet Keystone can hold, small enough to catch typos. */
export const MAX_SHARDS = 1024;

/** One stack's share of the fleet: bucket `index` of `count`. */
export interface Shard {
  /** 0-based bucket this stack manages, below `count`. */
  readonly index: number;
  /** Number of buckets (stacks) the fleet is split into. */
  readonly count: number;
}

const SHARD_SETTING = /^\s*(\d{1,4})\s*\/\s*(\d{1,4})\s*$/;
const MASK_64 = (1n << 64n) - 1n;
const JUMP_MULTIPLIER = 2862933555777941757n;

/**
 * Parses the stack setting `keystone-totp:shard`, `I/K` with 0 <= I < K.
 *
 * @returns undefined when the setting is absent or empty (the stack manages every user).
 * @throws {ConfigError} for anything else than `I/K` in range.
 */
export function parseShard(value: string | undefined): Shard | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const m = SHARD_SETTING.exec(value);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || !(count >= 1 && count <= MAX_SHARDS) || !(index >= 0 && index < count)) {
    throw new ConfigError(
      `keystone-totp:shard must be I/K with 0 <= I < K <= ${MAX_SHARDS} (e.g. 0/4 for the first of 4 stacks), not '${value}'`,
    );
  }
  return { index, count };
}

/** The setting's text for a shard, as {@link parseShard} reads it. */
export function formatShard(s: Shard): string {
  return `${s.index}/${s.count}`;
}

/**
 * The bucket, in 0..count-1, of a user key (`username@domain`, as `userKey` in
 * lib/users/csv.ts makes it). The same key always gives the same bucket, on any machine.
 */
export function shardOf(userKey: string, count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`shard count must be a whole number >= 1: ${count}`);
  const digest = createHash("sha256").update(userKey.normalize("NFC").toLowerCase(), "utf8").digest();
  return jumpHash(digest.readBigUInt64BE(0), count);
}

/**
 * Lamping and Veach's jump consistent hash of a 64-bit key into `count` buckets, exactly as
 * published (their C++ with 64-bit wrap-around), so that any implementation agrees with it.
 */
export function jumpHash(key64: bigint, count: number): number {
  let key = key64 & MASK_64;
  let b = -1;
  let j = 0;
  while (j < count) {
    b = j;
    key = (key * JUMP_MULTIPLIER + 1n) & MASK_64;
    j = Math.floor((b + 1) * (2 ** 31 / (Number(key >> 33n) + 1)));
  }
  return b;
}

/** Whether the stack with this shard setting manages the user; every user when unsharded. */
export function inShard(userKey: string, shard: Shard | undefined): boolean {
  return shard === undefined || shardOf(userKey, shard.count) === shard.index;
}
