/**
 * The operator's entry point for running the keystone-totp program: `preview`, `up`,
 * `refresh` and `destroy` of a stack, through Pulumi's Automation API with the program
 * inline. The Pulumi CLI does the work (state, secrets, plugins); this process serves the
 * program to it, so no separate Node.js language host is needed.
 *
 * Usage: node scripts/provision.ts VERB [options]      (npm run provision -- VERB ...)
 */
import { EXIT, UsageError } from "../lib/errors.ts";
import { parseCommandLine, runCommand } from "../operator/commands/cli.ts";
import { openStack, REPO, runVerb, stackConfig, type Verb } from "../operator/commands/engine.ts";
import { clearRecord, configTextOf, planSkips, recordSuccess } from "../operator/commands/noop-skip.ts";
import {
  ENGINE_OPTIONS,
  ENGINE_OPTIONS_HELP,
  type EngineOptions,
  engineOptionsFrom,
} from "../operator/commands/options.ts";
import { Progress } from "../operator/commands/progress.ts";

const VERBS: readonly Verb[] = ["preview", "up", "refresh", "destroy"];

export const HELP = `usage: npm run provision -- VERB [options]

Runs the keystone-totp program on a stack: the users CSV becomes one TOTP credential and one
enrollment message per user; due rotations happen; old credentials past their grace window
are retired.

verbs:
  preview        show what would change (who would be enrolled, rotated, retired); changes
                 nothing, sends nothing
  up             apply: create, rotate and delete credentials, send enrollment mail
  refresh        read every credential back from Keystone (drops ones deleted outside Pulumi)
  destroy        delete every credential of the stack (restores MFA options)

options:
${ENGINE_OPTIONS_HELP}
  --help                 this text

environment:
  KEYSTONE_TOTP_NOW      pretend it is this time (ISO 8601) when deciding rotations: rehearse
                         what a run on that day would do, with preview
  KEYSTONE_TOTP_NO_SKIP  1: the no-op skip off (no check, no record); --force runs once

'up' first checks whether anything can change (CSV rows, settings, the users in Keystone,
the code, a rotation or retirement due, work left pending): when nothing can, the engine is
not started and the stack is reported skipped (docs/daily-run.md).

Shows a progress bar on a terminal (a line every 10 % elsewhere) and a summary at the end.
exit codes: 0 ok, 1 failed, 2 bad input (CSV, config), 3 Keystone, 4 mail, 64 usage
(README, Exit codes)
`;

/**
 * The verb and options of a provision command line.
 *
 * @throws {UsageError} an unknown verb or option, a bad value, or a change off a terminal without --yes.
 */
export function parseProvisionArgs(
  argv: readonly string[],
  isTTY = Boolean(process.stdin.isTTY),
): {
  verb: Verb;
  o: EngineOptions;
} {
  const { values, positionals } = parseCommandLine(
    { options: ENGINE_OPTIONS, positionals: [1, 1], positionalsName: `a verb: ${VERBS.join(", ")}` },
    argv,
  );
  const verb = positionals[0] as Verb;
  if (!VERBS.includes(verb)) throw new UsageError(`unknown verb '${verb}' (verbs: ${VERBS.join(", ")})`);
  const o = engineOptionsFrom(values);
  if (verb !== "preview" && !o.yes && !isTTY) {
    throw new UsageError(`'${verb}' changes the stack: pass --yes to confirm when not on a terminal`, "--yes");
  }
  return { verb, o };
}

async function main(argv: readonly string[]): Promise<number> {
  const { verb, o } = parseProvisionArgs(argv);
  const progress = new Progress(verb, o.stack);
  const stack = await openStack(o.stack, () => ({ onPlan: (p) => progress.setPlan(p) }), { configFile: o.configFile });
  if (verb !== "up") return (await runVerb(stack, verb, o, progress)).exitCode;
  const say = (line: string) => process.stderr.write(`keystone-totp: ${line}\n`);
  const config = await stackConfig(stack, o);
  const skips = await planSkips(
    stack.workspace,
    [{ stack: o.stack, configText: configTextOf(REPO, o.stack, o.configFile), config }],
    { projectDir: REPO, force: o.force, say },
  );
  try {
    if (skips.skipped.has(o.stack)) return EXIT.ok;
    // A run killed from here on must leave no record: the state it leaves is not the one recorded.
    await clearRecord(skips, o.stack, say);
    const outcome = await runVerb(stack, verb, o, progress);
    if (outcome.completed && outcome.exitCode === EXIT.ok) await recordSuccess(stack, skips, say);
    return outcome.exitCode;
  } finally {
    await skips.store?.close();
  }
}

if (import.meta.main) await runCommand({ name: "provision", help: HELP }, main);
