/**
 * One N in one layout, from its users' creation to their deletion: the floor, our `up`, no-op
 * `up` and `preview`, the optional diagnoses and the CLI loop, all against the same N users,
 * and the row they make.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { CLI_LOOP_SKIPPED, type CliLoop, measureCliLoop } from "./cli-loop.ts";
import { diagnoseCheckpoints, diagnoseParallel } from "./diagnose.ts";
import { measureFloor } from "./floor.ts";
import type { RawKeystone } from "./keystone.ts";
import { inLayout, type LayoutSpec } from "./layout.ts";
import type { LocalAuth } from "./local.ts";
import { log, since } from "./log.ts";
import type { Meta } from "./meta.ts";
import type { Options } from "./options.ts";
import { measureOurs } from "./ours.ts";
import type { CountingProxy } from "./proxy.ts";
import { buildRow, type Result } from "./row.ts";
import type { RunContext } from "./run.ts";
import type { SmtpSink } from "./smtp.ts";
import { Stack } from "./stack.ts";
import { type BenchUser, cleanupUsers, createUsers, DOMAIN, usersCsv } from "./users.ts";

/**
 * Creations expected per user on a first `up` (`created` lines in its output; see Progress in
 * run.ts). 2 dates from 0.1, which declared two resources per user; since 0.2 there is one, so
 * `up_progress.quartiles_s` holds the times at which 50 % and 100 % of the users were enrolled,
 * then two nulls. Kept as it is so that new rows read like the old ones (see bench/README.md).
 */
const OPS_PER_USER = 2;

/** What every measurement of one bench run shares. */
export interface Bench {
  readonly o: Options;
  readonly ks: RawKeystone;
  readonly local: LocalAuth;
  readonly smtp: SmtpSink;
  readonly proxy: CountingProxy;
  readonly meta: Meta;
}

/** Measures what needs the users, on the CPUs of `layout`; the stacks it makes are added to `stacks`. */
async function measureUsers(
  bench: Bench,
  users: readonly BenchUser[],
  setupS: number,
  layout: LayoutSpec,
  stacks: Stack[],
): Promise<Result> {
  const { o, ks, local, smtp, proxy } = bench;
  const n = users.length;
  const floor = await measureFloor(local.auth, users, o.floorSample, layout);

  const dir = mkdtempSync(join(os.tmpdir(), `kt-bench-${n}-csv-`));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, usersCsv(users));
  const newStack = async () => {
    const s = new Stack({
      n,
      csv,
      smtpUrl: smtp.url,
      proxyPort: proxy.port,
      osEnv: local.env,
      shards: o.shards,
      shardConcurrency: o.shardConcurrency,
      stateBackend: o.stateBackend,
      layout,
    });
    stacks.push(s);
    await s.init();
    return s;
  };
  const ctx: RunContext = { proxy, smtp, expectedOps: OPS_PER_USER * n };
  const ours = await measureOurs(await newStack(), n, o.parallel, floor, ctx);

  const par = ["--parallel", String(o.parallel)];
  const diag = o.diagnose ? await diagnoseCheckpoints(n, newStack, par, ctx) : undefined;
  const byParallel = await diagnoseParallel(n, newStack, o.diagnoseParallel, ctx);

  let cli: CliLoop = CLI_LOOP_SKIPPED;
  if (!o.skipCliLoop) {
    log(`N=${n}: openstack CLI loop on ${Math.min(o.cliSample, n)} users`);
    cli = await measureCliLoop(ks, users, o.cliSample, local.env, layout);
  }

  const row = buildRow({
    n,
    layout,
    parallel: o.parallel,
    shards: o.shards,
    shardConcurrency: o.shardConcurrency,
    setupS,
    floor,
    ...ours,
    diag,
    byParallel,
    cli,
    stateBackend: o.stateBackend ? "postgres" : "file",
    meta: bench.meta,
  });
  rmSync(dir, { recursive: true, force: true });
  return row;
}

/** Removes the stacks and the users of `n` (Keystone deletes their credentials), unless --keep. */
async function cleanUp(bench: Bench, n: number, stacks: readonly Stack[]): Promise<void> {
  if (bench.o.keep) {
    log(`N=${n}: kept users and stacks (${stacks.map((s) => `${s.name} in ${s.dir}`).join(", ")})`);
    return;
  }
  // A failed clean-up must not lose the row just measured: the next run removes what is left.
  try {
    for (const s of stacks) await s.remove();
    const t0 = process.hrtime.bigint();
    const gone = await cleanupUsers(bench.ks, n);
    log(`N=${n}: deleted ${gone} users (and their credentials) in ${since(t0).toFixed(1)} s`);
  } catch (e) {
    log(`N=${n}: clean-up failed (the next run removes the leftovers): ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Measures N users in one layout: creates them, measures, deletes them; returns the row. */
export async function measureN(bench: Bench, n: number, layout: LayoutSpec): Promise<Result> {
  log(`N=${n} (${layout.layout} layout): creating ${n} users in domain ${DOMAIN}`);
  const domainId = await bench.ks.ensureDomain(DOMAIN);
  await cleanupUsers(bench.ks, n);
  const t0 = process.hrtime.bigint();
  const users = await createUsers(bench.ks, domainId, n);
  const setupS = since(t0);
  log(`N=${n}: users created in ${setupS.toFixed(1)} s`);

  const stacks: Stack[] = [];
  try {
    // Pinned only while measuring: creating and deleting the users (untimed) is Keystone's work
    // alone, and on one core it took twice as long (at N = 10,000, about 40 minutes more).
    return await inLayout(layout, () => measureUsers(bench, users, setupS, layout, stacks));
  } finally {
    await cleanUp(bench, n, stacks);
  }
}
