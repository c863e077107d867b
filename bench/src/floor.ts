/**
 * The floor of a measurement: the least REST work the same enrollments need (floor-process.ts,
 * run as a process of its own), optionally measured on a sample of the users and scaled to N.
 */
import { join } from "node:path";
import { runChild } from "./child.ts";
import type { FloorRequest, FloorResult } from "./floor-process.ts";
import type { RawAuth } from "./keystone.ts";
import { type LayoutSpec, onOurCore } from "./layout.ts";
import { KEYSTONE_STATE, keystoneMethods, REPO } from "./local.ts";
import { log, round } from "./log.ts";
import type { BenchUser } from "./users.ts";

/** Users in flight tried for the floor (each on the first FLOOR_PROBE users), the best then run on all. */
const FLOOR_LEVELS = [2, 4, 8, 16];
/** Users each level of the floor is probed on. */
const FLOOR_PROBE = 50;
/** Characters of a failed floor's stderr kept in the error. */
const ERROR_TAIL = 2000;

/** The floor of one N: what was measured, and its time scaled to N. */
export interface Floor extends FloorResult {
  /** Users the floor ran on (N, or the --floor-sample). */
  readonly measuredUsers: number;
  /** Seconds it took on them, before scaling. */
  readonly measuredS: number;
}

/** Runs floor-process.ts (on our core in the split layout) over `users`. */
async function runFloorProcess(auth: RawAuth, users: readonly BenchUser[], layout: LayoutSpec): Promise<FloorResult> {
  const request: FloorRequest = {
    auth,
    userIds: users.map((u) => u.id),
    levels: FLOOR_LEVELS,
    probe: FLOOR_PROBE,
    keystoneState: KEYSTONE_STATE,
    methods: keystoneMethods(),
  };
  const argv = onOurCore(layout, [process.execPath, join(REPO, "bench/src/floor-process.ts")]);
  const relay = (text: string) => {
    for (const line of text.split("\n")) if (line.trim()) log(line.trim());
  };
  const r = await runChild(argv, { cwd: REPO, input: JSON.stringify(request), onStderr: relay });
  if (r.code !== 0) throw new Error(`the floor exited ${r.code}: ${r.stderr.slice(-ERROR_TAIL)}`);
  return JSON.parse(r.stdout) as FloorResult;
}

/**
 * Measures the floor of `users.length` enrollments, on the first `sample` users only when given
 * and scaled to all. A sampled floor runs with all N users in Keystone, whose cost per enrollment
 * grows a little with them (probes of 50: 12.9-16.3 s at 1,000 users, 16.4-18.2 s at 10,000), so
 * the sample pays about what a full pass would (a full pass also grows the credential table to N
 * credentials, which the sample does not: not measured).
 */
export async function measureFloor(
  auth: RawAuth,
  users: readonly BenchUser[],
  sample: number | undefined,
  layout: LayoutSpec,
): Promise<Floor> {
  const n = users.length;
  const measuredUsers = Math.min(n, sample ?? n);
  const measured = await runFloorProcess(auth, users.slice(0, measuredUsers), layout);
  const floor = {
    ...measured,
    floor_s: round((measured.floor_s * n) / measuredUsers),
    floor_safe_s: round((measured.floor_safe_s * n) / measuredUsers),
    measuredUsers,
    measuredS: measured.floor_s,
  };
  log(
    `N=${n}: floor ${floor.floor_s} s at ${floor.floor_concurrency} in flight` +
      (measuredUsers < n ? ` (${measured.floor_s} s measured on ${measuredUsers} users, scaled)` : "") +
      `; safe floor (5 requests, 1 pause) ${floor.floor_safe_s} s at ${floor.floor_safe_concurrency} in flight`,
  );
  return floor;
}
