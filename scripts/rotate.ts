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
import { KeystoneTotpError } from "../lib/errors.ts";
import {
  confirm,
  defaultEngineOptions,
  ENGINE_OPTIONS_HELP,
  type EngineOptions,
  EXIT,
  openStack,
  parseEngineOption,
  readStackCsv,
  runMain,
  runVerb,
  stackSetting,
} from "../operator/commands/engine.ts";
import { Progress } from "../operator/commands/progress.ts";
import { MAX_GRACE_HOURS } from "../operator/fleet/settings.ts";
import { formatShard, inShard, parseShard, shardOf } from "../operator/fleet/shard.ts";
import { DEFAULT_GRACE_HOURS } from "../providers/delivery/types.ts";

const HELP = `usage: npm run rotate -- [options] USER...
       npm run rotate -- [options] --all

Issues a new TOTP secret to each USER (name@domain, as the users CSV gives them, e.g.
alice@Default) or to every user of the stack (--all), and emails each a new QR code. The old
secret keeps working for the grace window after the new one is delivered
(keystone-totp:rotationGraceHours, default 24), then the next run deletes it.

options:
  --all                  every user in the CSV; asks for confirmation unless --yes
  --grace-hours N        keep old secrets valid N hours after delivery (0: delete them as soon
                         as the new one is delivered, e.g. after a leak)
  --preview              show what would happen; change nothing, send nothing
${ENGINE_OPTIONS_HELP}
  --help                 this text

exit codes: 0 ok, 1 failed, 2 bad input (unknown user, CSV, config), 3 Keystone, 4 mail, 64 usage
`;

interface RotateOptions {
  readonly engine: EngineOptions;
  readonly all: boolean;
  readonly users: readonly string[];
  readonly graceHours: number | undefined;
  readonly preview: boolean;
}

function usage(message: string): never {
  process.stderr.write(`rotate: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
}

function parseArgs(argv: string[]): RotateOptions {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP);
    process.exit(EXIT.ok);
  }
  const o = defaultEngineOptions() as { -readonly [K in keyof EngineOptions]: EngineOptions[K] };
  const users: string[] = [];
  let all = false;
  let preview = false;
  let graceHours: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--all") all = true;
    else if (a === "--preview") preview = true;
    else if (a === "--grace-hours") {
      const v = argv[++i];
      if (v === undefined || !/^[0-9]{1,5}$/.test(v) || Number(v) > MAX_GRACE_HOURS) {
        usage(`--grace-hours needs a whole number of hours, 0..${MAX_GRACE_HOURS}`);
      }
      graceHours = Number(v);
    } else if (a.startsWith("-")) {
      const next = parseEngineOption(argv, i, o, usage);
      if (next < 0) usage(`unknown option '${a}'`);
      i = next;
    } else users.push(a);
  }
  if (all && users.length > 0) usage("give users or --all, not both");
  if (!all && users.length === 0) usage("name the users to rotate (name@domain), or --all");
  if (!preview && !o.yes && !process.stdin.isTTY)
    usage("rotating changes the stack: pass --yes when not on a terminal");
  return { engine: o, all, users, graceHours, preview };
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
    const name = a.includes("@") ? a : `${a}@Default`;
    const candidates = exact.has(name) ? [name] : (folded.get(name.toLowerCase()) ?? []);
    if (candidates.length === 1) found.push(candidates[0] as string);
    else unknown.push(a);
  }
  return { keys: [...new Set(found)], unknown };
}

async function main(): Promise<number> {
  const r = parseArgs(process.argv.slice(2));
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
  let keys: string[];
  let shard: ReturnType<typeof parseShard>;
  try {
    keys = ((await readStackCsv(stack, o)) ?? []).map((row) => row.key);
    shard = parseShard(await stackSetting(stack, o, "keystone-totp:shard"));
  } catch (e) {
    if (!(e instanceof KeystoneTotpError)) throw e;
    process.stderr.write(`rotate: [${e.code}] ${e.message}\n`);
    return EXIT.badInput;
  }
  if (keys.length === 0) {
    process.stderr.write("rotate: the stack has no users CSV, or it is empty: nothing to rotate\n");
    return EXIT.badInput;
  }
  let chosen: ReadonlySet<string> | "all";
  if (r.all) {
    chosen = "all";
  } else {
    const m = matchUsers(r.users, keys);
    if (m.unknown.length > 0) {
      process.stderr.write(
        `rotate: [E_INPUT] no such user in the users CSV: ${m.unknown.join(", ")} (give name@domain, e.g. ${keys[0]})\n`,
      );
      return EXIT.badInput;
    }
    // In a split fleet each user belongs to exactly one stack.
    const elsewhere = shard ? m.keys.filter((k) => !inShard(k, shard)) : [];
    if (shard && elsewhere.length > 0) {
      const where = elsewhere.map((k) => `${k} (shard ${shardOf(k, shard.count)}/${shard.count})`).join(", ");
      process.stderr.write(
        `rotate: [E_INPUT] not managed by stack ${o.stack} (shard ${formatShard(shard)}): ${where}; run rotate on their stacks\n`,
      );
      return EXIT.badInput;
    }
    chosen = new Set(m.keys);
  }
  const count = chosen === "all" ? keys.filter((k) => inShard(k, shard)).length : chosen.size;
  const grace =
    r.graceHours ?? Number((await stackSetting(stack, o, "keystone-totp:rotationGraceHours")) ?? DEFAULT_GRACE_HOURS);
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

if (import.meta.main) await runMain("rotate", main);
