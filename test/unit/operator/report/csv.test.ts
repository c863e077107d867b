/**
 * CSV written by the tool: RFC 4180 quoting, and cells that a spreadsheet would run as
 * formulas made inert. Examples, then properties over arbitrary text (fast-check), read back
 * with an independent parser (csv-parse).
 */
import { parse } from "csv-parse/sync";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InputError } from "../../../../lib/errors.ts";
import { type CsvValue, csvField, FORMULA_STARTS, toCsv } from "../../../../operator/report/csv.ts";

const RUNS = 500;

/** Reads a CSV document back the way a strict RFC 4180 reader does. */
function readBack(csv: string): string[][] {
  return parse(csv, { relax_column_count: false, record_delimiter: "\r\n", bom: false }) as string[][];
}

/** What a reader must see for a text cell: the text, with a `'` in front when it could run. */
function expected(text: string): string {
  return FORMULA_STARTS.some((c) => text.startsWith(c)) ? `'${text}` : text;
}

describe("toCsv examples", () => {
  it("writes a header and rows with CRLF after every record, quoting only what needs it", () => {
    const csv = toCsv(
      ["user", "email", "credentials"],
      [
        ["alice", "alice@example.com", 1],
        ["Carol, Ops", 'say "hi"', 0],
        ["multi\nline", "", null],
      ],
    );
    expect(csv).toBe(
      'user,email,credentials\r\nalice,alice@example.com,1\r\n"Carol, Ops","say ""hi""",0\r\n"multi\nline",,\r\n',
    );
  });

  it.each([
    ['=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'],
    ["+1+1", "'+1+1"],
    ["-2+3", "'-2+3"],
    ["@SUM(A1)", "'@SUM(A1)"],
    ["\t=1", "'\t=1"],
    ["\r=1", "'\r=1"],
    ["＝1+1", "'＝1+1"],
    ["a=b", "a=b"],
    [" =1", " =1"],
    ["'already quoted", "'already quoted"],
  ])("text %j is read back as %j", (cell, shown) => {
    const back = readBack(toCsv(["c"], [[cell]]));
    expect(back[1]?.[0]).toBe(shown);
  });

  it("neutralises the header too, and leaves numbers and booleans as values", () => {
    expect(toCsv(["=cmd", "n"], [[-3, true]])).toBe("'=cmd,n\r\n-3,true\r\n");
    expect(csvField(Number.NaN)).toBe("");
    expect(csvField(undefined)).toBe("");
    expect(csvField(1e21)).toBe("1e+21");
  });

  it("refuses a row whose length differs from the header's, naming the row", () => {
    expect(() => toCsv(["a", "b"], [["1", "2"], ["3"]])).toThrow(InputError);
    expect(() => toCsv(["a", "b"], [["1", "2"], ["3"]])).toThrow(/row 2 has 1 field\(s\) but the header has 2/);
    expect(() => toCsv([], [])).toThrow(/at least one column/);
  });

  it("writes just the header for no rows", () => {
    expect(toCsv(["a"], [])).toBe("a\r\n");
  });
});

// Text drawn from characters that matter to CSV and to spreadsheets, plus any Unicode.
const CHARS = [..."ab1 ,\"\r\n\t=+-@'＝＋－＠é李", "😀"];
const text = fc.oneof(
  fc.string({ unit: fc.constantFrom(...CHARS), maxLength: 30 }),
  fc.string({ unit: "grapheme", maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 30 }),
);
const value: fc.Arbitrary<CsvValue> = fc.oneof(
  text,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
);
const table = fc.tuple(fc.array(text, { minLength: 1, maxLength: 6 }), fc.nat({ max: 8 })).chain(([header, n]) =>
  fc.tuple(
    fc.constant(header),
    fc.array(fc.array(value, { minLength: header.length, maxLength: header.length }), {
      minLength: n,
      maxLength: n,
    }),
  ),
);

function shown(v: CsvValue): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "";
  if (typeof v === "boolean") return String(v);
  return expected(v);
}

describe("toCsv properties", () => {
  it("an RFC 4180 reader gets back every cell (text with a ' in front when it could run), in shape", () => {
    fc.assert(
      fc.property(table, ([header, rows]) => {
        const csv = toCsv(header, rows);
        expect(csv.endsWith("\r\n")).toBe(true);
        const back = readBack(csv);
        expect(back).toEqual([header.map(expected), ...rows.map((r) => r.map(shown))]);
      }),
      { numRuns: RUNS },
    );
  });

  it("no text cell read back begins with a formula character", () => {
    fc.assert(
      fc.property(table, ([header, rows]) => {
        const back = readBack(toCsv(header, rows));
        const textCells = [header, ...rows].flatMap((r, i) =>
          (back[i] ?? []).filter((_, j) => typeof (r as readonly CsvValue[])[j] === "string"),
        );
        for (const cell of textCells) {
          expect(
            FORMULA_STARTS.some((c) => cell.startsWith(c)),
            JSON.stringify(cell),
          ).toBe(false);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("throws nothing but InputError, whatever the shapes", () => {
    fc.assert(
      fc.property(
        fc.array(text, { maxLength: 4 }),
        fc.array(fc.array(value, { maxLength: 5 }), { maxLength: 5 }),
        (h, rows) => {
          try {
            toCsv(h, rows);
          } catch (e) {
            expect(e).toBeInstanceOf(InputError);
            expect((e as InputError).code).toBe("E_INPUT");
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});
