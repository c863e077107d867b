/**
 * The options common to the commands that run the engine (provision, rotate, shards), with
 * their defaults, as `node:util` `parseArgs` takes them. Kept apart from engine.ts so that a
 * command can read them without loading the program and the Automation API.
 */
import { resolve } from "node:path";
import { isOn } from "../../lib/util/flag.ts";
import { wholeNumberOption } from "./cli.ts";

/** The stack every command uses without `--stack` (and `npm run demo` deploys). */
export const DEFAULT_STACK = "dev";
/** Most resource operations at once `--parallel` accepts. */
export const MAX_PARALLEL = 1024;

/** Options common to the commands that run the engine. */
export interface EngineOptions {
  readonly stack: string;
  readonly configFile: string | undefined;
  readonly yes: boolean;
  readonly expectNoChanges: boolean;
  readonly continueOnError: boolean;
  readonly diff: boolean;
  readonly parallel: number | undefined;
  readonly skipDoctor: boolean;
  /** Stream the engine's own output even on a terminal (else it goes to a log file there). */
  readonly verbose: boolean;
  /** `refresh` only: drop creates a killed run left pending (see docs/faults.md, After a killed run). */
  readonly clearPendingCreates: boolean;
  /** `up` only: run the engine even when the no-op skip finds nothing can change (docs/daily-run.md). */
  readonly force: boolean;
}

/** Defaults for {@link EngineOptions}, from the environment where it has a say. */
export function defaultEngineOptions(): EngineOptions {
  return {
    stack: DEFAULT_STACK,
    configFile: undefined,
    yes: false,
    expectNoChanges: false,
    continueOnError: false,
    diff: false,
    parallel: undefined,
    skipDoctor: isOn(process.env.KEYSTONE_TOTP_SKIP_DOCTOR),
    verbose: false,
    clearPendingCreates: false,
    force: false,
  };
}

/** The options common to the commands that run the engine, as `parseArgs` takes them. */
export const ENGINE_OPTIONS = {
  stack: { type: "string", short: "s" },
  "config-file": { type: "string" },
  yes: { type: "boolean", short: "y" },
  "expect-no-changes": { type: "boolean" },
  "continue-on-error": { type: "boolean" },
  diff: { type: "boolean" },
  parallel: { type: "string" },
  "skip-doctor": { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
  "clear-pending-creates": { type: "boolean" },
  force: { type: "boolean" },
  // Accepted for the habits of `pulumi` users; the commands never prompt off a terminal anyway.
  "non-interactive": { type: "boolean" },
  "skip-preview": { type: "boolean" },
} as const;

/** The values `parseArgs` gives for {@link ENGINE_OPTIONS}. */
export interface EngineOptionValues {
  readonly stack?: string | undefined;
  readonly "config-file"?: string | undefined;
  readonly yes?: boolean | undefined;
  readonly "expect-no-changes"?: boolean | undefined;
  readonly "continue-on-error"?: boolean | undefined;
  readonly diff?: boolean | undefined;
  readonly parallel?: string | undefined;
  readonly "skip-doctor"?: boolean | undefined;
  readonly verbose?: boolean | undefined;
  readonly "clear-pending-creates"?: boolean | undefined;
  readonly force?: boolean | undefined;
}

/**
 * {@link EngineOptions} from parsed {@link ENGINE_OPTIONS}, over {@link defaultEngineOptions}.
 *
 * @throws {UsageError} `--parallel` not a whole number from 1 to {@link MAX_PARALLEL}.
 */
export function engineOptionsFrom(v: EngineOptionValues): EngineOptions {
  const d = defaultEngineOptions();
  return {
    stack: v.stack ?? d.stack,
    configFile: v["config-file"] === undefined ? d.configFile : resolve(v["config-file"]),
    yes: v.yes ?? d.yes,
    expectNoChanges: v["expect-no-changes"] ?? d.expectNoChanges,
    continueOnError: v["continue-on-error"] ?? d.continueOnError,
    diff: v.diff ?? d.diff,
    parallel: v.parallel === undefined ? d.parallel : wholeNumberOption("--parallel", v.parallel, 1, MAX_PARALLEL),
    skipDoctor: v["skip-doctor"] || d.skipDoctor,
    verbose: v.verbose ?? d.verbose,
    clearPendingCreates: v["clear-pending-creates"] ?? d.clearPendingCreates,
    force: v.force || d.force,
  };
}

/** Help text for the common options. */
export const ENGINE_OPTIONS_HELP = `  --stack NAME           stack (default: ${DEFAULT_STACK}); created if missing
  --config-file FILE     stack config file (default: Pulumi.NAME.yaml)
  --yes                  required to change anything when not on a terminal
  --expect-no-changes    fail if anything would change
  --continue-on-error    keep going past failed users and report them all
  --diff                 show property-level differences
  --parallel N           resource operations at once (default: Pulumi's, 8 on 2 cores)
  --skip-doctor          do not run the preflight checks first (see npm run doctor)
  --verbose              stream the engine's output on a terminal too (else: progress bar,
                         with the engine's output in .local/logs/)
  --clear-pending-creates  (refresh) forget creates a killed run left pending; see docs/faults.md,
                         "After a killed run"
  --force                (up) run the engine even when nothing can change (the no-op skip,
                         docs/daily-run.md; KEYSTONE_TOTP_NO_SKIP=1 turns the skip off)`;
