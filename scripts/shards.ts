/**
 * The operator's entry point for a fleet split across K stacks: runs `scripts/provision.ts`
 * VERB on the stacks PREFIX-0 .. PREFIX-(K-1), each with `keystone-totp:shard` set to `I/K`,
 * so that each stack manages its share of the one users CSV (see operator/fleet/shard.ts).
 *
 * Changing K re-homes users: a user whose bucket changes is deleted by one stack and created
 * by another, i.e. gets a new secret and a new message. That is refused unless `--reshard` is
 * given, and then the runs are ordered so that no user is ever created by their new stack
 * before their old stack deleted them (which would leave two credentials and, with MFA
 * enforced, let the old stack's clean-up undo the new stack's MFA rules):
 *   1. destroy the stacks at or beyond the new K (only when shrinking);
 *   2. `up` the remaining existing stacks with the new setting; each one's stored setting is
 *      changed only once its run succeeded, so an interrupted reshard is detected again;
 *   3. `up` the new stacks (only when growing).
 * Jump hashing moves users only from old stacks to new ones when growing, and only from
 * removed stacks to remaining ones when shrinking, which is what makes this order sufficient.
 *
 * Usage: node scripts/shards.ts VERB --stack-prefix P --shards K [options]   (npm run shards -- ...)
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type ConfigMap, LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation/index.js";
import { dump as dumpYaml } from "js-yaml";
import { ConfigError, EXIT, UsageError } from "../lib/errors.ts";
import { parseCommandLine, runCommand, wholeNumberOption } from "../operator/commands/cli.ts";
import { useLocalKeystoneWithNote } from "../operator/commands/local-keystone.ts";
import { loginOnceForRun } from "../operator/commands/mfa-login.ts";
import { configTextOf, planSkips } from "../operator/commands/noop-skip.ts";
import { MAX_PARALLEL } from "../operator/commands/options.ts";
import {
  parseSettings,
  parseSettingsDoc,
  scalarSetting,
  stackSettingsPath,
} from "../operator/commands/settings-file.ts";
import { formatShard, MAX_SHARDS, parseShard, type Shard } from "../operator/fleet/shard.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Stacks run at once unless --concurrency says otherwise: each run uses about one core. */
export const DEFAULT_CONCURRENCY = 1;
/** Most stacks --concurrency runs at once. */
export const MAX_CONCURRENCY = 64;
const SHARD_KEY = "keystone-totp:shard";
/** Declared once, in the first stack: every stack would otherwise create its own copy. */
const FIRST_STACK_ONLY = new Set(["keystone-totp:credentials"]);
const STACK_PREFIX = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$/;

export const HELP = `usage: npm run shards -- VERB --stack-prefix P --shards K [options]

Runs 'provision VERB' on the stacks P-0 .. P-(K-1), each managing the users of the one users
CSV whose hash falls in its bucket (stack setting keystone-totp:shard = I/K).

verbs: preview, up, refresh, destroy (as for provision)

options:
  --stack-prefix P     stacks are named P-0, P-1, ... (required)
  --shards K           number of stacks, 1..${MAX_SHARDS} (required; destroy and refresh: the
                       existing stacks P-<n> are used and K must match them)
  --concurrency C      stacks run at once, 1..${MAX_CONCURRENCY} (default ${DEFAULT_CONCURRENCY}; each run uses about 1 core)
  --config-from STACK  copy that stack's settings (secrets re-encrypted) into every shard
                       stack first, creating missing stacks; keystone-totp:credentials goes
                       to P-0 only. Existing keys are overwritten, others left alone.
                       Without it, stacks added to an existing split copy the settings
                       of its first stack
  --only LIST          run only these stacks, by index: 0,2-3 (several machines split one
                       fleet, each with its own --only; not with --reshard; docs/shared-backend.md)
  --reshard            allow changing K: users whose bucket changes get a NEW secret and a new
                       enrollment message (see docs/sharding.md)
  --yes                required for up, refresh and destroy
  --force              up: run every stack, even those where nothing can change (the no-op
                       skip: before any engine starts, one check of the whole fleet finds the
                       stacks whose CSV rows, settings, Keystone users and code are unchanged,
                       with no rotation or retirement due and no work pending; those are not
                       run. docs/daily-run.md)
  --expect-no-changes, --continue-on-error, --diff, --parallel N, --skip-doctor
                       passed to each provision run
  --help               this text

exit codes: 0 every stack ok; else the code of the first stack that failed (1 failed,
2 bad input, 3 Keystone, 4 mail), 64 usage (README, Exit codes)
`;

type Verb = "preview" | "up" | "refresh" | "destroy";

interface Options {
  verb: Verb;
  prefix: string;
  shards: number;
  concurrency: number;
  configFrom: string | undefined;
  /** The stack indexes this runner runs (`--only`); undefined: all. */
  only: ReadonlySet<number> | undefined;
  reshard: boolean;
  yes: boolean;
  force: boolean;
  /** Options handed to each provision run as they are. */
  passthrough: string[];
}

const VERBS: readonly Verb[] = ["preview", "up", "refresh", "destroy"];

const SHARDS_OPTIONS = {
  "stack-prefix": { type: "string" },
  shards: { type: "string" },
  concurrency: { type: "string" },
  "config-from": { type: "string" },
  only: { type: "string" },
  reshard: { type: "boolean" },
  yes: { type: "boolean", short: "y" },
  force: { type: "boolean" },
  "expect-no-changes": { type: "boolean" },
  "continue-on-error": { type: "boolean" },
  diff: { type: "boolean" },
  "skip-doctor": { type: "boolean" },
  parallel: { type: "string" },
} as const;

/** Options handed to each provision run as they are. */
const PASSTHROUGH_FLAGS = ["expect-no-changes", "continue-on-error", "diff", "skip-doctor"] as const;

/**
 * The verb and options of a shards command line.
 *
 * @throws {UsageError} an unknown verb or option, a bad value, a missing --stack-prefix or
 *   --shards, or a change without --yes.
 */
export function parseShardsArgs(argv: readonly string[]): Options {
  const { values: v, positionals } = parseCommandLine(
    { options: SHARDS_OPTIONS, positionals: [1, 1], positionalsName: `a verb: ${VERBS.join(", ")}` },
    argv,
  );
  const verb = positionals[0] as Verb;
  if (!VERBS.includes(verb)) throw new UsageError(`unknown verb '${verb}' (verbs: ${VERBS.join(", ")})`);
  const passthrough: string[] = PASSTHROUGH_FLAGS.filter((f) => v[f]).map((f) => `--${f}`);
  if (v.parallel !== undefined) {
    passthrough.push("--parallel", String(wholeNumberOption("--parallel", v.parallel, 1, MAX_PARALLEL)));
  }
  const o: Options = {
    verb,
    prefix: v["stack-prefix"] ?? "",
    shards: v.shards === undefined ? 0 : wholeNumberOption("--shards", v.shards, 1, MAX_SHARDS),
    concurrency:
      v.concurrency === undefined
        ? DEFAULT_CONCURRENCY
        : wholeNumberOption("--concurrency", v.concurrency, 1, MAX_CONCURRENCY),
    configFrom: v["config-from"],
    only: undefined,
    reshard: v.reshard ?? false,
    yes: v.yes ?? false,
    force: v.force ?? false,
    passthrough,
  };
  if (!STACK_PREFIX.test(o.prefix)) {
    throw new UsageError("--stack-prefix is required: letters, digits, '_', '.', '-'", "--stack-prefix");
  }
  if (o.shards === 0) throw new UsageError("--shards is required", "--shards");
  if (v.only !== undefined) {
    // A reshard moves users between stacks in phases that must follow each other: one runner
    // must see them all.
    if (o.reshard)
      throw new UsageError(
        "--only cannot be combined with --reshard: reshard from one runner, with every stack",
        "--only",
      );
    o.only = parseOnly(v.only, o.shards);
  }
  // Several stacks cannot share one terminal prompt: confirm once, here.
  if (o.verb !== "preview" && !o.yes) {
    throw new UsageError(`'${o.verb}' changes ${o.shards} stacks: pass --yes (run preview first)`, "--yes");
  }
  return o;
}

/**
 * The stack indexes of `--only`: a comma-separated list of indexes and ranges (`0,2-3`), each
 * below `count`.
 *
 * @throws {UsageError} anything else.
 */
export function parseOnly(value: string, count: number): ReadonlySet<number> {
  const out = new Set<number>();
  for (const part of value.split(",")) {
    const m = /^\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?$/.exec(part);
    const from = Number(m?.[1]);
    const to = m?.[2] === undefined ? from : Number(m[2]);
    if (!m || from > to || to >= count) {
      throw new UsageError(
        `--only takes stack indexes from 0 to ${count - 1} and ranges, e.g. 0,2-3; not '${value}'`,
        "--only",
      );
    }
    for (let i = from; i <= to; i++) out.add(i);
  }
  return out;
}

const say = (msg: string) => process.stderr.write(`shards: ${msg}\n`);

/** One provision run in the plan. */
interface Job {
  readonly stack: string;
  readonly verb: Verb;
  /** The setting to run with; persisted to the stack's config after a successful run. */
  readonly shard: Shard | undefined;
  /** Whether the stack's stored setting differs from `shard` (a reshard run). */
  readonly changesSetting: boolean;
  /** Remove the stack after a successful destroy (it is beyond the new K). */
  readonly removeAfter: boolean;
}

/** What the existing stacks of the prefix say about the split. */
interface Existing {
  /** Stack index -> its stored shard setting (undefined: none). */
  readonly byIndex: Map<number, Shard | undefined>;
}

function stackName(prefix: string, i: number): string {
  return `${prefix}-${i}`;
}

/** The index of a stack of the prefix, from its name (`P-3` -> 3). */
function indexOf(stack: string): number {
  return Number(stack.slice(stack.lastIndexOf("-") + 1));
}

function stackFile(stack: string): string {
  return stackSettingsPath(REPO, stack);
}

async function readExisting(ws: LocalWorkspace, prefix: string): Promise<Existing> {
  const re = new RegExp(`^${prefix.replace(/[.]/g, "\\.")}-(\\d+)$`);
  const byIndex = new Map<number, Shard | undefined>();
  for (const s of await ws.listStacks()) {
    // Backends may qualify names (org/project/stack); the stack's own name is the last part.
    const m = re.exec(s.name.split("/").pop() ?? "");
    if (!m) continue;
    const stack = stackName(prefix, Number(m[1]));
    let shard: Shard | undefined;
    try {
      shard = parseShard(shardSettingOf(stack));
    } catch (e) {
      throw new ConfigError(`stack ${stack}: ${(e as Error).message}`);
    }
    byIndex.set(Number(m[1]), shard);
  }
  return { byIndex };
}

/**
 * The stack's shard setting as its settings file holds it: a plain value, read from the file
 * (as the skip check reads it) rather than by a `pulumi config` process per stack, each of which
 * would derive the passphrase's key to decrypt settings this needs none of.
 *
 * @throws {ConfigError} `E_CONFIG` when the setting is there but not a plain string.
 */
function shardSettingOf(stack: string): string | undefined {
  const v = parseSettings(configTextOf(REPO, stack), stackFile(stack))[SHARD_KEY];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") {
    throw new ConfigError(`stack ${stack}: ${SHARD_KEY} in ${stackFile(stack)} must be a plain string like 0/4`);
  }
  return v;
}

function sameShard(a: Shard | undefined, b: Shard): boolean {
  return a !== undefined && a.index === b.index && a.count === b.count;
}

/**
 * Whether the existing stacks already form the split `I/K` for 0 <= I < K (some of them may
 * not exist yet): then no user changes stack.
 */
function consistent(ex: Existing, k: number): boolean {
  for (const [i, s] of ex.byIndex) if (i >= k || s === undefined || s.index !== i || s.count !== k) return false;
  return true;
}

function describeExisting(ex: Existing, prefix: string): string {
  const parts = [...ex.byIndex.entries()]
    .sort(([a], [b]) => a - b)
    .map(([i, s]) => `${stackName(prefix, i)}=${s ? formatShard(s) : "(no shard setting)"}`);
  return parts.length > 0 ? parts.join(", ") : "none";
}

/** The runs to make, in phases; the runs of one phase may overlap. */
function plan(o: Options, ex: Existing): Job[][] {
  const k = o.shards;
  const target = (i: number): Shard => ({ index: i, count: k });
  if (o.verb === "refresh" || o.verb === "destroy") {
    if (!consistent(ex, k)) {
      throw new ConfigError(
        `the stacks of ${o.prefix} are not a split into ${k} (${describeExisting(ex, o.prefix)}); give the --shards they were made with`,
      );
    }
    const jobs = [...ex.byIndex.keys()]
      .sort((a, b) => a - b)
      .map((i) => ({
        stack: stackName(o.prefix, i),
        verb: o.verb,
        shard: undefined,
        changesSetting: false,
        removeAfter: false,
      }));
    return [jobs];
  }
  const all = Array.from({ length: k }, (_, i) => i);
  if (consistent(ex, k)) {
    return [
      all.map((i) => ({
        stack: stackName(o.prefix, i),
        verb: o.verb,
        shard: target(i),
        changesSetting: false,
        removeAfter: false,
      })),
    ];
  }
  if (!o.reshard) {
    throw new ConfigError(
      `the stacks of ${o.prefix} are split differently (${describeExisting(ex, o.prefix)}) than --shards ${k} asks. ` +
        "Changing the number of shards moves users to other stacks: each moved user gets a NEW secret and a new " +
        "enrollment message, and their current authenticator entry stops working. If that is what you want, run " +
        `'npm run shards -- preview --reshard ...' to see who moves, then 'up --reshard --yes'; otherwise give --shards ` +
        "the number the stacks were made with",
    );
  }
  const beyond = [...ex.byIndex.keys()].filter((i) => i >= k).sort((a, b) => a - b);
  const kept = all.filter((i) => ex.byIndex.has(i));
  const fresh = all.filter((i) => !ex.byIndex.has(i));
  const job = (i: number, existing: boolean): Job => {
    const s = ex.byIndex.get(i);
    return {
      stack: stackName(o.prefix, i),
      verb: o.verb,
      shard: target(i),
      changesSetting: existing && (s === undefined || s.count !== k || s.index !== i),
      removeAfter: false,
    };
  };
  if (o.verb === "preview") return [[...kept.map((i) => job(i, true)), ...fresh.map((i) => job(i, false))]];
  return [
    beyond.map((i) => ({
      stack: stackName(o.prefix, i),
      verb: "destroy" as const,
      shard: undefined,
      changesSetting: false,
      removeAfter: true,
    })),
    kept.map((i) => job(i, true)),
    fresh.map((i) => job(i, false)),
  ].filter((p) => p.length > 0);
}

/** Copies the base stack's settings into a shard stack (secrets stay secret). */
function configFor(base: ConfigMap, index: number): ConfigMap {
  const out: ConfigMap = {};
  for (const [key, v] of Object.entries(base)) {
    if (key === SHARD_KEY) continue;
    if (FIRST_STACK_ONLY.has(key) && index !== 0) continue;
    out[key] = { value: v.value, secret: v.secret };
  }
  return out;
}

/**
 * A copy of the stack's config file with another shard setting, for a run that must not
 * change the stored setting before it succeeded. The copy keeps the stack's encryption salt,
 * so its secrets still decrypt.
 */
function configWithShard(stack: string, shard: Shard, dir: string): string {
  const file = stackFile(stack);
  const doc = parseSettingsDoc(configTextOf(REPO, stack), file);
  const config = (doc.config ?? {}) as Record<string, unknown>;
  const next = { ...doc, config: { ...config, [SHARD_KEY]: formatShard(shard) } };
  const out = stackSettingsPath(dir, stack);
  writeFileSync(out, dumpYaml(next), { mode: 0o600 });
  return out;
}

/** Runs provision.ts for one stack, its output prefixed with the stack's name. */
function runProvision(job: Job, args: string[]): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      [join(REPO, "scripts/provision.ts"), job.verb, "--stack", job.stack, ...args],
      {
        cwd: REPO,
        env: process.env,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const pipe = (from: NodeJS.ReadableStream, to: NodeJS.WritableStream) => {
      let pending = "";
      from.on("data", (b: Buffer) => {
        const lines = (pending + b.toString("utf8")).split("\n");
        pending = lines.pop() ?? "";
        for (const l of lines) to.write(`[${job.stack}] ${l}\n`);
      });
      from.on("end", () => {
        if (pending !== "") to.write(`[${job.stack}] ${pending}\n`);
      });
    };
    pipe(child.stdout, process.stdout);
    pipe(child.stderr, process.stderr);
    child.on("error", reject);
    child.on("close", (code) => resolvePromise(code ?? EXIT.failed));
  });
}

async function pool<T, R>(items: readonly T[], width: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

async function main(argv: readonly string[]): Promise<number> {
  const o = parseShardsArgs(argv);
  const pulumiCommand = await PulumiCommand.get({ skipVersionCheck: true });
  const ws = await LocalWorkspace.create({ workDir: REPO, pulumiCommand });
  const existing = await readExisting(ws, o.prefix);
  const only = o.only;
  const phases = plan(o, existing)
    .map((jobs) => (only ? jobs.filter((j) => only.has(indexOf(j.stack))) : jobs))
    .filter((jobs) => jobs.length > 0);
  if (only)
    say(
      `this runner runs ${
        phases
          .flat()
          .map((j) => j.stack)
          .join(", ") || "no stack"
      } (--only)`,
    );
  const missing = phases.flat().filter((j) => j.shard && !existing.byIndex.has(j.shard.index));
  // New stacks of an existing split take the settings of its first stack: all shards share them.
  const firstExisting = [...existing.byIndex.keys()].sort((a, b) => a - b)[0];
  const source = o.configFrom ?? (firstExisting === undefined ? undefined : stackName(o.prefix, firstExisting));
  if (missing.length > 0 && !source) {
    throw new ConfigError(
      `stack(s) ${missing.map((j) => j.stack).join(", ")} do not exist: give --config-from STACK to create them with that stack's settings`,
    );
  }
  const base = source && (o.configFrom || missing.length > 0) ? await ws.getAllConfig(source) : undefined;
  // An operator account with MFA logs in once here; every provision run inherits the token (a
  // code works once on Keystone 30: one login per stack would fail from the second on).
  const first = source ?? phases.flat().find((j) => existing.byIndex.has(j.shard?.index ?? -1))?.stack;
  const settings = base ?? (first ? await ws.getAllConfig(first) : {});
  useLocalKeystoneWithNote("shards", { repo: REPO, configKeys: Object.keys(settings) });
  await loginOnceForRun("shards", { config: (k) => settings[k]?.value });
  const skipped = await skipUnchanged(ws, o, phases, settings);
  const tmp = mkdtempSync(join(tmpdir(), "kt-shards-"));
  const results: { stack: string; verb: Verb; code: number; skipped?: boolean }[] = [];
  try {
    for (const [p, jobs] of phases.entries()) {
      if (phases.length > 1)
        say(`phase ${p + 1} of ${phases.length}: ${jobs.map((j) => `${j.verb} ${j.stack}`).join(", ")}`);
      const codes = await pool(jobs, o.concurrency, async (job) => {
        if (skipped.has(job.stack)) {
          results.push({ stack: job.stack, verb: job.verb, code: EXIT.ok, skipped: true });
          return EXIT.ok;
        }
        const index = job.shard?.index ?? -1;
        const isNew = !existing.byIndex.has(index) && job.shard !== undefined;
        if (isNew) await ws.createStack(job.stack);
        if (base && job.shard && (o.configFrom || isNew)) await ws.setAllConfig(job.stack, configFor(base, index));
        // Checked above, for the whole fleet at once: the run itself need not check again.
        const args = [...o.passthrough, ...(o.yes ? ["--yes"] : []), ...(job.verb === "up" ? ["--force"] : [])];
        if (job.shard && (isNew || !job.changesSetting)) {
          // The stack has no users yet, or already has this setting: store it now, unless its
          // file holds it already (every daily run: a `pulumi config set` per stack saved).
          if (!sameShard(existing.byIndex.get(index), job.shard)) {
            await ws.setConfig(job.stack, SHARD_KEY, { value: formatShard(job.shard) });
          }
        } else if (job.shard) {
          args.push("--config-file", configWithShard(job.stack, job.shard, tmp));
        }
        const code = await runProvision(job, args);
        if (code === EXIT.ok && job.changesSetting && job.shard && job.verb === "up") {
          await ws.setConfig(job.stack, SHARD_KEY, { value: formatShard(job.shard) });
        }
        if (code === EXIT.ok && job.removeAfter) await ws.removeStack(job.stack);
        results.push({ stack: job.stack, verb: job.verb, code });
        return code;
      });
      // A later phase creates the users an earlier one had to delete first: stop here.
      if (codes.some((c) => c !== EXIT.ok) && p < phases.length - 1) {
        say(`phase ${p + 1} failed: the later phases were not run; fix the failure and run again with --reshard`);
        break;
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  for (const r of results) {
    const how = r.skipped ? " (skipped: nothing could change)" : r.code === 0 ? "" : ` (exit ${r.code})`;
    say(`${r.code === 0 ? "ok  " : "FAIL"} ${r.verb} ${r.stack}${how}`);
  }
  const n = results.filter((r) => r.skipped).length;
  if (o.verb === "up") say(`${results.length - n} stack(s) run, ${n} skipped`);
  return results.find((r) => r.code !== EXIT.ok)?.code ?? EXIT.ok;
}

/**
 * The stacks of a plain `up` (no change of split) where nothing can change: one check for the
 * whole fleet before any engine starts (see operator/skip/check.ts). Reshards, new stacks and
 * other verbs always run.
 */
async function skipUnchanged(
  ws: LocalWorkspace,
  o: Options,
  phases: readonly (readonly Job[])[],
  settings: ConfigMap,
): Promise<Set<string>> {
  const candidates = phases
    .flat()
    .filter((j) => j.verb === "up" && !j.changesSetting && existsSync(stackFile(j.stack)));
  if (o.verb !== "up" || candidates.length === 0) return new Set();
  if (o.configFrom !== undefined) {
    // The settings are about to be rewritten from another stack: what the stacks hold now says
    // nothing of what they will run with.
    say(`no-op skip: off for this run (--config-from ${o.configFrom} rewrites every stack's settings)`);
    return new Set();
  }
  // Stacks of one split share their settings (--config-from copies them): the first one's
  // decrypted values say which Keystone to ask; each stack's own file says its CSV and shard,
  // and its text (secrets as ciphertext) goes into its fingerprint.
  const plan = await planSkips(
    ws,
    candidates.map((j) => {
      const text = configTextOf(REPO, j.stack);
      const own = parseSettings(text, stackFile(j.stack));
      return {
        stack: j.stack,
        configText: text,
        config: (k: string) => scalarSetting(own, k) ?? settings[k]?.value,
      };
    }),
    { projectDir: REPO, force: o.force, say },
  );
  await plan.store?.close();
  return new Set(plan.skipped);
}

if (import.meta.main) await runCommand({ name: "shards", help: HELP }, main);
