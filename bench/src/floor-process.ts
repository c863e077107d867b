/**
 * The floor of the benchmark, run by bench/src/floor.ts as a process of its own so that the
 * split layout can put it on keystone-totp's core (`taskset`) while the bench's instruments stay
 * on Keystone's: the minimal REST work of one first enrollment, the user's MFA rules
 * (`PATCH /v3/users/{id}`, the body the provider sends) then the credential
 * (`POST /v3/credentials`), with a bare keep-alive client, `level` users in flight.
 *
 * Each level is probed on the first `probe` users; the best is then run on all of them. After
 * each pass the credentials are deleted and the users given back no options (not timed), so
 * that the program later finds them as they were.
 *
 * Then the safe floor, at its own best level (probed the same way): the five requests and one pause an enrollment that
 * cannot open a login or create a second credential needs, the least the provider can send
 * (docs/security.md): the options write, the settling pause (lib/keystone/users.ts, the same
 * rule), the write again (it drops a copy a read racing the first left in Keystone's cache),
 * its read back (`GET /v3/users/{id}`: Keystone may serve a stale cached copy to logins until a
 * read finds the new one), the user's TOTP credentials (`GET /v3/credentials?user_id&type=totp`:
 * a credential a lost answer or a crash left is found before a second is made), then the create.
 *
 * Reads one JSON request on stdin ({@link FloorRequest}). Writes one JSON result on stdout
 * ({@link FloorResult}); progress on stderr.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { MFA_SETTLE_MAX_MS, MFA_SETTLE_MIN_MS } from "../../lib/keystone/users.ts";
import { decidePosture, MARKER_VERSION, NO_OPTIONS } from "../../lib/mfa/posture.ts";
import { generateSecret } from "../../lib/totp/secret.ts";
import { pool, type RawAuth, RawKeystone } from "./keystone.ts";
import { round, since } from "./log.ts";
import { cpuDelta, keystoneCpuOf } from "./procs.ts";

/** What the parent sends. */
export interface FloorRequest {
  auth: RawAuth;
  userIds: string[];
  levels: number[];
  probe: number;
  keystoneState: string;
  /** Keystone's [auth] methods, as the program would probe them: they shape the rules. */
  methods: string[];
}

/** What the floor measured. */
export interface FloorResult {
  floor_s: number;
  floor_concurrency: number;
  floor_enrollments_per_s: number;
  floor_probe_enrollments_per_s: Record<string, number>;
  /** Keystone + PostgreSQL CPU during the full pass, seconds. */
  floor_keystone_cpu_s: number;
  /** This client's own CPU during the full pass, seconds. */
  floor_client_cpu_s: number;
  floor_cleanup_s: number;
  /** The safe floor's full pass (five requests and the settling pause per user), at `floor_concurrency`, seconds. */
  floor_safe_s: number;
  /** Users in flight in the safe floor's full pass: the best of its own probes. */
  floor_safe_concurrency: number;
  floor_safe_keystone_cpu_s: number;
  floor_safe_client_cpu_s: number;
}

// Not ./log.ts's log: the parent relays these lines into its own log, which adds the time.
const log = (m: string) => process.stderr.write(`[floor] ${m}\n`);

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString("utf8")) as FloorRequest;
  const ks = new RawKeystone(req.auth);
  await ks.login();
  const write = decidePosture(NO_OPTIONS, "staged", {
    methods: req.methods,
    allowTotpOnlyLogin: false,
    refuseApplicationCredentials: false,
    replaceOwnRules: false,
  }).write;
  if (!write) throw new Error("the default posture writes rules: the floor expects to PATCH them");
  const marker = { v: MARKER_VERSION, previous: NO_OPTIONS };
  const enroll = async (userId: string) => {
    await ks.patchUserMfa(userId, write, marker);
    return ks.createTotp(userId, generateSecret());
  };
  const enrollSafe = async (userId: string) => {
    const t0 = performance.now();
    await ks.patchUserMfa(userId, write, marker);
    await sleep(Math.min(MFA_SETTLE_MAX_MS, Math.max(MFA_SETTLE_MIN_MS, performance.now() - t0)));
    await ks.patchUserMfa(userId, write, marker);
    await ks.getUser(userId);
    const found = await ks.listTotp(userId);
    if (found.length > 0) throw new Error("the safe floor found a TOTP credential left by an earlier pass");
    return ks.createTotp(userId, generateSecret());
  };
  let cleanupS = 0;
  const undo = async (userIds: readonly string[], credentialIds: readonly string[]) => {
    const t0 = process.hrtime.bigint();
    await pool(credentialIds, 8, (id) => ks.deleteCredential(id));
    await pool(userIds, 8, (id) => ks.patchUserMfa(id, NO_OPTIONS, null));
    cleanupS += since(t0);
  };
  const pass = async (userIds: readonly string[], level: number, one = enroll) => {
    const ks0 = keystoneCpuOf(req.keystoneState);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const ids = await pool(userIds, level, one);
    const s = since(t0);
    const c = process.cpuUsage(c0);
    const ksCpu = cpuDelta(ks0, keystoneCpuOf(req.keystoneState));
    await undo(userIds, ids);
    return { s, keystoneCpuS: ksCpu, clientCpuS: (c.user + c.system) / 1e6 };
  };

  const probe = req.userIds.slice(0, Math.min(req.probe, req.userIds.length));
  /** The level of `levels` at which `one` enrolls the probe users fastest, and each level's rate. */
  const bestLevel = async (one: typeof enroll, what: string) => {
    const rates: Record<string, number> = {};
    let best = { level: req.levels[0] ?? 1, s: Number.POSITIVE_INFINITY };
    for (const level of req.levels) {
      const r = await pass(probe, level, one);
      rates[String(level)] = round(probe.length / r.s, 1);
      log(`probe: ${probe.length} ${what} at ${level} in flight: ${r.s.toFixed(2)} s`);
      if (r.s < best.s) best = { level, s: r.s };
    }
    return { level: best.level, rates };
  };
  const best = await bestLevel(enroll, "enrollments");
  const rates = best.rates;
  const full = await pass(req.userIds, best.level);
  log(`${req.userIds.length} enrollments at ${best.level} in flight: ${full.s.toFixed(2)} s`);
  // Its own best level: the settling pause is time in flight without work, which more users in
  // flight hide (as the provider's parallel steps do).
  const bestSafe = await bestLevel(enrollSafe, "safe enrollments");
  const safe = await pass(req.userIds, bestSafe.level, enrollSafe);
  log(
    `${req.userIds.length} safe enrollments (5 requests, 1 pause) at ${bestSafe.level} in flight: ${safe.s.toFixed(2)} s`,
  );
  ks.close();
  const result: FloorResult = {
    floor_s: round(full.s),
    floor_concurrency: best.level,
    floor_enrollments_per_s: round(req.userIds.length / full.s, 1),
    floor_probe_enrollments_per_s: rates,
    floor_keystone_cpu_s: round(full.keystoneCpuS),
    floor_client_cpu_s: round(full.clientCpuS),
    floor_cleanup_s: round(cleanupS),
    floor_safe_s: round(safe.s),
    floor_safe_concurrency: bestSafe.level,
    floor_safe_keystone_cpu_s: round(safe.keystoneCpuS),
    floor_safe_client_cpu_s: round(safe.clientCpuS),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
