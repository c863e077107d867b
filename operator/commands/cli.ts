/**
 * The one entry of every operator command in `scripts/`: the command line is parsed with
 * `node:util` `parseArgs` (an unknown option, a missing or malformed value is an `E_USAGE`
 * error naming the option), `--help` prints the command's help, and whatever the command
 * returns or throws becomes an exit code of the one table, `EXIT_CODES` in lib/errors.ts.
 *
 * A failure is printed as one line, `NAME: [E_CODE] message`: the message never holds a secret
 * (see lib/errors.ts), and the stack trace only appears when `DEBUG` is set, so that it never
 * buries the message an operator needs.
 *
 * On Pulumi's PostgreSQL backend it sets PULUMI_DIY_BACKEND_PARALLEL=1 first, when unset, for
 * every Pulumi CLI the command starts: see `serialisePostgresListing` in operator/backend/bucket.ts.
 *
 * @see README.md, Exit codes
 */
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import {
  EngineBoundaryError,
  EXIT,
  type ExitCode,
  exitCodeFor,
  KeystoneTotpError,
  UsageError,
} from "../../lib/errors.ts";
import { serialisePostgresListing } from "../backend/bucket.ts";

/** Environment variable that adds stack traces (and causes) to a failure's line. */
export const DEBUG_ENV = "DEBUG";

/** What every command declares about itself. */
export interface CommandSpec {
  /** The command's name as operators know it (`provision`); starts every error line. */
  readonly name: string;
  /** The `--help` text, also printed after a usage error. */
  readonly help: string;
}

/** What {@link parseCommandLine} accepts. */
export interface CommandLineSpec<O extends ParseArgsOptionsConfig> {
  /** The options, as `parseArgs` takes them; `--help` / `-h` is added. */
  readonly options: O;
  /** How many positional arguments are allowed: `[min, max]`; default `[0, 0]`. */
  readonly positionals?: readonly [number, number];
  /** What the positionals are, for the message when there are too few (e.g. `USER@DOMAIN and CODE`). */
  readonly positionalsName?: string;
}

const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;

/** The result of {@link parseCommandLine}: option values by long name, and the positionals. */
export type CommandLine<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: O & typeof HELP_OPTION; allowPositionals: true; strict: true }>
>;

/** Whether the operator asked for help: `--help` or `-h` anywhere before a `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

/**
 * Parses a command line strictly.
 *
 * @throws {UsageError} naming the unknown option, the option without its value (or with one it
 *   does not take), or the unexpected argument.
 */
export function parseCommandLine<const O extends ParseArgsOptionsConfig>(
  spec: CommandLineSpec<O>,
  argv: readonly string[],
): CommandLine<O> {
  let parsed: CommandLine<O>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...spec.options, ...HELP_OPTION },
      allowPositionals: true,
      strict: true,
    }) as CommandLine<O>;
  } catch (e) {
    throw usageFromParseError(e);
  }
  const [min, max] = spec.positionals ?? [0, 0];
  const extra = parsed.positionals[max];
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  if (parsed.positionals.length < min) {
    throw new UsageError(`expected ${spec.positionalsName ?? `${min} argument(s)`}`);
  }
  return parsed;
}

/** `parseArgs`'s own errors, as one line that names the option and says what is wrong. */
function usageFromParseError(e: unknown): unknown {
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  const option = /'(?:-\w, )?(--?[\w-]+)/.exec(message)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return new UsageError(`unknown option '${option ?? message}'`, option);
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return new UsageError(`${option} takes no value`, option);
      if (/ambiguous/.test(message)) {
        return new UsageError(`${option} needs a value (to give one starting with '-', write ${option}=VALUE)`, option);
      }
      return new UsageError(`${option} needs a value`, option);
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return new UsageError(message);
    default:
      return e;
  }
}

/**
 * A whole number within bounds, from an option's text.
 *
 * @throws {UsageError} naming the option and the range.
 */
export function wholeNumberOption(option: string, text: string, min: number, max: number): number {
  const n = /^\s*[0-9]{1,9}\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${option} needs a whole number from ${min} to ${max}, not '${text}'`, option);
  }
  return n;
}

/**
 * A value that must not be empty.
 *
 * @throws {UsageError} naming the option.
 */
export function nonEmptyOption(option: string, text: string | undefined): string | undefined {
  if (text === "") throw new UsageError(`${option} needs a value`, option);
  return text;
}

/**
 * The line(s) printed for a failure: `NAME: [E_CODE] message` for our errors (the help after a
 * usage error), `NAME: unexpected error: message` for anything else; stack traces and causes
 * only when `debug`.
 */
export function formatFailure(spec: CommandSpec, e: unknown, debug = false): string {
  let text: string;
  if (e instanceof KeystoneTotpError) {
    // An error on its way across the engine keeps its own message apart from the encoded one.
    const reason = e instanceof EngineBoundaryError ? e.reason : e.message;
    text = `${spec.name}: [${e.code}] ${reason}\n`;
    if (e instanceof UsageError) text += `\n${spec.help}`;
  } else {
    text = `${spec.name}: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`;
  }
  if (debug) {
    for (let c: unknown = e, depth = 0; c !== undefined && depth < 5; c = (c as Error).cause, depth++) {
      text += `${depth === 0 ? "" : "caused by: "}${c instanceof Error ? (c.stack ?? c.message) : String(c)}\n`;
    }
  }
  return text;
}

/** Whether `DEBUG` asks for stack traces. */
function debugOn(env: NodeJS.ProcessEnv): boolean {
  const v = env[DEBUG_ENV];
  return v !== undefined && v !== "" && !/^(0|false|no)$/i.test(v);
}

/**
 * Runs a command as the process's entry point: `--help` prints `spec.help`; otherwise `main`'s
 * result is the exit code, and a failure is printed by {@link formatFailure} and exits with its
 * row of the table (`E_USAGE` 64, bad input 2, Keystone 3, mail 4, anything else 1).
 */
export async function runCommand(
  spec: CommandSpec,
  main: (argv: readonly string[]) => Promise<number>,
  argv: readonly string[] = process.argv.slice(2),
): Promise<void> {
  if (wantsHelp(argv)) {
    process.stdout.write(spec.help);
    process.exitCode = EXIT.ok;
    return;
  }
  serialisePostgresListing();
  try {
    process.exitCode = await main(argv);
  } catch (e) {
    process.stderr.write(formatFailure(spec, e, debugOn(process.env)));
    process.exitCode = exitCodeFor(e) satisfies ExitCode;
  }
}
