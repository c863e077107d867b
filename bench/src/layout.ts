/**
 * The two layouts a measurement runs in. shared: every process on every core (the rows before
 * issue 15). split: Keystone and its database on one core, everything of ours on the other, as
 * when Keystone runs on its own hosts (see split.ts for how Keystone's side is pinned).
 */
import os from "node:os";
import { KEYSTONE_STATE } from "./local.ts";
import { log } from "./log.ts";
import { affinityOf, type Cores, cpusIn, Pinning, pin, tasksetAvailable } from "./split.ts";

/** shared: every process on every core (as before); split: Keystone on one core, ours on another. */
export type Layout = "shared" | "split";

/** Cores of the split layout unless --cores says otherwise. */
export const DEFAULT_CORES: Cores = { keystone: 0, ours: 1 };

/** The layout of one measurement. */
export interface LayoutSpec {
  readonly layout: Layout;
  readonly cores: Cores;
  /** Where V8 CPU profiles of the measured Node.js processes go (--cpu-prof), if anywhere. */
  readonly cpuProf: string | undefined;
}

/** The command line that runs `cmd` on our core in the split layout, as it is in the shared one. */
export function onOurCore(layout: LayoutSpec, cmd: string[]): string[] {
  return layout.layout === "split" ? ["taskset", "-c", String(layout.cores.ours), ...cmd] : cmd;
}

/**
 * Runs `fn` in a layout. Split: this Keystone and its database backends, and this process
 * (the SMTP sink, the counting proxy and the /proc poller: the far side of the network and
 * the measurement) on Keystone's core; what `fn` starts of ours is put on the other core by
 * {@link onOurCore}. Affinities are given back afterwards.
 */
export async function inLayout<T>(spec: LayoutSpec, fn: () => Promise<T>): Promise<T> {
  if (spec.layout === "shared") return fn();
  if (!tasksetAvailable()) throw new Error("the split layout needs taskset (util-linux): apt-get install util-linux");
  const self = affinityOf(process.pid) ?? `0-${os.cpus().length - 1}`;
  const pins = new Pinning(KEYSTONE_STATE, spec.cores);
  pin(process.pid, String(spec.cores.keystone));
  log(
    `split layout: Keystone, PostgreSQL (${pins.pinned} processes) and the bench's instruments on core ${spec.cores.keystone}; ours on core ${spec.cores.ours} (engine GOMAXPROCS ${cpusIn(String(spec.cores.ours))})`,
  );
  try {
    return await fn();
  } finally {
    pins.release();
    pin(process.pid, self);
  }
}
