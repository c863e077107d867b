/**
 * The operator's entry point for running the keystone-totp program: `preview`, `up`,
 * `refresh` and `destroy` of a stack, through Pulumi's Automation API with the program
 * inline. The Pulumi CLI does the work (state, secrets, plugins); this process serves the
 * program to it, so no separate Node.js language host is needed.
 *
 * Usage: node scripts/provision.ts VERB [options]      (npm run provision -- VERB ...)
 */

import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import { load as loadYaml } from "js-yaml";
import program from "../index.ts";
import { runDoctor } from "../providers/doctor/run.ts";
import { KeystoneTotpError } from "../providers/errors.ts";
import { resolveKeystoneAuth } from "../providers/keystone/auth.ts";
import { DEFAULT_USERS_CSV } from "../providers/program/settings.ts";
import { readUsersCsv } from "../providers/users/csv.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Exit codes, shared with every script: see README, Exit codes. */
const EXIT = { ok: 0, failed: 1, badInput: 2, keystone: 3, mail: 4, usage: 64 } as const;

const HELP = `usage: npm run provision -- VERB [options]

Runs the keystone-totp program on a stack.

verbs:
  preview        show what would change; changes nothing, sends nothing
  up             apply: create, rotate and delete credentials, send enrollment mail
  refresh        read every credential back from Keystone (drops ones deleted outside Pulumi)
  destroy        delete every credential of the stack (restores MFA options)

options:
  --stack NAME           stack (default: dev); created if missing
  --config-file FILE     stack config file (default: Pulumi.NAME.yaml)
  --yes                  required for up, refresh and destroy when not on a terminal
  --expect-no-changes    fail if anything would change (up, preview, refresh)
  --continue-on-error    keep going past failed users and report them all (up, destroy)
  --diff                 show property-level differences
  --parallel N           resource operations at once (default: Pulumi's, 8 on 2 cores)
  --skip-doctor          do not run the preflight checks before 'up' (see npm run doctor)
  --help                 this text

exit codes: 0 ok, 1 failed, 2 bad input (CSV, config), 3 Keystone, 4 mail, 64 usage
`;

interface Options {
  verb: "preview" | "up" | "refresh" | "destroy";
  stack: string;
  configFile: string | undefined;
  yes: boolean;
  expectNoChanges: boolean;
  continueOnError: boolean;
  diff: boolean;
  parallel: number | undefined;
  skipDoctor: boolean;
}

function parseArgs(argv: string[]): Options {
  const verb = argv[0];
  if (!verb || verb === "--help" || verb === "-h" || argv.includes("--help")) {
    process.stdout.write(HELP);
    process.exit(EXIT.ok);
  }
  if (!["preview", "up", "refresh", "destroy"].includes(verb)) usage(`unknown verb '${verb}'`);
  const o: Options = {
    verb: verb as Options["verb"],
    stack: "dev",
    configFile: undefined,
    yes: false,
    expectNoChanges: false,
    continueOnError: false,
    diff: false,
    parallel: undefined,
    skipDoctor: /^(1|true|yes)$/i.test(process.env.KEYSTONE_TOTP_SKIP_DOCTOR ?? ""),
  };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    if (a === "--stack" || a === "-s") o.stack = value();
    else if (a === "--config-file") o.configFile = resolve(value());
    else if (a === "--yes" || a === "-y") o.yes = true;
    else if (a === "--expect-no-changes") o.expectNoChanges = true;
    else if (a === "--continue-on-error") o.continueOnError = true;
    else if (a === "--diff") o.diff = true;
    else if (a === "--non-interactive" || a === "--skip-preview") continue;
    else if (a === "--parallel") o.parallel = Number(value());
    else if (a === "--skip-doctor") o.skipDoctor = true;
    else usage(`unknown option '${a}'`);
  }
  if (o.verb !== "preview" && !o.yes && !process.stdin.isTTY) {
    usage(`'${o.verb}' changes the stack: pass --yes to confirm when not on a terminal`);
  }
  return o;
}

function usage(message: string): never {
  process.stderr.write(`provision: ${message}\n\n${HELP}`);
  process.exit(EXIT.usage);
}

/** Our errors carry their code in brackets; the first one seen decides the exit code. */
function exitCodeFromOutput(text: string): number {
  const m = /\[(E_[A-Z_]+)\]/.exec(text);
  const code = m?.[1] ?? "";
  if (/^E_(CSV|CSV_ROW|CONFIG|SECRET|INPUT|USER_NOT_FOUND)$/.test(code)) return EXIT.badInput;
  if (code.startsWith("E_KEYSTONE")) return EXIT.keystone;
  if (code === "E_SMTP" || code === "E_OUTBOX") return EXIT.mail;
  return EXIT.failed;
}

async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const answer = await rl.question(question);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

/**
 * Checks before an `up`, in order of cost: the users CSV (no network, so a bad file changes
 * nothing and reaches nobody), then the doctor's Keystone checks (reachable, TLS, token, may
 * manage credentials, TOTP enabled, clock). Returns an exit code, or undefined to go on.
 */
async function preflight(stack: Stack, o: Options): Promise<number | undefined> {
  // The Automation API cannot read an explicit --config-file; that file is plain YAML.
  let csvSetting: string | undefined;
  if (o.configFile) {
    const doc = loadYaml(readFileSync(o.configFile, "utf8")) as { config?: Record<string, unknown> } | null;
    const v = doc?.config?.["keystone-totp:usersCsv"];
    csvSetting = typeof v === "string" ? v : undefined;
  } else {
    csvSetting = (await stack.getAllConfig())["keystone-totp:usersCsv"]?.value;
  }
  const csv = resolve(REPO, csvSetting ?? DEFAULT_USERS_CSV);
  if (csvSetting !== undefined || existsSync(csv)) {
    try {
      readUsersCsv(csv);
    } catch (e) {
      if (!(e instanceof KeystoneTotpError)) throw e;
      process.stderr.write(`[${e.code}] ${e.message}\n`);
      return EXIT.badInput;
    }
  }
  if (o.skipDoctor) return undefined;
  try {
    resolveKeystoneAuth();
  } catch {
    // Settings come from the stack's openstack:* config, which the doctor does not read.
    process.stderr.write("doctor: skipped (Keystone settings are in the stack config, not OS_*/OS_CLOUD)\n");
    return undefined;
  }
  const report = await runDoctor({ skipMail: true, projectDir: REPO, credentialRoundTrip: false });
  const notOk = report.checks.filter((c) => c.status === "failure" || c.status === "warning");
  for (const c of notOk) {
    process.stderr.write(
      `doctor: ${c.status === "failure" ? "FAIL" : "WARN"} ${c.id}: ${c.message}${c.fix ? ` -> ${c.fix}` : ""}\n`,
    );
  }
  const n = report.counts;
  process.stderr.write(
    `doctor: ${n.ok} ok, ${n.warning} warning(s), ${n.failure} failure(s) (--skip-doctor to skip)\n`,
  );
  return report.ok ? undefined : report.exitCode;
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const pulumiCommand = await PulumiCommand.get({ skipVersionCheck: true });
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName: o.stack, projectName: "keystone-totp", program },
    { workDir: REPO, pulumiCommand },
  );
  let seen = "";
  const onOutput = (out: string) => {
    seen += out;
    process.stdout.write(out);
  };
  const common = {
    onOutput,
    color: process.stdout.isTTY ? ("always" as const) : ("never" as const),
    ...(o.configFile ? { configFile: o.configFile } : {}),
    ...(o.parallel ? { parallel: o.parallel } : {}),
    diff: o.diff,
  };
  try {
    switch (o.verb) {
      case "preview":
        await stack.preview({ ...common, expectNoChanges: o.expectNoChanges });
        break;
      case "up": {
        const stop = await preflight(stack, o);
        if (stop !== undefined) return stop;
        if (!o.yes) {
          await stack.preview(common);
          if (!(await confirm("Apply these changes? [y/N] "))) return EXIT.ok;
        }
        await stack.up({ ...common, expectNoChanges: o.expectNoChanges, continueOnError: o.continueOnError });
        break;
      }
      case "refresh":
        await stack.refresh({ ...common, expectNoChanges: o.expectNoChanges });
        break;
      case "destroy":
        await stack.destroy({ ...common, continueOnError: o.continueOnError });
        break;
    }
    return EXIT.ok;
  } catch (e) {
    // The engine's own output (already shown) names each failed resource and why.
    const text = `${seen}\n${e instanceof Error ? e.message : String(e)}`;
    const tail =
      e instanceof Error
        ? e.message
            .split("\n")
            .filter((l) => /error|\[E_/.test(l))
            .slice(-20)
        : [];
    if (tail.length > 0 && !seen.includes(tail[0] ?? "")) process.stderr.write(`${tail.join("\n")}\n`);
    return exitCodeFromOutput(text);
  }
}

process.exitCode = await main();
