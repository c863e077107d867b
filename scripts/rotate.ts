/**
 * Rotates TOTP secrets on demand: for chosen users, or for everyone after an incident.
 *
 * Each chosen user gets a new credential and a new enrollment message; the old credential
 * keeps working for the grace window after that message was delivered (Keystone accepts a
 * code from any of a user's credentials), and the first run after the window deletes it.
 * Nobody is locked out by a message still in transit.
 *
 * Usage: node scripts/rotate.ts [options] USER... | --all      (npm run rotate -- ...)
 */
import { randomBytes } from "node:crypto";
import { EXIT, InputError, UsageError } from "../lib/errors.ts";
import { parseCommandLine, runCommand, wholeNumberOption } from "../operator/commands/cli.ts";
import { confirm, openStack, readStackCsv, runVerb, stackConfig } from "../operator/commands/engine.ts";
import {
  ENGINE_OPTIONS,
  ENGINE_OPTIONS_HELP,
  type EngineOptions,
  engineOptionsFrom,
} from "../operator/commands/options.ts";
import { Progress } from "../operator/commands/progress.ts";
import { DEFAULT_GRACE_HOURS, MAX_GRACE_HOURS, resolveRotationGraceHours } from "../operator/fleet/settings.ts";
import { formatShard, inShard, parseShard, shardOf } from "../operator/fleet/shard.ts";
import { DEFAULT_DOMAIN } from "../providers/credential/types.ts";

export const HELP = `usage: npm run rotate -- [options] USER...
       npm run rotate -- [options] --all

Issues a new TOTP secret to each USER (name@domain, as the users CSV gives them, e.g.
alice@Default) or to every user of the stack (--all), and emails each a new QR code. The old
secret keeps working for the grace window after the new one is delivered
(keystone-totp:rotationGraceHours, default ${DEFAULT_GRACE_HOURS}), then the next run deletes it.

options:
  --all                  every user in the CSV; asks for confirmation unless --yes
  --grace-hours N        keep old secrets valid N hours after delivery, 0..${MAX_GRACE_HOURS} (0: delete
                         them as soon as the new one is delivered, e.g. after a leak)
  --preview              show what would happen; change nothing, send nothing
${ENGINE_OPTIONS_HELP}
  --help                 this text

exit codes: 0 ok, 1 failed, 2 bad input (unknown user, CSV, config), 3 Keystone, 4 mail,
64 usage (README, Exit codes)
`;

interface RotateOptions {
  readonly engine: EngineOptions;
  readonly all: boolean;
  readonly users: readonly string[];
  readonly graceHours: number | undefined;
  readonly preview: boolean;
}

/** The options of rotate, beside {@link ENGINE_OPTIONS}. */
const ROTATE_OPTIONS = {
  ...ENGINE_OPTIONS,
  all: { type: "boolean" },
  "grace-hours": { type: "string" },
  preview: { type: "boolean" },
} as const;

/**
 * The options of a rotate command line.
 *
 * @throws {UsageError} an unknown option, a bad value, users and --all together or neither, or
 *   a change off a terminal without --yes.
 */
export function parseRotateArgs(argv: readonly string[], isTTY = Boolean(process.stdin.isTTY)): RotateOptions {
  const { values, positionals } = parseCommandLine({ options: ROTATE_OPTIONS, positionals: [0, Infinity] }, argv);
  const o = engineOptionsFrom(values);
  const all = values.all ?? false;
  const preview = values.preview ?? false;
  const graceHours =
    values["grace-hours"] === undefined
      ? undefined
      : wholeNumberOption("--grace-hours", values["grace-hours"], 0, MAX_GRACE_HOURS);
  if (all && positionals.length > 0) throw new UsageError("give users or --all, not both", "--all");
  if (!all && positionals.length === 0) throw new UsageError("name the users to rotate (name@domain), or --all");
  if (!preview && !o.yes && !isTTY) {
    throw new UsageError("rotating changes the stack: pass --yes when not on a terminal", "--yes");
  }
  return { engine: o, all, users: positionals, graceHours, preview };
}

/**
 * Matches the users asked for against the CSV's user keys: exactly, else ignoring case when
 * that is unambiguous (names in Keystone are case-sensitive, people typing them are not).
 *
 * @returns the keys, or the names that match no user.
 */
export function matchUsers(asked: readonly string[], keys: readonly string[]): { keys: string[]; unknown: string[] } {
  const exact = new Set(keys);
  const folded = new Map<string, string[]>();
  for (const k of keys) {
    const f = k.toLowerCase();
    folded.set(f, [...(folded.get(f) ?? []), k]);
  }
  const found: string[] = [];
  const unknown: string[] = [];
  for (const a of asked) {
    const name = a.includes("@") ? a : `${a}@${DEFAULT_DOMAIN}`;
    const candidates = exact.has(name) ? [name] : (folded.get(name.toLowerCase()) ?? []);
    if (candidates.length === 1) found.push(candidates[0] as string);
    else unknown.push(a);
  }
  return { keys: [...new Set(found)], unknown };
}

async function main(argv: readonly string[]): Promise<number> {
  const r = parseRotateArgs(argv);
  const o = r.engine;
  const progress = new Progress(r.preview ? "preview" : "rotate", o.stack);
  let rotate: { token: string; users: ReadonlySet<string> | "all" } | undefined;
  const stack = await openStack(
    o.stack,
    () => ({
      onPlan: (p) => progress.setPlan(p),
      rotate,
      graceHours: r.graceHours,
    }),
    { create: false, configFile: o.configFile },
  );
  const keys = ((await readStackCsv(stack, o)) ?? []).map((row) => row.key);
  const config = await stackConfig(stack, o);
  const shard = parseShard(config("keystone-totp:shard"));
  if (keys.length === 0) {
    throw new InputError("usersCsv", "the stack has no users CSV, or it is empty: nothing to rotate");
  }
  let chosen: ReadonlySet<string> | "all";
  if (r.all) {
    chosen = "all";
  } else {
    const m = matchUsers(r.users, keys);
    if (m.unknown.length > 0) {
      throw new InputError(
        "users",
        `no such user in the users CSV: ${m.unknown.join(", ")} (give name@domain, e.g. ${keys[0]})`,
      );
    }
    // In a split fleet each user belongs to exactly one stack.
    const elsewhere = shard ? m.keys.filter((k) => !inShard(k, shard)) : [];
    if (shard && elsewhere.length > 0) {
      const where = elsewhere.map((k) => `${k} (shard ${shardOf(k, shard.count)}/${shard.count})`).join(", ");
      throw new InputError(
        "users",
        `not managed by stack ${o.stack} (shard ${formatShard(shard)}): ${where}; run rotate on their stacks`,
      );
    }
    chosen = new Set(m.keys);
  }
  const count = chosen === "all" ? keys.filter((k) => inShard(k, shard)).length : chosen.size;
  // The program's own reading of the setting (E_CONFIG for a bad value), the default included.
  const grace = r.graceHours ?? resolveRotationGraceHours((k) => config(`keystone-totp:${k}`));
  if (!r.preview && !o.yes) {
    const who = chosen === "all" ? `ALL ${count} users` : `${count} user(s): ${[...chosen].join(", ")}`;
    const ok = await confirm(
      `Rotate the TOTP secrets of ${who}? Each gets a new QR code by email; old codes keep working for ${grace} h after delivery. [y/N] `,
    );
    if (!ok) return EXIT.ok;
  }
  // A request never applied before: the same users can be rotated again later.
  rotate = { token: `${new Date().toISOString()}/${randomBytes(4).toString("hex")}`, users: chosen };
  const outcome = await runVerb(stack, r.preview ? "preview" : "up", { ...o, yes: true }, progress);
  return outcome.exitCode;
}

if (import.meta.main) await runCommand({ name: "rotate", help: HELP }, main);
