/**
 * `npm run bench`: how long enrolling N users takes, against the local real Keystone and a
 * local SMTP sink, compared in the same run with the floor (the raw requests of an enrollment
 * at the best concurrency) and with the operator's alternative (an `openstack credential create`
 * loop). A benchmark, not a test: it asserts nothing, it measures and reports.
 *
 * Per N (and layout) it creates N users `bench-<N>-<i>` in the domain `keystone-totp-bench`, then:
 *   1. floor     the user's MFA rules and a raw POST /v3/credentials for all N users at the
 *                best of 2, 4, 8 and 16 in flight (each probed on 50 users), undone after
 *                (src/floor.ts);
 *   2. ours      `node scripts/provision.ts up` on an empty stack (temp file backend) with the
 *                users CSV, mail over SMTP to the sink, Keystone behind a counting proxy; then a
 *                no-op `up --expect-no-changes`, then `preview`; `pulumi stack export` for the
 *                state size; /proc polling and an exit hook for memory and CPU (src/ours.ts);
 *   3. CLI loop  `openstack credential create --type totp` for a sample of users, extrapolated
 *                (src/cli-loop.ts);
 * and deletes the users (Keystone deletes their credentials with them) and the stacks.
 *
 * Writes bench/results.json (one row per N, stacks and layout, merged with those not measured
 * again) and bench/time-per-user.svg, and prints a table. bench/README.md has the figures.
 *
 * With --shards K the `up`, no-op `up` and `preview` go through `scripts/shards.ts` on K stacks
 * (the documented split of a large fleet); every metric is then the sum over the K stacks,
 * peak memory the largest of any one process.
 *
 * Usage: npm run bench -- [--n 100,1000,5000] [--shards K] [--layout both] [--skip-cli-loop] [--keep] [--help]
 */
import { RawKeystone } from "./src/keystone.ts";
import type { LayoutSpec } from "./src/layout.ts";
import { loadAuth } from "./src/local.ts";
import { log } from "./src/log.ts";
import { type Bench, measureN } from "./src/measure.ts";
import { machine, versions } from "./src/meta.ts";
import { parseArgs } from "./src/options.ts";
import { startCountingProxy } from "./src/proxy.ts";
import { printReport } from "./src/report.ts";
import { writeOutputs } from "./src/results.ts";
import type { Result } from "./src/row.ts";
import { startSmtpSink } from "./src/smtp.ts";
import { cleanupStaleFiles, cleanupUsers } from "./src/users.ts";

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (o.report) {
    printReport(writeOutputs([]));
    return 0;
  }
  const local = loadAuth();
  const meta = { machine: machine(), versions: versions() };
  log(`machine: ${JSON.stringify(meta.machine)}`);
  log(`versions: ${JSON.stringify(meta.versions)}`);
  const ks = new RawKeystone(local.auth);
  await ks.login();
  if (!o.keep) {
    const stale = await cleanupUsers(ks);
    cleanupStaleFiles();
    if (stale > 0) log(`removed ${stale} users left by an earlier run`);
  }
  const url = new URL(local.auth.authUrl);
  const proxy = await startCountingProxy(url.hostname.replace(/^\[|\]$/g, ""), Number(url.port || 80));
  const smtp = await startSmtpSink();
  const bench: Bench = { o, ks, local, smtp, proxy, meta };
  const results: Result[] = [];
  try {
    for (const n of o.ns) {
      for (const layout of o.layouts) {
        const spec: LayoutSpec = { layout, cores: o.cores, cpuProf: o.cpuProf };
        results.push(await measureN(bench, n, spec));
        // Each row is written as soon as it is measured: a later N that fails keeps the earlier.
        writeOutputs(results);
      }
    }
  } finally {
    await proxy.close();
    await smtp.close();
    ks.close();
  }
  printReport(writeOutputs(results));
  return 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  log(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 1;
}
