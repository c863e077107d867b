/**
 * What the operator commands (provision, rotate) share: opening a stack with the program
 * inline, the preflight before an `up`, running an engine verb with live progress and a
 * summary, and turning failures into exit codes.
 */
import { execFile } from "node:child_process";
import { chmodSync, createWriteStream, existsSync, mkdirSync, type WriteStream } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type ConfigMap, LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import {
  ConfigError,
  codeInEngineText,
  EXIT,
  type ExitCode,
  exitCodeForCode,
  KeystoneTotpError,
} from "../../lib/errors.ts";
import { resolveKeystoneAuth } from "../../lib/keystone/auth.ts";
import { readUsersCsv, type UserRow } from "../../lib/users/csv.ts";
import { runDoctor } from "../doctor/run.ts";
import { DEFAULT_USERS_CSV } from "../fleet/settings.ts";
import program, { type ProgramOptions } from "../program/program.ts";
import {
  formatUnconfirmedDelivery,
  type UnconfirmedUser,
  unconfirmedDeliveriesOf,
  unconfirmedExitCode,
} from "./delivery-unconfirmed.ts";
import { useLocalKeystoneWithNote } from "./local-keystone.ts";
import { loginOnceForRun } from "./mfa-login.ts";
import type { EngineOptions } from "./options.ts";
import { formatSummary, Progress, type RunSummary } from "./progress.ts";
import { formatRetireFailure, type RetireFailedUser, retireFailedExitCode, retireFailuresOf } from "./retire-failed.ts";
import { readSettingsFile, scalarSetting, stackSettingsPath } from "./settings-file.ts";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** Most bytes of `pulumi config --json` output read: settings, not data. */
const CONFIG_OUTPUT_MAX_BYTES = 16 * 1024 * 1024;
const execFileAsync = promisify(execFile);
/** Engine verbs. */
export type Verb = "preview" | "up" | "refresh" | "destroy";

/** The exit code for the engine's output: the first error code of ours in it decides. */
export function exitCodeFromOutput(text: string): ExitCode {
  return exitCodeForCode(codeInEngineText(text)?.code);
}

/** Asks a yes/no question on the terminal. */
export async function confirm(question: string): Promise<boolean> {
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(question);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

/**
 * Opens the stack, with the program inline. `provision` creates it when missing; commands
 * that only make sense on an existing stack (`status`, `rotate`) pass `create: false`, so that
 * a mistyped name is an error rather than a new, empty stack.
 *
 * When the operator configured no Keystone (no `OS_AUTH_URL`, `OS_CLOUD` or `openstack:*`
 * config in the stack or `configFile`), the local Keystone the demo uses becomes the default
 * for this process and the providers it starts (see local-keystone.ts). An operator account
 * with MFA logs in here, once for the run (see mfa-login.ts).
 *
 * @throws {ConfigError} `E_CONFIG` when `create` is false and there is no such stack.
 */
export async function openStack(
  name: string,
  programOptions: () => ProgramOptions,
  o: { readonly create?: boolean; readonly configFile?: string | undefined } = {},
): Promise<Stack> {
  // A settings file Pulumi would refuse is refused here first, naming its line and column,
  // before a stack is created or selected: bad input changes nothing.
  const fromFile = o.configFile ? readSettingsFile(o.configFile) : undefined;
  const own = stackSettingsPath(REPO, name);
  if (!o.configFile && existsSync(own)) readSettingsFile(own);
  const stack = await selectStack(name, programOptions, o.create ?? true);
  // Read once (each read runs the Pulumi CLI): the keys decide the local default, the values
  // (openstack:*) the one MFA login of the run, whose token reaches the engine and providers.
  const all = fromFile ? undefined : await allConfigOf(stack);
  const keys = Object.keys(all ?? fromFile ?? {});
  useLocalKeystoneWithNote("keystone-totp", { repo: REPO, configKeys: keys });
  const config = (key: string) => (all ? all[key]?.value : scalarSetting(fromFile ?? {}, key));
  await loginOnceForRun("keystone-totp", { config });
  return stack;
}

async function selectStack(name: string, programOptions: () => ProgramOptions, create: boolean): Promise<Stack> {
  const pulumiCommand = await PulumiCommand.get({ skipVersionCheck: true });
  const args = { stackName: name, projectName: "keystone-totp", program: () => program(programOptions()) };
  const ws = { workDir: REPO, pulumiCommand };
  if (create) return LocalWorkspace.createOrSelectStack(args, ws);
  try {
    return await LocalWorkspace.selectStack(args, ws);
  } catch (e) {
    if (!/no stack named/i.test(String((e as Error)?.message ?? e))) throw e;
    throw new ConfigError(
      `there is no stack named '${name}' in this backend: check --stack, or create it with ` +
        `'npm run provision -- up --stack ${name}'`,
    );
  }
}

// Each read of a stack's config is a `pulumi config --show-secrets` process (with the
// passphrase's key derivation): a `provision up` asked three times for the same settings.
const CONFIG_OF = new WeakMap<Stack, Promise<ConfigMap>>();

/**
 * The stack's config, decrypted, read once per process and Stack: no command here changes a
 * stack's settings after opening it (`shards` sets them through its own workspace, before the
 * `provision` process that reads them starts).
 */
export function allConfigOf(stack: Stack): Promise<ConfigMap> {
  let all = CONFIG_OF.get(stack);
  if (!all) {
    all = stack.getAllConfig();
    CONFIG_OF.set(stack, all);
    // A failed read is not kept: the next caller asks the CLI again.
    all.catch(() => CONFIG_OF.delete(stack));
  }
  return all;
}

/**
 * The settings of `file` (a `--config-file`) for `stack`, secrets decrypted, as the program
 * gets them when run with that file: `pulumi config --show-secrets --config-file` (the
 * Automation API's own read knows no such file). One `pulumi` process: for a command that needs
 * a secret from the file, such as Keystone's password; plain settings are read from the file
 * itself ({@link stackConfig}).
 *
 * @throws {ConfigError} `E_CONFIG` naming the file when the CLI cannot read it (a wrong
 *   passphrase, a file of another stack), with the CLI's last line of error, never its output.
 */
export async function allConfigOfFile(stack: Stack, file: string): Promise<ConfigMap> {
  const ws = stack.workspace as LocalWorkspace;
  const args = [
    "config",
    "--show-secrets",
    "--json",
    "--stack",
    stack.name,
    "--config-file",
    file,
    "--non-interactive",
  ];
  try {
    const { stdout } = await execFileAsync(ws.pulumiCommand.command, args, {
      cwd: ws.workDir,
      env: { ...process.env, ...ws.envVars, PULUMI_SKIP_UPDATE_CHECK: "true" },
      maxBuffer: CONFIG_OUTPUT_MAX_BYTES,
    });
    return JSON.parse(stdout) as ConfigMap;
  } catch (e) {
    // Neither stdout (the secrets) nor the exception (which carries it) goes into the error.
    const stderr = String((e as { stderr?: unknown }).stderr ?? "").trim();
    throw new ConfigError(
      `${file}: pulumi could not read the settings of stack '${stack.name}' from it${stderr ? ` (${stderr.split("\n").pop()})` : ""}: check --config-file and the stack's passphrase`,
    );
  }
}

/**
 * The stack's config, read once: from --config-file (plain YAML; the Automation API cannot
 * read it) or the stack. Returns a reader of full keys (`keystone-totp:usersCsv`).
 */
export async function stackConfig(
  stack: Stack,
  o: Pick<EngineOptions, "configFile">,
): Promise<(key: string) => string | undefined> {
  if (o.configFile) {
    const fromFile = readSettingsFile(o.configFile);
    return (key) => scalarSetting(fromFile, key);
  }
  const all = await allConfigOf(stack);
  return (key) => all[key]?.value;
}

/** A stack config value: see {@link stackConfig}. */
export async function stackSetting(stack: Stack, o: EngineOptions, key: string): Promise<string | undefined> {
  return (await stackConfig(stack, o))(key);
}

/**
 * Reads and validates the stack's users CSV without any network access. Undefined when the
 * stack has none (explicit credentials only).
 *
 * @throws {CsvError} naming file, line, column and user.
 */
export async function readStackCsv(stack: Stack, o: EngineOptions): Promise<UserRow[] | undefined> {
  const setting = await stackSetting(stack, o, "keystone-totp:usersCsv");
  const csv = resolve(REPO, setting ?? DEFAULT_USERS_CSV);
  if (setting === undefined && !existsSync(csv)) return undefined;
  return readUsersCsv(csv);
}

/**
 * Checks before an `up`, in order of cost: the users CSV (no network, so a bad file changes
 * nothing and reaches nobody), then the doctor's Keystone checks (reachable, TLS, token, may
 * manage credentials, TOTP enabled, clock). Returns an exit code, or undefined to go on.
 */
export async function preflight(stack: Stack, o: EngineOptions): Promise<number | undefined> {
  try {
    await readStackCsv(stack, o);
  } catch (e) {
    if (!(e instanceof KeystoneTotpError)) throw e;
    process.stderr.write(`[${e.code}] ${e.message}\n`);
    return exitCodeForCode(e.code);
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
      `doctor: ${c.status === "failure" ? "FAIL" : "WARN"} ${c.id}${c.code ? ` [${c.code}]` : ""}: ${c.message}${c.fix ? ` -> ${c.fix}` : ""}\n`,
    );
  }
  const n = report.counts;
  process.stderr.write(
    `doctor: ${n.ok} ok, ${n.warning} warning(s), ${n.failure} failure(s) (--skip-doctor to skip)\n`,
  );
  return report.ok ? undefined : report.exitCode;
}

function logFile(stack: string, verb: string): { path: string; stream: WriteStream } {
  const dir = join(REPO, ".local", "logs");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, `${verb}-${stack}-${new Date().toISOString().replace(/[:.]/g, "")}.log`);
  return { path, stream: createWriteStream(path, { mode: 0o600 }) };
}

/** The result of {@link runVerb}. */
export interface RunOutcome {
  readonly exitCode: number;
  readonly summary: RunSummary | undefined;
  /** Whether the engine ran the verb to its end (false: stopped before, or declined). */
  readonly completed: boolean;
}

/**
 * Runs one engine verb with progress and a summary. `setPlan` is handed to the program
 * options by the caller so that the program can tell the progress how many users there are.
 */
export async function runVerb(
  stack: Stack,
  verb: Verb,
  o: EngineOptions,
  progress: Progress,
  extra: { readonly confirmQuestion?: string } = {},
): Promise<RunOutcome> {
  const quiet = Boolean(process.stdout.isTTY) && !o.verbose;
  const log = quiet ? logFile(o.stack, verb) : undefined;
  let seen = "";
  const onOutput = (out: string) => {
    seen += out;
    if (log) log.stream.write(out);
    else process.stdout.write(out);
  };
  const common = {
    onOutput,
    onEvent: (e: Parameters<Progress["onEvent"]>[0]) => progress.onEvent(e),
    color: quiet || !process.stdout.isTTY ? ("never" as const) : ("always" as const),
    ...(o.configFile ? { configFile: o.configFile } : {}),
    ...(o.parallel ? { parallel: o.parallel } : {}),
    diff: o.diff,
  };
  let exitCode: number = EXIT.ok;
  let failure = "";
  let retireFailed: RetireFailedUser[] = [];
  let unconfirmed: UnconfirmedUser[] = [];
  let completed = false;
  try {
    switch (verb) {
      case "preview":
        await stack.preview({ ...common, expectNoChanges: o.expectNoChanges });
        break;
      case "up": {
        const stop = await preflight(stack, o);
        if (stop !== undefined) return { exitCode: stop, summary: undefined, completed: false };
        if (!o.yes) {
          // Show what the confirmation is about: on a terminal the engine's own output goes to
          // the log, so the preview's summary (who would be enrolled, rotated, ...) is printed.
          const look = new Progress("preview", o.stack, new Writable({ write: (_c, _e, done) => done() }), false);
          await stack.preview({ ...common, onEvent: (e) => look.onEvent(e) });
          process.stdout.write(formatSummary(look.finish()));
          if (!(await confirm(extra.confirmQuestion ?? "Apply these changes? [y/N] "))) {
            return { exitCode: EXIT.ok, summary: undefined, completed: false };
          }
        }
        const result = await stack.up({
          ...common,
          expectNoChanges: o.expectNoChanges,
          continueOnError: o.continueOnError,
        });
        // Old credentials Keystone would not delete: the run kept its record, but is not a success.
        retireFailed = retireFailuresOf(result.outputs);
        // Messages that may not have arrived: their credentials were kept, the next run resends.
        unconfirmed = unconfirmedDeliveriesOf(result.outputs);
        completed = result.summary.result === "succeeded";
        break;
      }
      case "refresh":
        await stack.refresh({
          ...common,
          expectNoChanges: o.expectNoChanges,
          ...(o.clearPendingCreates ? { clearPendingCreates: true } : {}),
        });
        break;
      case "destroy":
        await stack.destroy({ ...common, continueOnError: o.continueOnError });
        break;
    }
  } catch (e) {
    // The engine's own output (already shown, or in the log) names each failed resource and why.
    failure = e instanceof Error ? e.message : String(e);
    const text = `${seen}\n${failure}`;
    const tail =
      e instanceof Error
        ? e.message
            .split("\n")
            .filter((l) => /error/.test(l) || codeInEngineText(l) !== undefined)
            .slice(-20)
        : [];
    if (tail.length > 0 && (quiet || !seen.includes(tail[0] ?? ""))) process.stderr.write(`${tail.join("\n")}\n`);
    exitCode = exitCodeFromOutput(text);
  }
  if (/currently locked by \d+ lock/.test(`${seen}\n${failure}`)) {
    process.stderr.write(
      `hint: the stack is locked: by a run in progress, or by a killed run. 'npm run unlock -- --stack ${o.stack}' ` +
        `removes the lock only if the process that took it is gone, then run refresh --clear-pending-creates ` +
        `(docs/faults.md, "After a killed run")\n`,
    );
  } else if (/pending operations? from previous deployment/.test(seen)) {
    process.stderr.write(
      `hint: a killed run left pending operations: run 'npm run provision -- refresh --stack ${o.stack} ` +
        `--clear-pending-creates --yes' (docs/faults.md, "After a killed run")\n`,
    );
  }
  const summary = progress.finish();
  process.stdout.write(formatSummary(summary));
  if (log) {
    log.stream.end();
    process.stderr.write(`engine output: ${log.path}\n`);
  }
  for (const f of retireFailed) process.stderr.write(`${formatRetireFailure(f)}\n`);
  for (const u of unconfirmed) process.stderr.write(`${formatUnconfirmedDelivery(u)}\n`);
  // A leaked secret still valid (exit 3) comes before a message to send again (exit 4).
  if (retireFailed.length > 0 && exitCode === EXIT.ok) exitCode = retireFailedExitCode(retireFailed);
  if (unconfirmed.length > 0 && exitCode === EXIT.ok) exitCode = unconfirmedExitCode();
  return { exitCode, summary, completed };
}
