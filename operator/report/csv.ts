/**
 * CSV written by the tool (reports such as `status --csv`), safe to open in a spreadsheet.
 *
 * - RFC 4180: fields separated by commas, records ended by CRLF (the last one too); a field
 *   holding a comma, a double quote, CR or LF is enclosed in double quotes, with each double
 *   quote inside doubled. Nothing else is quoted.
 * - Formula injection (CWE-1236): a spreadsheet runs a cell that begins with `=`, `+`, `-` or
 *   `@` as a formula (`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`), and TAB or CR at the start can
 *   smuggle one past a trim. User names, display names and addresses come from Keystone and
 *   the users CSV, i.e. from people other than the reader, so every text cell that begins with
 *   one of those characters, or with their full-width forms (`＝ ＋ － ＠`, which some
 *   spreadsheets read as the ASCII ones), gets a single quote (`'`) in front: spreadsheets show
 *   the text as typed and run nothing. The quote is part of the value for any other reader;
 *   this is the trade-off OWASP recommends. Numbers and booleans are written as they are: their
 *   text (`-3`, `1e+21`, `true`) is a value, never a formula.
 *
 * @see https://www.rfc-editor.org/rfc/rfc4180
 * @see https://owasp.org/www-community/attacks/CSV_Injection
 */
import { InputError } from "../../lib/errors.ts";

/** A cell value. `null` and `undefined` are written as an empty field. */
export type CsvValue = string | number | boolean | null | undefined;

/** First characters that make a spreadsheet treat a text cell as a formula. */
export const FORMULA_STARTS: readonly string[] = ["=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠"];

/** Line ending between records (RFC 4180). */
export const CSV_EOL = "\r\n";

/**
 * A text cell made inert in spreadsheets: prefixed with `'` when it begins with one of
 * {@link FORMULA_STARTS}, else unchanged.
 */
export function neutraliseFormula(text: string): string {
  return FORMULA_STARTS.some((c) => text.startsWith(c)) ? `'${text}` : text;
}

/** One field, neutralised (text only) and quoted when RFC 4180 requires it. */
export function csvField(value: CsvValue): string {
  let text: string;
  if (value === null || value === undefined) text = "";
  else if (typeof value === "number") {
    // NaN and Infinity are no spreadsheet numbers; an empty field says "no value" plainly.
    text = Number.isFinite(value) ? String(value) : "";
  } else if (typeof value === "boolean") text = String(value);
  else text = neutraliseFormula(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * A whole CSV document: the header, then one record per row, each ended by CRLF.
 *
 * @param header - column names (neutralised like any text cell).
 * @param rows - one array per record, as long as the header.
 * @throws {InputError} `E_INPUT` when a row's length differs from the header's (a report
 *   with shifted columns would mislead its reader), or when the header is empty.
 */
export function toCsv(header: readonly string[], rows: readonly (readonly CsvValue[])[]): string {
  if (header.length === 0) throw new InputError("header", "a CSV report needs at least one column");
  const lines = [header.map(csvField).join(",")];
  for (const [i, row] of rows.entries()) {
    if (row.length !== header.length) {
      throw new InputError(
        "rows",
        `CSV report row ${i + 1} has ${row.length} field(s) but the header has ${header.length}`,
      );
    }
    lines.push(row.map(csvField).join(","));
  }
  return `${lines.join(CSV_EOL)}${CSV_EOL}`;
}
