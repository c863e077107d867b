/**
 * The operator's entry point for running the keystone-totp program: `preview`, `up`,
 * `refresh` and `destroy` of a stack, through Pulumi's Automation API with the program
 * inline. The Pulumi CLI does the work (state, secrets, plugins); this process serves the
 * program to it, so no separate Node.js language host is needed.
 *
 * Usage: node scripts/provision.ts VERB [options]      (npm run provision -- VERB ...)
 */
import {
  defaultEngineOptions,
  ENGINE_OPTIONS_HELP,
  type EngineOptions,
  EXIT,
  openStack,
  parseEngineOption,
  runVerb,
  type Verb,
} from "../operator/commands/engine.ts";
import { Progress } from "../operator/commands/progress.ts";

const HELP = `usage: npm run provision -- VERB [options]

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

Shows a progress bar on a terminal (a line every 10 % elsewhere) and a summary at the end.
exit codes: 0 ok, 1 failed, 2 bad input (CSV, config), 3 Keystone, 4 mail, 64 usage
`;

function usage(message: string): never {
  process.stderr.write(`provision: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
}

function parseArgs(argv: string[]): { verb: Verb; o: EngineOptions } {
  const verb = argv[0];
  if (!verb || verb === "--help" || verb === "-h" || argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP);
    process.exit(EXIT.ok);
  }
  if (!["preview", "up", "refresh", "destroy"].includes(verb)) usage(`unknown verb '${verb}'`);
  const o = defaultEngineOptions() as { -readonly [K in keyof EngineOptions]: EngineOptions[K] };
  for (let i = 1; i < argv.length; i++) {
    const next = parseEngineOption(argv, i, o, usage);
    if (next < 0) usage(`unknown option '${argv[i]}'`);
    i = next;
  }
  if (verb !== "preview" && !o.yes && !process.stdin.isTTY) {
    usage(`'${verb}' changes the stack: pass --yes to confirm when not on a terminal`);
  }
  return { verb: verb as Verb, o };
}

async function main(): Promise<number> {
  const { verb, o } = parseArgs(process.argv.slice(2));
  const progress = new Progress(verb, o.stack);
  const stack = await openStack(o.stack, () => ({ onPlan: (p) => progress.setPlan(p) }), { configFile: o.configFile });
  return (await runVerb(stack, verb, o, progress)).exitCode;
}

process.exitCode = await main();
