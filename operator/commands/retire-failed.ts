/**
 * Failed retirements, as the program's `retireFailed` stack output lists them: users whose
 * replaced credentials (a leaked secret, after `rotate --grace-hours 0`) are still valid
 * because Keystone refused their DELETE. The run itself succeeded (the messages it sent are
 * on record), so the operator commands read this list after `up` and end non-zero on it.
 */
import { EXIT, type ExitCode, exitCodeForCode } from "../../lib/errors.ts";

/** The stack output's name (see index.ts). */
export const RETIRE_FAILED_OUTPUT = "retireFailed";

/** One user of the `retireFailed` stack output. */
export interface RetireFailedUser {
  /** The user's key (`name@domain`, the resource's name). */
  readonly user: string;
  /** The credentials still valid that should have been deleted. */
  readonly ids: readonly string[];
  /** When the DELETE failed (ISO 8601). */
  readonly at: string;
  readonly code?: string | undefined;
  readonly error: string;
}

/** The failed retirements in a stack's outputs (`up`'s result); none when the output is absent. */
export function retireFailuresOf(
  outputs: Readonly<Record<string, { value?: unknown } | undefined>>,
): RetireFailedUser[] {
  const v = outputs[RETIRE_FAILED_OUTPUT]?.value;
  if (!Array.isArray(v)) return [];
  return v.flatMap((f: Record<string, unknown>) =>
    f && typeof f.user === "string" && Array.isArray(f.ids)
      ? [
          {
            user: f.user,
            ids: f.ids.filter((id): id is string => typeof id === "string"),
            at: String(f.at ?? ""),
            code: typeof f.code === "string" ? f.code : undefined,
            error: String(f.error ?? ""),
          },
        ]
      : [],
  );
}

/** One line for the operator: who, which credentials, why, and what to do. */
export function formatRetireFailure(f: RetireFailedUser): string {
  const ids = f.ids.join(", ");
  return (
    `retire failed: ${f.user}: old credential${f.ids.length === 1 ? "" : "s"} ${ids} still valid: ` +
    `${f.code ? `[${f.code}] ` : ""}${f.error} (at ${f.at}). The next 'up' deletes ${f.ids.length === 1 ? "it" : "them"} ` +
    `(nothing is sent again); if Keystone keeps refusing, delete by hand: openstack credential delete ${f.ids.join(" ")}`
  );
}

/**
 * The exit code for failed retirements: that of the first one's code, else Keystone's (a
 * DELETE is a Keystone call).
 */
export function retireFailedExitCode(fs: readonly RetireFailedUser[]): ExitCode {
  return exitCodeForCode(fs[0]?.code, EXIT.keystone);
}
