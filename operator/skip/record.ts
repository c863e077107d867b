/**
 * The skip record of a stack: what its last successful `up` saw, so that the next `up` can
 * tell without Pulumi's engine that it would change nothing (see check.ts).
 *
 * Where it lives: beside the state, in the same backend, so that every runner sharing the
 * state shares it too (operator/backend/bucket.ts), under the key
 * `.keystone-totp/skip/<project>/<stack>.json`: with the file backend the file of that name in
 * the backend's folder (`DIR/.keystone-totp/skip/keystone-totp/<stack>.json`), with PostgreSQL
 * a row of the state's table. Other backends keep no record: every `up` runs the engine there.
 *
 * A record holds hashes and times only, no secret and no user's data.
 */
import { openBucket, type StateBucket } from "../backend/bucket.ts";

/** The record's format; a record of another format is ignored (the stack runs). */
export const SKIP_RECORD_VERSION = 1;
const PROJECT = "keystone-totp";
const PREFIX = `.keystone-totp/skip/${PROJECT}/`;

/** What the last successful `up` of a stack saw. */
export interface SkipRecord {
  readonly version: number;
  readonly stack: string;
  /** The run's input fingerprint (fingerprint.ts). */
  readonly fingerprint: string;
  /** The backend's time of the stack's last update after that run (a later run of any kind changes it). */
  readonly lastUpdate: string;
  /** When the clock alone first gives a resource work (ISO 8601); absent: never. */
  readonly dueAt?: string | undefined;
  /** When the record was written (ISO 8601, the project's clock). */
  readonly recordedAt: string;
}

/** Where the skip records of one backend are kept. */
export interface SkipRecordStore {
  /** Where, for messages and docs (no password). */
  readonly location: string;
  read(stack: string): Promise<SkipRecord | undefined>;
  write(record: SkipRecord): Promise<void>;
  /** Removes the stack's record (before a run starts: a killed run must leave none). */
  clear(stack: string): Promise<void>;
  /** Releases the backend's connection, if any. */
  close(): Promise<void>;
}

/**
 * The record store of the backend `backendUrl` (default `PULUMI_BACKEND_URL`); undefined when
 * the backend keeps no records (then nothing is skipped).
 */
export function skipRecordStore(
  backendUrl: string | undefined = process.env.PULUMI_BACKEND_URL,
): SkipRecordStore | undefined {
  const bucket = openBucket(backendUrl);
  return bucket && bucketStore(bucket);
}

function keyOf(stack: string): string {
  return `${PREFIX}${encodeURIComponent(stack)}.json`;
}

function bucketStore(bucket: StateBucket): SkipRecordStore {
  return {
    location: `${bucket.location}: ${PREFIX}`,
    async read(stack) {
      const blob = await bucket.read(keyOf(stack));
      if (!blob) return undefined;
      try {
        const r = JSON.parse(blob.toString("utf8")) as SkipRecord;
        return r && r.version === SKIP_RECORD_VERSION && r.stack === stack ? r : undefined;
      } catch {
        // A record that does not parse is no record: the stack runs and writes a new one.
        return undefined;
      }
    },
    write: (record) => bucket.write(keyOf(record.stack), Buffer.from(`${JSON.stringify(record, null, 2)}\n`)),
    clear: (stack) => bucket.remove(keyOf(stack)),
    close: () => bucket.close(),
  };
}
