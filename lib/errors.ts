/**
 * The error hierarchy of keystone-totp.
 *
 * Every error the tool raises on purpose is a {@link KeystoneTotpError} with a stable
 * `code` that scripts map to exit codes (see {@link exitCodeFor}). Messages say what failed,
 * where, and what to do; they never contain a secret, a password or a token.
 */

/** Most users named in one message; the error's `users` field has them all. */
export const MAX_LISTED_USERS = 100;

/** Stable error codes. Scripts and operators may match on these; never rename one. */
export type ErrorCode =
  /** The tool's own configuration (stack config, environment, clouds.yaml) is missing or invalid. */
  | "E_CONFIG"
  /** A supplied TOTP secret is not one Keystone could verify. */
  | "E_SECRET"
  /** A resource's arguments are invalid. */
  | "E_INPUT"
  /** The users CSV cannot be read or parsed as a whole. */
  | "E_CSV"
  /** One or more rows of the users CSV are invalid. */
  | "E_CSV_ROW"
  /** Keystone refused the operator's credentials (401) or the token could not be renewed. */
  | "E_KEYSTONE_AUTH"
  /** Keystone answered 403: the operator's account may not do this. */
  | "E_KEYSTONE_FORBIDDEN"
  /**
   * The operator's own account has MFA rules: Keystone asked for a TOTP passcode at login (an
   * auth receipt) and none was given, or (Keystone 30, `require_mfa_for_sensitive_account_actions`)
   * refused an MFA change without a fresh `OpenStack-MFA-Passcode`.
   */
  | "E_KEYSTONE_MFA"
  /** Keystone answered 404 for something that must exist. */
  | "E_KEYSTONE_NOT_FOUND"
  /** Keystone answered with another unexpected HTTP status, after any retries. */
  | "E_KEYSTONE_HTTP"
  /** Keystone could not be reached (refused, reset, DNS, TLS), after any retries. */
  | "E_KEYSTONE_NETWORK"
  /** A request to Keystone timed out, after any retries. */
  | "E_KEYSTONE_TIMEOUT"
  /**
   * Keystone kept answering with a user's earlier MFA options after they were written again
   * and again: its identity cache holds a copy from before the write (see users.writeUserMfa).
   */
  | "E_KEYSTONE_STALE"
  /** Users named in the input do not exist in Keystone. */
  | "E_USER_NOT_FOUND"
  /** The mail server refused a connection, a login, the sender or a recipient. */
  | "E_SMTP"
  /**
   * The message was sent to the mail server, but the connection ended before the server's final
   * reply: it may have been delivered. The secret stays valid; the next run sends it again.
   */
  | "E_SMTP_UNCONFIRMED"
  /** Writing a message to the outbox folder failed. */
  | "E_OUTBOX"
  /** A user cannot be given a login posture that refuses a TOTP code alone (own rules, LDAP). */
  | "E_POSTURE"
  /**
   * The operator's own Keystone account was named as a user to enroll (CSV row, credentials
   * config, `TotpCredential`): refused before anything is written (see docs/operator-account.md).
   */
  | "E_OPERATOR_SELF"
  /** A command line is wrong: an unknown option or argument, a missing or malformed value. */
  | "E_USAGE";

/** Options accepted by every error constructor. */
export interface KeystoneTotpErrorOptions {
  /** The lower-level error, kept for debugging; it must not carry secrets either. */
  readonly cause?: unknown;
}

/** Base class of every error raised on purpose by keystone-totp. */
export class KeystoneTotpError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: KeystoneTotpErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KeystoneTotpError";
    this.code = code;
  }
}

/** Configuration is missing or invalid (`E_CONFIG`). */
export class ConfigError extends KeystoneTotpError {
  constructor(message: string, options: KeystoneTotpErrorOptions = {}) {
    super("E_CONFIG", message, options);
    this.name = "ConfigError";
  }
}

/** A supplied TOTP secret cannot be used (`E_SECRET`). The message never contains the secret. */
export class SecretError extends KeystoneTotpError {
  constructor(message: string, options: KeystoneTotpErrorOptions = {}) {
    super("E_SECRET", message, options);
    this.name = "SecretError";
  }
}

/** A resource argument is invalid (`E_INPUT`). */
export class InputError extends KeystoneTotpError {
  /** The argument at fault, e.g. `issuer`. */
  readonly property: string;

  constructor(property: string, message: string, options: KeystoneTotpErrorOptions = {}) {
    super("E_INPUT", message, options);
    this.name = "InputError";
    this.property = property;
  }
}

/** Details of a failed Keystone request, all safe to log. */
export interface KeystoneErrorDetails {
  /** HTTP method, e.g. `POST`. */
  readonly method: string;
  /** URL path without query secrets, e.g. `/v3/credentials`. */
  readonly path: string;
  /** HTTP status, when Keystone answered. */
  readonly status?: number;
  /** Keystone's own error message (`error.message`), when it sent one. */
  readonly keystoneMessage?: string;
  /** Keystone's `x-openstack-request-id`, to find the request in Keystone's logs. */
  readonly requestId?: string;
  /** How many attempts were made. */
  readonly attempts?: number;
}

/** A request to Keystone failed. */
export class KeystoneError extends KeystoneTotpError {
  readonly method: string;
  readonly path: string;
  readonly status: number | undefined;
  readonly keystoneMessage: string | undefined;
  readonly requestId: string | undefined;
  readonly attempts: number;

  constructor(code: ErrorCode, details: KeystoneErrorDetails, hint: string, options: KeystoneTotpErrorOptions = {}) {
    super(code, formatKeystoneMessage(details, hint), options);
    this.name = "KeystoneError";
    this.method = details.method;
    this.path = details.path;
    this.status = details.status;
    this.keystoneMessage = details.keystoneMessage;
    this.requestId = details.requestId;
    this.attempts = details.attempts ?? 1;
  }
}

function formatKeystoneMessage(d: KeystoneErrorDetails, hint: string): string {
  const parts = [`${d.method} ${d.path} failed`];
  if (d.status !== undefined) parts[0] += `: ${d.status}`;
  if (d.keystoneMessage) parts.push(`Keystone said: ${d.keystoneMessage}`);
  if (d.requestId) parts.push(`request id ${d.requestId}`);
  if (d.attempts !== undefined && d.attempts > 1) parts.push(`after ${d.attempts} attempts`);
  return `${parts.join("; ")}. ${hint}`.trim();
}

/** Users named in the input are not in Keystone (`E_USER_NOT_FOUND`). */
export class UserNotFoundError extends KeystoneTotpError {
  /** Every missing user, as `name@domain` or the ID given. */
  readonly users: readonly string[];

  constructor(users: readonly string[]) {
    super(
      "E_USER_NOT_FOUND",
      `${users.length} user(s) not found in Keystone: ${users.slice(0, MAX_LISTED_USERS).join(", ")}` +
        `${users.length > MAX_LISTED_USERS ? ` and ${users.length - MAX_LISTED_USERS} more` : ""}. ` +
        "Create them first, or fix the names and domains in the CSV.",
    );
    this.name = "UserNotFoundError";
    this.users = users;
  }
}

/**
 * A user cannot be given a login posture that refuses a TOTP code alone (`E_POSTURE`): its own
 * MFA rules let TOTP alone in, its options cannot be written (LDAP), or enforcement is
 * impossible on this Keystone. The user is not enrolled; the message says which setting allows it.
 */
export class PostureError extends KeystoneTotpError {
  /** The user, as `name@domain` or the key the resource has. */
  readonly user: string;

  constructor(user: string, reason: string, options: KeystoneTotpErrorOptions = {}) {
    super("E_POSTURE", `user ${user}: ${reason}`, options);
    this.name = "PostureError";
    this.user = user;
  }
}

/**
 * The process exit codes of every operator command (`scripts/`), by what went wrong.
 * `failed` is also each command's own "not ok" verdict (status: a user needs attention;
 * verify-code: the code is invalid; doctor: a failed check without an error code).
 *
 * @see README.md, Exit codes (checked against {@link EXIT_CODES} by a unit test)
 */
export const EXIT = {
  /** Done, nothing wrong. */
  ok: 0,
  /** Failed for a reason not below, or the command's own "not ok" verdict. */
  failed: 1,
  /** Bad input or configuration: CSV, stack settings, arguments of a resource, unknown users. */
  badInput: 2,
  /** Keystone refused, failed or could not be reached. */
  keystone: 3,
  /** Mail could not be sent or written. */
  mail: 4,
  /** The command line is wrong (sysexits.h EX_USAGE). */
  usage: 64,
} as const;

/** One of {@link EXIT}'s values. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * THE table of exit codes: each error code's process exit code, for every command. A new
 * error code does not compile until it has a row here (and the README's table one too: a unit
 * test compares them).
 */
export const EXIT_CODES: Readonly<Record<ErrorCode, ExitCode>> = {
  E_CONFIG: EXIT.badInput,
  E_SECRET: EXIT.badInput,
  E_INPUT: EXIT.badInput,
  E_CSV: EXIT.badInput,
  E_CSV_ROW: EXIT.badInput,
  E_USER_NOT_FOUND: EXIT.badInput,
  E_POSTURE: EXIT.badInput,
  E_OPERATOR_SELF: EXIT.badInput,
  E_KEYSTONE_AUTH: EXIT.keystone,
  E_KEYSTONE_FORBIDDEN: EXIT.keystone,
  E_KEYSTONE_MFA: EXIT.keystone,
  E_KEYSTONE_NOT_FOUND: EXIT.keystone,
  E_KEYSTONE_HTTP: EXIT.keystone,
  E_KEYSTONE_NETWORK: EXIT.keystone,
  E_KEYSTONE_TIMEOUT: EXIT.keystone,
  E_KEYSTONE_STALE: EXIT.keystone,
  E_SMTP: EXIT.mail,
  E_SMTP_UNCONFIRMED: EXIT.mail,
  E_OUTBOX: EXIT.mail,
  E_USAGE: EXIT.usage,
};

/** Whether `code` is one of ours (e.g. a code read back from the engine's output). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(EXIT_CODES, code);
}

/**
 * The exit code for any thrown value: its row of {@link EXIT_CODES} for a
 * {@link KeystoneTotpError}, else {@link EXIT}.failed.
 */
export function exitCodeFor(err: unknown): ExitCode {
  return err instanceof KeystoneTotpError ? EXIT_CODES[err.code] : EXIT.failed;
}

/**
 * The exit code for an error code given as text (`[E_SMTP]` read back from the engine's
 * output, a check's code): its row, else `fallback`.
 */
export function exitCodeForCode(code: string | undefined, fallback: ExitCode = EXIT.failed): ExitCode {
  return isErrorCode(code) ? EXIT_CODES[code] : fallback;
}

/** The command line is wrong (`E_USAGE`): the message names the option or argument at fault. */
export class UsageError extends KeystoneTotpError {
  /** The option at fault, e.g. `--parallel`, when there is one. */
  readonly option: string | undefined;

  constructor(message: string, option?: string) {
    super("E_USAGE", message);
    this.name = "UsageError";
    this.option = option;
  }
}

/** One problem in the users CSV, with its place. */
export interface CsvProblem {
  /** 1-based line number in the file where the record starts (0 for the file as a whole). */
  readonly line: number;
  /** Column name, when the problem is in one field. */
  readonly column?: string;
  /** `name@domain` of the row's user, when known. */
  readonly user?: string;
  /** What is wrong and what to do. Never contains a secret. */
  readonly message: string;
}

/**
 * The users CSV is invalid: `E_CSV` for the file as a whole (unreadable, not UTF-8, no header),
 * `E_CSV_ROW` for problems in rows. Every problem is listed at once.
 */
export class CsvError extends KeystoneTotpError {
  /** The CSV file's path as given. */
  readonly file: string;
  readonly problems: readonly CsvProblem[];

  constructor(
    code: "E_CSV" | "E_CSV_ROW",
    file: string,
    problems: readonly CsvProblem[],
    options: KeystoneTotpErrorOptions = {},
  ) {
    const lines = problems.map(
      (p) =>
        `  ${file}${p.line > 0 ? `:${p.line}` : ""}${p.column ? ` (column ${p.column})` : ""}${p.user ? ` [${p.user}]` : ""}: ${p.message}`,
    );
    super(
      code,
      `invalid users CSV ${file}: ${problems.length} problem(s); nothing was changed\n${lines.join("\n")}`,
      options,
    );
    this.name = "CsvError";
    this.file = file;
    this.problems = problems;
  }
}

/**
 * Sending or writing an enrollment message failed (`E_SMTP`, `E_OUTBOX`), or its outcome is not
 * known (`E_SMTP_UNCONFIRMED`: see {@link isUnconfirmedDelivery}).
 */
export class MailError extends KeystoneTotpError {
  /** The recipient, when the failure concerns one. */
  readonly recipient: string | undefined;
  /** SMTP reply code, when the server answered (e.g. 550). */
  readonly smtpCode: number | undefined;

  constructor(
    code: "E_SMTP" | "E_SMTP_UNCONFIRMED" | "E_OUTBOX",
    message: string,
    details: { recipient?: string; smtpCode?: number } = {},
    options: KeystoneTotpErrorOptions = {},
  ) {
    super(code, message, options);
    this.name = "MailError";
    this.recipient = details.recipient;
    this.smtpCode = details.smtpCode;
  }
}

/**
 * Whether a failed delivery may nevertheless have reached the mail server (`E_SMTP_UNCONFIRMED`):
 * then nothing may be undone, since the user may hold the message and its secret.
 */
export function isUnconfirmedDelivery(e: unknown): e is MailError {
  return e instanceof MailError && e.code === "E_SMTP_UNCONFIRMED";
}

/**
 * THE encoding of an error code in text, for the one place where only a message crosses: the
 * Pulumi engine, between a provider process (or the inline program) and the operator command
 * that reads the engine's output. Written by {@link engineMessage}, read by
 * {@link codeInEngineText}; nothing else writes or parses a code in a message.
 */
const ENGINE_CODE = /\[(E_[A-Z_]+)\] /;

/** An error's message as it crosses the engine: `[E_CODE] message`. */
export function engineMessage(e: KeystoneTotpError): string {
  return `[${e.code}] ${e.message}`;
}

/**
 * The first error code of ours in the engine's output, with the line that carries it
 * (the line says what failed); undefined when none.
 */
export function codeInEngineText(text: string): { readonly code: ErrorCode; readonly line: string } | undefined {
  for (const line of text.split("\n")) {
    const code = ENGINE_CODE.exec(line)?.[1];
    if (isErrorCode(code)) return { code, line: line.trim() };
  }
  return undefined;
}

/**
 * One of our errors on its way across the engine (see {@link withErrorCodes}): the same `code`,
 * the message in the engine's encoding, the original error as `cause` and its message as
 * `reason`, so that in-process callers still read the code from the field.
 */
export class EngineBoundaryError extends KeystoneTotpError {
  /** The original error's message, without the code. */
  readonly reason: string;

  constructor(e: KeystoneTotpError) {
    super(e.code, engineMessage(e), { cause: e });
    this.name = e.name;
    this.reason = e.message;
  }
}

/**
 * Wraps an async provider method so that our errors leave it as {@link EngineBoundaryError}s:
 * across the engine boundary only the message survives, and the operator commands read the
 * code back from it (with {@link codeInEngineText}) to choose the exit code.
 */
export function withErrorCodes<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (e) {
      if (e instanceof KeystoneTotpError && !(e instanceof EngineBoundaryError)) throw new EngineBoundaryError(e);
      throw e;
    }
  };
}
