/**
 * The operator's entry point for clearing the lock a killed run left on a stack, safely: a
 * lock is removed only when its owner is gone (see operator/backend/locks.ts); a live run's
 * lock is never removed, unlike `pulumi cancel`.
 *
 * Usage: node scripts/unlock.ts --stack NAME [--host-is-down HOST]   (npm run unlock -- ...)
 */
import { ConfigError, EXIT } from "../lib/errors.ts";
import { openBucket, redactedUrl } from "../operator/backend/bucket.ts";
import { clearStaleLocks, describeLock } from "../operator/backend/locks.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { DEFAULT_STACK } from "../operator/commands/options.ts";

const PROJECT = "keystone-totp";

export const HELP = `usage: npm run unlock -- [--stack NAME] [--host-is-down HOST]

Removes the lock a killed run left on a stack of a file:// or postgres:// state backend
(PULUMI_BACKEND_URL), so that the next run is not refused with "the stack is currently locked".

A lock is removed only when the Pulumi process that took it is gone:
  - a process of this machine that no longer runs: removed;
  - a process of this machine that still runs: kept (a run is in progress: wait for it);
  - a process of another machine: kept, unless you name that machine with --host-is-down
    after making sure no run of it is left (it is down, or its runner was stopped).
Unlike 'pulumi cancel', this never removes the lock of a live run. After removing one, run
'npm run provision -- refresh --stack NAME --clear-pending-creates --yes' (docs/faults.md,
"After a killed run").

options:
  --stack NAME          stack (default: ${DEFAULT_STACK})
  --host-is-down HOST   treat the locks taken on HOST as abandoned (that machine runs nothing)
  --help                this text

exit codes: 0 no lock left, 1 a lock was kept, 2 no such backend, 64 usage (README, Exit codes)
`;

async function main(argv: readonly string[]): Promise<number> {
  const { values: v } = parseCommandLine(
    { options: { stack: { type: "string", short: "s" }, "host-is-down": { type: "string" } } },
    argv,
  );
  const stack = v.stack ?? DEFAULT_STACK;
  const url = process.env.PULUMI_BACKEND_URL;
  const bucket = openBucket(url);
  if (!bucket) {
    throw new ConfigError(
      `the state backend ${url ? redactedUrl(url) : "(PULUMI_BACKEND_URL not set)"} is not a file:// or postgres:// ` +
        "backend: its locks are not kept by keystone-totp's rules (Pulumi Cloud clears them itself)",
    );
  }
  try {
    const r = await clearStaleLocks(bucket, PROJECT, stack, { hostIsDown: v["host-is-down"] });
    for (const l of r.removed)
      process.stdout.write(`unlock: removed the lock of ${describeLock(l)}: that process is gone\n`);
    for (const { lock, verdict } of r.kept) {
      const why =
        verdict === "live"
          ? "that process still runs on this machine: a run is in progress; wait for it to end"
          : `taken on another machine: if no run is left there, run again with --host-is-down ${lock.hostname ?? "HOST"}`;
      process.stdout.write(`unlock: kept the lock of ${describeLock(lock)}: ${why}\n`);
    }
    if (r.removed.length === 0 && r.kept.length === 0) process.stdout.write(`unlock: stack ${stack} has no lock\n`);
    return r.kept.length > 0 ? EXIT.failed : EXIT.ok;
  } finally {
    await bucket.close();
  }
}

if (import.meta.main) await runCommand({ name: "unlock", help: HELP }, main);
