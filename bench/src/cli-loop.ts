/**
 * The operator's alternative to keystone-totp, timed in the same run: an `openstack credential
 * create --type totp` shell loop over a sample of the users, one process per user, as an
 * operator would write it. Its time per user is extrapolated to N (a full loop over 10,000 users
 * would take hours and measure nothing more).
 */
import { generateSecret } from "../../lib/totp/secret.ts";
import { runChild } from "./child.ts";
import { pool, type RawKeystone } from "./keystone.ts";
import { type LayoutSpec, onOurCore } from "./layout.ts";
import { round, since } from "./log.ts";
import { commandOutput } from "./meta.ts";
import type { BenchUser } from "./users.ts";

/** Credentials deleted at once after the loop (untimed). */
const CLEANUP_CONCURRENCY = 8;
/** Characters of a failed command's stderr kept in the error. */
const ERROR_TAIL = 500;

/** The loop's time per user, over how many users; `note` says why it was not measured. */
export interface CliLoop {
  s_per_user: number | null;
  sample: number;
  note: string | null;
}

/** What a run without the loop (--skip-cli-loop) records. */
export const CLI_LOOP_SKIPPED: CliLoop = { s_per_user: null, sample: 0, note: "skipped" };

/** One `openstack credential create` for `userId` (on our core in the split layout); the credential's ID. */
async function createWithCli(userId: string, env: NodeJS.ProcessEnv, layout: LayoutSpec): Promise<string> {
  const argv = onOurCore(layout, [
    "openstack",
    ...["credential", "create", "--type", "totp", userId, generateSecret(), "-f", "value", "-c", "id"],
  ]);
  const r = await runChild(argv, { env });
  if (r.code !== 0) throw new Error(`openstack credential create exited ${r.code}: ${r.stderr.slice(-ERROR_TAIL)}`);
  return r.stdout.trim();
}

/** Times the loop over the first `sample` users, then deletes what it created (untimed). */
export async function measureCliLoop(
  ks: RawKeystone,
  users: readonly BenchUser[],
  sample: number,
  osEnv: Record<string, string>,
  layout: LayoutSpec,
): Promise<CliLoop> {
  if (commandOutput("openstack", ["--version"]) === null) {
    return { s_per_user: null, sample: 0, note: "openstack CLI not found: apt-get install python3-openstackclient" };
  }
  const env = { ...process.env, ...osEnv };
  const picked = users.slice(0, Math.min(sample, users.length));
  const ids: string[] = [];
  const t0 = process.hrtime.bigint();
  // One after the other, as a shell loop runs them.
  for (const u of picked) ids.push(await createWithCli(u.id, env, layout));
  const s = since(t0);
  await pool(ids, CLEANUP_CONCURRENCY, (id) => ks.deleteCredential(id));
  return { s_per_user: round(s / picked.length, 3), sample: picked.length, note: null };
}
