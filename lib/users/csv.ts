/**
 * Reads the users CSV: the list of Keystone users to enroll in TOTP.
 *
 * The file has a header row naming its columns (any order, any case):
 *
 * | column          | required | meaning                                                        |
 * | --------------- | -------- | -------------------------------------------------------------- |
 * | `username`      | yes      | Keystone user name                                             |
 * | `email`         | yes      | where the enrollment message goes                              |
 * | `domain`        | no       | Keystone domain name; default `Default`                        |
 * | `user_id`       | no       | Keystone user ID; when given, the name lookup is skipped       |
 * | `display_name`  | no       | the name used in the greeting                                  |
 * | `rotation_days` | no       | issue a new secret after this many days (1..3650)              |
 *
 * The whole file is checked before anything happens: every problem in every row is reported
 * in one {@link CsvError}, so an operator fixes the file once instead of once per `pulumi up`.
 * Unknown columns are refused rather than ignored, because a typo such as `e-mail` would
 * otherwise silently drop data.
 *
 * Cells that start like a spreadsheet formula (`=`, `+`, `-`, `@`) are accepted: this file is
 * only read, never opened by a spreadsheet on our side, and a user name is an identifier that
 * must match Keystone's as it is (Keystone allows `=HYPERLINK(x)` as a name). Formula
 * neutralising belongs to what we write for spreadsheets (`status --csv`, report/csv.ts).
 */
import { Buffer } from "node:buffer";
import { readFileSync, statSync } from "node:fs";
import { CsvError as CsvParseError, parse } from "csv-parse/sync";
import { DEFAULT_DOMAIN, MAX_ROTATION_DAYS } from "../defaults.ts";
import type { CsvProblem } from "../errors.ts";
import { CsvError } from "../errors.ts";

/**
 * Largest users CSV accepted, in bytes (8 MiB). A row is about 80 bytes, so this is roughly
 * 100,000 users: far beyond what one stack should manage, yet small enough that a wrong file
 * (a database dump, a video) is refused at once instead of being parsed into a flood of errors.
 */
export const MAX_CSV_BYTES = 8 * 1024 * 1024;

/**
 * Longest record accepted, in characters. A real row is well under 1,000; a longer one almost
 * always means a quote was left open and the parser is swallowing the rest of the file.
 */
export const MAX_RECORD_CHARS = 64 * 1024;

/**
 * Most users accepted. It matches {@link MAX_CSV_BYTES} for real rows, and bounds the time a
 * file of millions of tiny junk lines would take to check.
 */
export const MAX_USERS = 100_000;

/** Most problems listed in one error; the rest are counted in a final "... and N more". */
export const MAX_PROBLEMS = 200;

/** Longest user name, in characters (Keystone's `local_user.name` column). */
export const MAX_USERNAME_CHARS = 255;

/** Longest domain name, in characters (Keystone's `project.name` column, which holds domains). */
export const MAX_DOMAIN_CHARS = 64;

/** Longest email address, in characters (RFC 5321's limit on a forward path, less the `<>`). */
export const MAX_EMAIL_CHARS = 254;

/** Longest display name, in characters. */
export const MAX_DISPLAY_NAME_CHARS = 255;

/** Longest `user_id`, in characters: 32 hex digits for SQL users, 64 for LDAP-mapped ones. */
export const MAX_USER_ID_CHARS = 64;

/** Smallest `rotation_days`, in days. */
export const MIN_ROTATION_DAYS = 1;

/** Largest `rotation_days`, in days: the credential's own limit. */
export { MAX_ROTATION_DAYS };

/** Longest excerpt of a cell or header quoted back in a message, in characters. */
const MAX_SHOWN_CHARS = 40;

/** One user of the users CSV, checked and normalised (trimmed, NFC). */
export interface UserRow {
  /** 1-based line of the file where the row starts. */
  readonly line: number;
  /** Keystone user name. */
  readonly username: string;
  /** Address the enrollment message is sent to. */
  readonly email: string;
  /** Keystone domain name; {@link DEFAULT_DOMAIN} when not given. */
  readonly domain: string;
  /** Keystone user ID in lower case, when given (skips the name lookup). */
  readonly userId: string | undefined;
  /** Name used in the greeting, with runs of whitespace (including newlines) made one space. */
  readonly displayName: string | undefined;
  /** Days after which the secret is renewed, when given. */
  readonly rotationDays: number | undefined;
  /**
   * The row's identity as the CSV spells it; see {@link userKey}. Resources are named from
   * Keystone's spelling of the user instead (operator/fleet/fleet.ts), which this may
   * differ from in case.
   */
  readonly key: string;
}

type Column = "username" | "email" | "domain" | "user_id" | "display_name" | "rotation_days";

const COLUMNS: readonly Column[] = ["username", "email", "domain", "user_id", "display_name", "rotation_days"];
const REQUIRED_COLUMNS: readonly Column[] = ["username", "email"];

// C0 and C1 controls, DEL, line/paragraph separators, zero-width space, BOM and the bidi
// overrides: none belongs in a name, and some can make a name display as another one.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
const FORBIDDEN_CHAR = /[\u0000-\u001f\u007f-\u009f\u200b\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;
const USER_ID = /^[0-9a-f-]{1,64}$/i;
const HEX_DIGIT = /[0-9a-f]/i;
const DIGITS = /^[0-9]{1,9}$/;
// Characters that never appear in a plain address but do when a name or a list was pasted in.
const EMAIL_PUNCTUATION = /[<>()[\]\\,;:"]/;
const WHITESPACE_RUN = /\s+/g;
// Only these are escaped in a key: `%` keeps the encoding reversible, `@` separates the parts,
// `:` could form the `::` that separates the parts of a Pulumi URN.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we escape.
const KEY_ESCAPED = /[%@:\u0000-\u001f\u007f-\u009f]/g;

/**
 * The canonical identity of a user: `username@domain`, each part NFC-normalised with `%`,
 * `@`, `:` and control characters percent-encoded, e.g. `a%40b.com@Default` for the user
 * `a@b.com` in domain `Default`. It is readable, stable, reversible, and never contains `::`
 * (which would break a Pulumi URN), so it serves as a resource name. Case is kept; duplicates
 * are found case-insensitively elsewhere, and resource names use Keystone's spelling of the
 * user so that a case-only edit of the CSV does not rename them.
 */
export function userKey(domain: string, username: string): string {
  return `${escapeKeyPart(username)}@${escapeKeyPart(domain)}`;
}

function escapeKeyPart(s: string): string {
  return s.normalize("NFC").replace(KEY_ESCAPED, (c) => encodeURIComponent(c));
}

/**
 * Reads and checks the users CSV at `path` (see {@link parseUsersCsv}).
 *
 * @throws {CsvError} `E_CSV` if the file is missing, unreadable, not a regular file, larger
 *   than {@link MAX_CSV_BYTES}, or not a CSV at all; `E_CSV_ROW` listing every invalid row.
 */
export function readUsersCsv(path: string): UserRow[] {
  let bytes: Buffer;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) {
      throw fileError(path, "is not a regular file; give the path of the users CSV file");
    }
    // Checked before reading, so a huge file is refused without loading it.
    if (stat.size > MAX_CSV_BYTES) throw fileError(path, tooLargeMessage(stat.size));
    bytes = readFileSync(path);
  } catch (cause) {
    if (cause instanceof CsvError) throw cause;
    throw fileError(path, readFailureMessage(cause), cause);
  }
  return parseUsersCsv(bytes, path);
}

/**
 * Parses and checks a users CSV.
 *
 * Accepts UTF-8 with or without a byte order mark, CRLF, LF or CR line ends (mixed too), and
 * quoted fields holding commas, quotes (doubled) and line breaks. Columns are matched by name,
 * trimmed and case-insensitively; every cell is trimmed and NFC-normalised; fully blank lines
 * are skipped. `domain` defaults to `Default` when the column is absent or the cell empty.
 *
 * Refused, all reported together: unknown, repeated or missing columns; empty, over-long or
 * control-character names; implausible email addresses; a `user_id` that is not 1..64 hex
 * digits and hyphens; a `rotation_days` outside 1..3650; the same user twice (domain and name
 * compared case-insensitively, as Keystone on MySQL does) or the same `user_id` twice; and a
 * file with no users, since an empty fleet would delete every credential.
 *
 * @param input - the file's bytes, or its text already decoded.
 * @param file - the file's name, used only in messages.
 * @returns the users, in file order; never empty.
 * @throws {CsvError} `E_CSV` for a problem with the file as a whole: larger than
 *   {@link MAX_CSV_BYTES}, not UTF-8 text, broken quoting, a bad header row, or no users;
 *   `E_CSV_ROW` listing every invalid row at once (at most {@link MAX_PROBLEMS}, then a count).
 */
export function parseUsersCsv(input: string | Uint8Array, file: string): UserRow[] {
  const text = decode(input, file);
  const [header, ...rows] = splitRecords(text, file);
  if (header === undefined) {
    throw fileError(file, "has no header row and no users; the first line must name the columns, e.g. username,email");
  }
  const layout = readHeader(header, file);
  if (rows.length === 0) {
    throw new CsvError("E_CSV", file, [
      {
        line: header.line,
        message:
          "no users below the header. An empty list would delete every TOTP credential on `pulumi up`, " +
          "so it is refused; to remove everyone's credentials on purpose, run `pulumi destroy`",
      },
    ]);
  }
  return readRows(rows, layout, file);
}

// ---------------------------------------------------------------------------------------------
// Decoding

function decode(input: string | Uint8Array, file: string): string {
  let text: string;
  if (typeof input === "string") {
    // Measured cheaply first: a UTF-8 byte is never more than one UTF-16 unit.
    const size = input.length * 3 > MAX_CSV_BYTES ? Buffer.byteLength(input, "utf8") : input.length;
    if (size > MAX_CSV_BYTES) throw fileError(file, tooLargeMessage(size));
    const lone = /\p{Cs}/u.exec(input);
    if (lone !== null) {
      throw fileError(
        file,
        `is not valid Unicode text (a lone surrogate at character ${lone.index}, line ${lineAt(input, lone.index)})`,
      );
    }
    const replacement = input.indexOf("\ufffd");
    if (replacement >= 0) {
      throw fileError(
        file,
        `contains U+FFFD at character ${replacement} (line ${lineAt(input, replacement)}), the mark of text decoded with the wrong encoding; ${SAVE_AS_UTF8}`,
      );
    }
    text = input;
  } else {
    if (input.byteLength > MAX_CSV_BYTES) throw fileError(file, tooLargeMessage(input.byteLength));
    if ((input[0] === 0xff && input[1] === 0xfe) || (input[0] === 0xfe && input[1] === 0xff)) {
      throw fileError(file, `is UTF-16 text, not UTF-8; ${SAVE_AS_UTF8}`);
    }
    // Not fatal: the first U+FFFD then marks the first bad byte, and everything before it is
    // valid UTF-8, so its byte offset is exact.
    text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(input);
    const bad = text.indexOf("\ufffd");
    if (bad >= 0) {
      const offset = Buffer.byteLength(text.slice(0, bad), "utf8");
      const isReplacementChar = input[offset] === 0xef && input[offset + 1] === 0xbf && input[offset + 2] === 0xbd;
      throw fileError(
        file,
        isReplacementChar
          ? `contains U+FFFD at offset ${offset} (line ${lineAt(text, bad)}), the mark of text once decoded with the wrong encoding; fix the damaged names, then ${SAVE_AS_UTF8}`
          : `is not UTF-8 text (byte 0x${hexByte(input[offset])} at offset ${offset}, line ${lineAt(text, bad)}); ${SAVE_AS_UTF8}`,
      );
    }
  }
  const nul = text.indexOf("\u0000");
  if (nul >= 0) {
    throw fileError(
      file,
      `contains a NUL character at character ${nul} (line ${lineAt(text, nul)}): it is a binary file or UTF-16 text, not a CSV; ${SAVE_AS_UTF8}`,
    );
  }
  return text.startsWith("\ufeff") ? text.slice(1) : text;
}

const SAVE_AS_UTF8 = "save it as 'CSV UTF-8 (comma delimited)' from your spreadsheet, or convert it with iconv";

function hexByte(b: number | undefined): string {
  return (b ?? 0).toString(16).toUpperCase().padStart(2, "0");
}

/** 1-based line of a character offset, counting CRLF, LF and CR as line ends. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || (c === 0x0d && text.charCodeAt(i + 1) !== 0x0a)) line++;
  }
  return line;
}

// ---------------------------------------------------------------------------------------------
// Records

/** A record that is not blank, with the line it starts on. */
interface RawRecord {
  readonly line: number;
  readonly fields: readonly string[];
}

function splitRecords(text: string, file: string): RawRecord[] {
  // One line end for the parser, so its line count is exact; a CRLF inside a quoted display
  // name becomes LF, which the display name's whitespace folding removes anyway.
  const normalised = text.replace(/\r\n?/g, "\n");
  const records: RawRecord[] = [];
  // csv-parse keeps blank lines as records, so each record starts on the line after the
  // previous one ended (its `lines` is where a record ends, which a quoted line break moves).
  let lastEnd = 0;
  // csv-parse builds an Error for every row whose field count differs from the first row's,
  // even when told to accept it; without stack traces that costs nothing, with them a file
  // of short junk lines takes minutes. Nothing in between can run, so restoring is safe.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    parse(normalised, {
      record_delimiter: "\n",
      relax_column_count: true,
      skip_empty_lines: false,
      trim: true,
      max_record_size: MAX_RECORD_CHARS,
      on_record: (fields, context) => {
        if (!isBlank(fields)) {
          // The header plus MAX_USERS rows are fine; one more stops the parse.
          if (records.length > MAX_USERS) throw TOO_MANY_ROWS;
          records.push({ line: lastEnd + 1, fields });
        }
        lastEnd = context.lines;
        return null;
      },
    });
  } catch (cause) {
    Error.stackTraceLimit = stackTraceLimit;
    if (cause === TOO_MANY_ROWS) {
      throw fileError(
        file,
        `has more than ${MAX_USERS} users (line ${lastEnd + 1} is user ${MAX_USERS + 1}); the limit is ${MAX_USERS}. Check that this is the users CSV; split a real fleet that large across stacks`,
      );
    }
    if (!(cause instanceof CsvParseError)) throw cause;
    throw new CsvError("E_CSV", file, [parseProblem(cause, lastEnd + 1)], { cause });
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  return records;
}

/** Thrown from inside the parser to stop it; never escapes {@link splitRecords}. */
const TOO_MANY_ROWS = Symbol("too many rows");

/**
 * Our message for a csv-parse error. The problem is placed on the line where the broken row
 * starts, since that is where an unbalanced quote was opened; where the parser noticed is
 * added when it differs.
 */
function parseProblem(err: CsvParseError, start: number): CsvProblem {
  const at = typeof err.lines === "number" && err.lines > start ? err.lines : start;
  const where = at === start ? "" : ` (noticed on line ${at})`;
  const quoting =
    'quote a field that holds a comma, quote or line break in double quotes, and double any quote inside it: "Smith, ""Jo"""';
  switch (err.code) {
    case "CSV_QUOTE_NOT_CLOSED":
      return {
        line: start,
        message: `the row that starts here has a quoted field that is never closed (the file ends inside it); ${quoting}`,
      };
    case "CSV_MAX_RECORD_SIZE":
      return {
        line: start,
        message: `the row that starts here runs past ${MAX_RECORD_CHARS} characters, so a quote is probably left open; ${quoting}`,
      };
    case "INVALID_OPENING_QUOTE":
      return { line: start, message: `a quote appears inside an unquoted field${where}; ${quoting}` };
    case "CSV_INVALID_CLOSING_QUOTE":
    case "CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE":
      return { line: start, message: `text follows the closing quote of a field${where}; ${quoting}` };
    default:
      return { line: start, message: `cannot be read as CSV${where} (${err.code}); ${quoting}` };
  }
}

function isBlank(fields: readonly string[]): boolean {
  return fields.every((f) => f.trim() === "");
}

// ---------------------------------------------------------------------------------------------
// Header

interface Layout {
  /** Index of each known column present. */
  readonly index: ReadonlyMap<Column, number>;
  /** Number of header cells, named or not. */
  readonly width: number;
  /** Indexes of header cells left empty, whose cells must then be empty too. */
  readonly unnamed: ReadonlySet<number>;
}

function readHeader(header: RawRecord, file: string): Layout {
  const problems: CsvProblem[] = [];
  const index = new Map<Column, number>();
  const unnamed = new Set<number>();
  let unknownCount = 0;
  header.fields.forEach((cell, i) => {
    const name = cell.trim().normalize("NFC").toLowerCase();
    if (name === "") {
      unnamed.add(i);
      return;
    }
    if (!isColumn(name)) {
      unknownCount++;
      problems.push({ line: header.line, column: show(cell.trim()), message: unknownColumnMessage(name) });
      return;
    }
    const first = index.get(name);
    if (first !== undefined) {
      problems.push({
        line: header.line,
        column: name,
        message: `appears twice (columns ${first + 1} and ${i + 1}); keep one`,
      });
      return;
    }
    index.set(name, i);
  });
  for (const column of REQUIRED_COLUMNS) {
    if (!index.has(column)) {
      problems.push({ line: header.line, column, message: `the required column "${column}" is missing` });
    }
  }
  if (problems.length > 0) {
    const named = header.fields.filter((f) => f.trim() !== "");
    if (named.length === 1 && /[;\t|]/.test(named[0] ?? "")) {
      problems.push({
        line: header.line,
        message:
          "the columns seem separated by ';', tab or '|'; this tool reads comma-separated files: save as 'CSV UTF-8 (comma delimited)'",
      });
    } else if (index.size === 0 && unknownCount > 0) {
      problems.push({
        line: header.line,
        message: `the first line must be a header row naming the columns, e.g. "username,email,domain"`,
      });
    }
    throw new CsvError("E_CSV", file, capped(problems, 0));
  }
  return { index, width: header.fields.length, unnamed };
}

function isColumn(name: string): name is Column {
  return (COLUMNS as readonly string[]).includes(name);
}

function unknownColumnMessage(name: string): string {
  // Compare without punctuation or spaces, to suggest `email` for `e-mail` or `E Mail`.
  const compact = name.replace(/[^\p{L}\p{N}]/gu, "");
  const near = COLUMNS.find((c) => c.replace("_", "") === compact);
  const hint = near === undefined ? "" : `; did you mean "${near}"?`;
  return `unknown column; the known columns are ${COLUMNS.join(", ")}${hint}`;
}

// ---------------------------------------------------------------------------------------------
// Rows

function readRows(rows: readonly RawRecord[], layout: Layout, file: string): UserRow[] {
  const problems: CsvProblem[] = [];
  let dropped = 0;
  // Capped while collecting: 8 MiB of one-character lines would otherwise be millions of objects.
  const add = (p: CsvProblem): void => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
    else dropped++;
  };
  const users: UserRow[] = [];
  const byName = new Map<string, number>();
  const byId = new Map<string, number>();
  for (const row of rows) {
    const { user, ok, identityOk } = readRow(row, layout, add);
    if (identityOk) {
      const nameKey = `${fold(user.domain)}\u0000${fold(user.username)}`;
      const sameName = byName.get(nameKey);
      if (sameName !== undefined) {
        add({
          line: row.line,
          column: "username",
          user: describeUser(user.username, user.domain),
          message: `the same user as on line ${sameName} (names are compared ignoring case, as Keystone does); list each user once`,
        });
      } else {
        byName.set(nameKey, row.line);
      }
    }
    if (user.userId !== undefined) {
      const sameId = byId.get(user.userId);
      if (sameId !== undefined) {
        add({
          line: row.line,
          column: "user_id",
          user: describeUser(user.username, user.domain),
          message: `the same user_id as on line ${sameId}`,
        });
      } else {
        byId.set(user.userId, row.line);
      }
    }
    if (ok) users.push(user);
  }
  if (problems.length > 0) throw new CsvError("E_CSV_ROW", file, capped(problems, dropped));
  return users;
}

interface RowResult {
  /** The row as read; meaningful only when `ok`. */
  readonly user: UserRow;
  /** Whether the row has no problem. */
  readonly ok: boolean;
  /** Whether the user name and domain are valid, so duplicates can be looked for. */
  readonly identityOk: boolean;
}

/** Checks one row and reports its problems. */
function readRow(row: RawRecord, layout: Layout, add: (p: CsvProblem) => void): RowResult {
  const cell = (column: Column): string => {
    const i = layout.index.get(column);
    return i === undefined ? "" : (row.fields[i] ?? "").trim().normalize("NFC");
  };
  const username = cell("username");
  const domain = cell("domain") || DEFAULT_DOMAIN;
  let bad = false;
  const problem = (column: Column | undefined, message: string): void => {
    bad = true;
    add({
      line: row.line,
      ...(column === undefined ? {} : { column }),
      ...(username === "" ? {} : { user: describeUser(username, domain) }),
      message,
    });
  };

  for (let i = 0; i < row.fields.length; i++) {
    if ((i >= layout.width || layout.unnamed.has(i)) && (row.fields[i] ?? "").trim() !== "") {
      problem(
        undefined,
        `has a value in column ${i + 1}, which has no name in the header; ` +
          "remove it, or quote a field that holds a comma",
      );
      break;
    }
  }

  const nameProblem = checkName(username, "user name", MAX_USERNAME_CHARS);
  if (nameProblem !== undefined) problem("username", nameProblem);

  const domainProblem = checkName(domain, "domain name", MAX_DOMAIN_CHARS);
  if (domainProblem !== undefined) problem("domain", domainProblem);

  const email = cell("email");
  const emailProblem = checkEmail(email);
  if (emailProblem !== undefined) problem("email", emailProblem);

  const rawId = cell("user_id");
  let userId: string | undefined;
  if (rawId !== "") {
    if (!USER_ID.test(rawId) || !HEX_DIGIT.test(rawId)) {
      problem("user_id", `${show(rawId)} is not a Keystone user ID (up to ${MAX_USER_ID_CHARS} hex digits and '-')`);
    } else userId = rawId.toLowerCase();
  }

  const rawDisplay = cell("display_name").replace(WHITESPACE_RUN, " ");
  let displayName: string | undefined;
  if (rawDisplay !== "") {
    const displayProblem = checkName(rawDisplay, "display name", MAX_DISPLAY_NAME_CHARS);
    if (displayProblem !== undefined) problem("display_name", displayProblem);
    else displayName = rawDisplay;
  }

  const rawDays = cell("rotation_days");
  let rotationDays: number | undefined;
  if (rawDays !== "") {
    const days = DIGITS.test(rawDays) ? Number(rawDays) : Number.NaN;
    if (!(days >= MIN_ROTATION_DAYS && days <= MAX_ROTATION_DAYS)) {
      problem(
        "rotation_days",
        `${show(rawDays)} is not a whole number of days from ${MIN_ROTATION_DAYS} to ${MAX_ROTATION_DAYS}; leave it empty for no rotation`,
      );
    } else rotationDays = days;
  }

  const user = {
    line: row.line,
    username,
    email,
    domain,
    userId,
    displayName,
    rotationDays,
    key: userKey(domain, username),
  };
  return { user, ok: !bad, identityOk: nameProblem === undefined && domainProblem === undefined };
}

function checkName(value: string, what: string, maxChars: number): string | undefined {
  if (value === "") return `the ${what} is empty`;
  const forbidden = FORBIDDEN_CHAR.exec(value);
  if (forbidden !== null) return `the ${what} contains a control or invisible character (${codePoint(forbidden[0])})`;
  const length = [...value].length;
  if (length > maxChars) return `the ${what} is ${length} characters long; the most is ${maxChars}`;
  return undefined;
}

/**
 * A pragmatic address check: it catches the mistakes operators make (empty cells, a name
 * pasted in, two addresses in one cell, a missing domain) without refusing internationalised
 * addresses, which the mail server is left to judge.
 */
function checkEmail(email: string): string | undefined {
  if (email === "") return "the email address is empty; every user needs one to receive their QR code";
  const length = [...email].length;
  if (length > MAX_EMAIL_CHARS) return `the email address is ${length} characters long; the most is ${MAX_EMAIL_CHARS}`;
  const forbidden = FORBIDDEN_CHAR.exec(email);
  if (forbidden !== null)
    return `the email address contains a control or invisible character (${codePoint(forbidden[0])})`;
  if (/\s/.test(email)) return `${show(email)} is not an email address: it contains a space`;
  if (EMAIL_PUNCTUATION.test(email)) {
    return `${show(email)} is not an email address; write one bare address per row, without a name, <>, commas or semicolons`;
  }
  const at = email.indexOf("@");
  if (at < 0 || at !== email.lastIndexOf("@")) return `${show(email)} is not an email address: it needs exactly one @`;
  if (at === 0) return `${show(email)} is not an email address: nothing before the @`;
  const host = email.slice(at + 1);
  if (!host.includes(".") || host.startsWith(".") || host.endsWith(".") || host.includes("..")) {
    return `${show(email)} is not an email address: the part after the @ must be a domain such as example.com`;
  }
  return undefined;
}

/** Case-insensitive form for duplicate detection, as Keystone on MySQL compares names. */
function fold(s: string): string {
  return s.normalize("NFC").toLowerCase();
}

function describeUser(username: string, domain: string): string {
  return `${show(username, false)}@${show(domain, false)}`;
}

/**
 * A cell made safe to print: control and invisible characters become `U+XXXX` (so a name
 * cannot drive the terminal), and long values are cut.
 */
function show(value: string, quoted = true): string {
  const chars = [...value];
  const cut = chars.length > MAX_SHOWN_CHARS ? `${chars.slice(0, MAX_SHOWN_CHARS).join("")}…` : value;
  const safe = cut.replace(new RegExp(FORBIDDEN_CHAR.source, "g"), (c) => `<${codePoint(c)}>`);
  return quoted ? JSON.stringify(safe) : safe;
}

function codePoint(c: string): string {
  return `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// Errors

function capped(list: readonly CsvProblem[], dropped: number): CsvProblem[] {
  const kept = list.slice(0, MAX_PROBLEMS);
  const more = dropped + list.length - kept.length;
  if (more > 0) kept.push({ line: 0, message: `... and ${more} more problem(s); fix these first` });
  return kept;
}

function fileError(file: string, message: string, cause?: unknown): CsvError {
  return new CsvError("E_CSV", file, [{ line: 0, message }], cause === undefined ? {} : { cause });
}

function tooLargeMessage(bytes: number): string {
  const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return (
    `is ${mib(bytes)} (${bytes} bytes); the limit is ${mib(MAX_CSV_BYTES)} (${MAX_CSV_BYTES} bytes), ` +
    "about 100,000 users. Check that this is the users CSV; split a real fleet that large across stacks"
  );
}

function readFailureMessage(cause: unknown): string {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : "";
  switch (code) {
    case "ENOENT":
      return `cannot be read: no such file (relative paths start at ${process.cwd()}); check the path`;
    case "EACCES":
    case "EPERM":
      return "cannot be read: permission denied; make it readable by the user running Pulumi";
    case "EISDIR":
      return "is a directory; give the path of the users CSV file";
    default:
      return `cannot be read (${code || "unknown error"}); check the path and the file`;
  }
}
