/**
 * The no-op skip as the commands that run stacks use it (`provision up`, `shards up`): check
 * each stack before the engine starts, print the verdict, clear the record before a run and
 * write it after a successful one. The rules are in operator/skip/.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Stack, Workspace } from "@pulumi/pulumi/automation/index.js";
import { now as clockNow } from "../../lib/util/clock.ts";
import { isOn } from "../../lib/util/flag.ts";
import {
  decide,
  fingerprintStacks,
  firstLine,
  recordAfterRun,
  type StackToCheck,
  type StackUpdateInfo,
} from "../skip/check.ts";
import { type SkipRecordStore, skipRecordStore } from "../skip/record.ts";
import { stackSettingsPath } from "./settings-file.ts";

/**
 * Turns the skip off altogether (`1`): nothing is checked before a run and no record is kept
 * after it. `--force` instead runs every stack once and still keeps records for the next run.
 */
export const NO_SKIP_ENV = "KEYSTONE_TOTP_NO_SKIP";

/** Whether the environment turns the skip off. */
export function skipDisabledByEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return isOn(env[NO_SKIP_ENV]);
}

/** The settings text of a stack as stored in the project (`Pulumi.<stack>.yaml`), or of `configFile`. */
export function configTextOf(projectDir: string, stack: string, configFile?: string): string {
  const file = configFile ?? stackSettingsPath(projectDir, stack);
  return existsSync(file) ? readFileSync(file, "utf8") : "";
}

/** What the backend says of each stack, by its own name (one `pulumi stack ls`). */
export async function updateInfo(ws: Workspace): Promise<Map<string, StackUpdateInfo>> {
  const out = new Map<string, StackUpdateInfo>();
  for (const s of await ws.listStacks()) {
    out.set(s.name.split("/").pop() ?? s.name, {
      lastUpdate: s.lastUpdate,
      updateInProgress: s.updateInProgress === true,
    });
  }
  return out;
}

/** The verdicts on a set of stacks: which to skip, and each stack's fingerprint to record. */
export interface SkipPlan {
  readonly store: SkipRecordStore | undefined;
  /** What was checked, to take the fingerprint again after a run (see {@link recordSuccess}). */
  readonly stacks: readonly StackToCheck[];
  readonly projectDir: string;
  /** Stacks that need no run. */
  readonly skipped: ReadonlySet<string>;
}

/**
 * Checks the stacks and prints one line per stack: skipped (with when it falls due) or run
 * (with why). `force` runs every stack without checking (each still leaves a record after).
 */
export async function planSkips(
  ws: Workspace,
  stacks: readonly StackToCheck[],
  o: { readonly projectDir: string; readonly force: boolean; readonly say: (line: string) => void },
): Promise<SkipPlan> {
  if (skipDisabledByEnv()) {
    // Off altogether: no check before, no record after (and no Keystone request for either).
    o.say(`no-op skip: off (${NO_SKIP_ENV}=1): every stack runs, no record is kept`);
    return { store: undefined, stacks, projectDir: o.projectDir, skipped: new Set() };
  }
  const store = skipRecordStore();
  if (!store) {
    o.say("no-op skip: off (the state backend is neither file:// nor postgres://; every stack runs)");
    return { store, stacks, projectDir: o.projectDir, skipped: new Set() };
  }
  const skipped = new Set<string>();
  if (o.force) {
    o.say("no-op skip: off for this run (--force): every stack runs");
    return { store, stacks, projectDir: o.projectDir, skipped };
  }
  try {
    const prints = await fingerprintStacks(stacks, o.projectDir);
    const info = await updateInfo(ws);
    const at = clockNow();
    for (const s of stacks) {
      const d = decide(await store.read(s.stack), prints.get(s.stack), info.get(s.stack), at);
      if (d.skip) {
        skipped.add(s.stack);
        o.say(`${s.stack}: nothing can change: skipped${d.dueAt ? ` (next due ${d.dueAt})` : ""}`);
      } else {
        o.say(`${s.stack}: runs: ${d.reason}`);
      }
    }
  } catch (e) {
    // The check only ever saves a run: when it cannot be made, every stack runs, as before.
    o.say(`no-op skip: could not check (${firstLine(e)}): every stack runs`);
    skipped.clear();
  }
  return { store, stacks, projectDir: o.projectDir, skipped };
}

/**
 * Removes the stack's record before its run: a run killed midway must leave none. A failure is
 * reported, not thrown: the backend that could not be written will refuse the run itself.
 */
export async function clearRecord(plan: SkipPlan, stack: string, say: (line: string) => void): Promise<void> {
  try {
    await plan.store?.clear(stack);
  } catch (e) {
    say(`${stack}: its skip record could not be removed (${firstLine(e)})`);
  }
}

/**
 * After a successful `up` of `stack`: keeps its skip record when nothing is left to do, and
 * says why not otherwise. Never fails the run: a record not written only costs a run.
 */
export async function recordSuccess(stack: Stack, plan: SkipPlan, say: (line: string) => void): Promise<void> {
  const checked = plan.stacks.find((s) => s.stack === stack.name);
  if (!plan.store || !checked) return;
  try {
    // Taken again: the run itself changed the users in Keystone (MFA options, marker), so the
    // fingerprint from before it would never match the next run's.
    const fingerprint = (await fingerprintStacks([checked], plan.projectDir)).get(stack.name);
    if (typeof fingerprint !== "string") throw fingerprint ?? new Error("no fingerprint");
    // The last update from the stack's own state, not `pulumi stack ls`: listing reads every
    // stack's checkpoint, once per stack run (measured: ~12 s of CLI CPU per listing of 40
    // stacks of 250 users), which made a run of many stacks quadratic in their number.
    const state = await stack.exportStack();
    const r = recordAfterRun(stack.name, fingerprint, state.deployment, clockNow());
    if (r.record) await plan.store.write(r.record);
    else say(`${stack.name}: the next up runs too: ${r.pending}`);
  } catch (e) {
    say(`${stack.name}: no skip record written (${firstLine(e)})`);
  }
}
