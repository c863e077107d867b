/**
 * The shape of a preflight check result, shared by every `doctor` check.
 *
 * A check never throws for what it examines: it reports ok, warning, failure or skipped,
 * with what it found and what to do. Results carry no secret (no password, token, TOTP
 * secret or SMTP URL with its password), so they can be printed and stored as they are.
 */
import { type ErrorCode, EXIT, EXIT_CODES, type ExitCode } from "../../lib/errors.ts";

/** How a check came out. */
export type CheckStatus =
  /** Nothing to do. */
  | "ok"
  /** Works, but something will hurt some users or some day; the `fix` says what to do. */
  | "warning"
  /** Logins or enrollment will fail; the `fix` says what to do. */
  | "failure"
  /** Not run, because an earlier check failed or it was not asked for. */
  | "skipped";

/** One check's result. */
export interface CheckResult {
  /** Stable identifier, e.g. `keystone.totp-method`; scripts and the README refer to it. */
  readonly id: string;
  /** Short human title, e.g. `TOTP method`. */
  readonly title: string;
  readonly status: CheckStatus;
  /** What was found. Never contains a secret. */
  readonly message: string;
  /** What to do, for warnings and failures. */
  readonly fix?: string | undefined;
  /** For failures: the error code that decides the exit code (see {@link EXIT_CODES}). */
  readonly code?: ErrorCode | undefined;
  /** Machine-readable facts for `--json` (counts, versions, seconds). Never a secret. */
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

/** Fields of a result besides its id, title and status. */
export interface CheckFields {
  readonly fix?: string | undefined;
  readonly code?: ErrorCode | undefined;
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

/** Builds a result, leaving out fields that are undefined (so JSON output stays tidy). */
export function result(
  id: string,
  title: string,
  status: CheckStatus,
  message: string,
  fields: CheckFields = {},
): CheckResult {
  return {
    id,
    title,
    status,
    message,
    ...(fields.fix !== undefined ? { fix: fields.fix } : {}),
    ...(fields.code !== undefined ? { code: fields.code } : {}),
    ...(fields.details !== undefined ? { details: fields.details } : {}),
  };
}

/** Exit code when a failure carries no error code. */
export const EXIT_OTHER_FAILURE = EXIT.failed;

/**
 * The process exit code for a list of results: 0 without failures, else the exit code of the
 * first failure in order (2 bad input, 3 Keystone, 4 mail, 1 anything else). Warnings never
 * change the exit code.
 */
export function exitCodeForResults(results: readonly CheckResult[]): ExitCode {
  const first = results.find((r) => r.status === "failure");
  if (!first) return EXIT.ok;
  return first.code !== undefined ? EXIT_CODES[first.code] : EXIT_OTHER_FAILURE;
}

/** Counts of results by status. */
export function countByStatus(results: readonly CheckResult[]): Record<CheckStatus, number> {
  const counts: Record<CheckStatus, number> = { ok: 0, warning: 0, failure: 0, skipped: 0 };
  for (const r of results) counts[r.status]++;
  return counts;
}
