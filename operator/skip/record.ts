/**
 * The skip record of a stack: what its last successful `up` saw, so that the next `up` can
 * tell without Pulumi's engine that it would change nothing (see check.ts).
 *
 * Where it lives: beside the state, in the same backend, so that every runner sharing the
 * state shares it too. With the file backend (`PULUMI_BACKEND_URL=file://DIR`, the default
 * `.local/state`): `DIR/.keystone-totp/skip/<project>/<stack>.json`. Other backends keep no
 * record yet: every `up` runs the engine there, as before.
 *
 * A record holds hashes and times only, no secret and no user's data.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The record's format; a record of another format is ignored (the stack runs). */
export const SKIP_RECORD_VERSION = 1;
const PROJECT = "keystone-totp";

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
  /** Where, for messages and docs. */
  readonly location: string;
  read(stack: string): SkipRecord | undefined;
  write(record: SkipRecord): void;
  /** Removes the stack's record (before a run starts: a killed run must leave none). */
  clear(stack: string): void;
}

/**
 * The record store of the backend `backendUrl` (default `PULUMI_BACKEND_URL`); undefined when
 * the backend keeps no records (then nothing is skipped).
 */
export function skipRecordStore(
  backendUrl: string | undefined = process.env.PULUMI_BACKEND_URL,
): SkipRecordStore | undefined {
  const dir = fileBackendDir(backendUrl);
  return dir === undefined ? undefined : fileStore(join(dir, ".keystone-totp", "skip", PROJECT));
}

/** The folder of a `file://` backend URL; undefined for any other backend. */
export function fileBackendDir(url: string | undefined): string | undefined {
  if (!url?.startsWith("file://")) return undefined;
  const path = url.slice("file://".length).split("?")[0] ?? "";
  if (path === "~" || path.startsWith("~/")) return join(homedir(), path.slice(1));
  return path.startsWith("/") ? fileURLToPath(`file://${path}`) : path;
}

function fileStore(dir: string): SkipRecordStore {
  const file = (stack: string) => join(dir, `${encodeURIComponent(stack)}.json`);
  return {
    location: dir,
    read(stack) {
      let text: string;
      try {
        text = readFileSync(file(stack), "utf8");
      } catch {
        return undefined;
      }
      try {
        const r = JSON.parse(text) as SkipRecord;
        return r && r.version === SKIP_RECORD_VERSION && r.stack === stack ? r : undefined;
      } catch {
        return undefined;
      }
    },
    write(record) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Written whole or not at all: a torn record must not read as valid.
      const tmp = `${file(record.stack)}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, file(record.stack));
    },
    clear(stack) {
      rmSync(file(stack), { force: true });
    },
  };
}
