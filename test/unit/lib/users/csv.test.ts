import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CsvError } from "../../../../lib/errors.ts";
import {
  MAX_CSV_BYTES,
  MAX_PROBLEMS,
  MAX_USERS,
  parseUsersCsv,
  readUsersCsv,
  type UserRow,
  userKey,
} from "../../../../lib/users/csv.ts";
import { CSV_FIXTURES, GOOD_FIXTURES, hostileFixtures } from "../../../fixtures/csv/corpus.ts";
import { oversizedCsv, usersCsv, writeOversizedCsv } from "../../../fixtures/csv/make-large.ts";

const fixture = (name: string): string => join(CSV_FIXTURES, name);

/** The CsvError thrown by `fn`, failing the test if it throws nothing or something else. */
function csvError(fn: () => unknown): CsvError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CsvError);
    return err as CsvError;
  }
  throw new Error("expected a CsvError, but nothing was thrown");
}

/** `line column` of each problem, for compact assertions. */
const places = (err: CsvError): string[] => err.problems.map((p) => `${p.line} ${p.column ?? "-"}`);

const user = (u: Partial<UserRow> & Pick<UserRow, "line" | "username" | "email">): UserRow => {
  const domain = u.domain ?? "Default";
  return {
    domain,
    userId: undefined,
    displayName: undefined,
    rotationDays: undefined,
    key: userKey(domain, u.username),
    ...u,
  };
};

const parse = (text: string): UserRow[] => parseUsersCsv(text, "users.csv");

describe("good fixtures", () => {
  it("bom.csv: a byte order mark is not part of the first column name", () => {
    expect(readUsersCsv(fixture("bom.csv"))).toEqual([
      user({ line: 2, username: "alice", email: "alice@example.com" }),
      user({ line: 3, username: "bob", email: "bob@example.org", domain: "Engineering" }),
    ]);
  });

  it("crlf.csv: CRLF line ends, also inside a quoted display name", () => {
    expect(readUsersCsv(fixture("crlf.csv"))).toEqual([
      user({ line: 2, username: "alice", email: "alice@example.com", displayName: "Alice Liddell" }),
      user({ line: 3, username: "bob", email: "bob@example.com", displayName: "Bob Builder" }),
      user({ line: 5, username: "carol", email: "carol@example.com" }),
    ]);
  });

  it("mixed-newlines.csv: CRLF, LF and CR in one file, blank lines, no final line end", () => {
    const rows = readUsersCsv(fixture("mixed-newlines.csv"));
    expect(rows.map((r) => [r.line, r.username])).toEqual([
      [2, "alice"],
      [3, "bob"],
      [4, "carol"],
      [7, "dave"],
    ]);
  });

  it("quoted.csv: commas, doubled quotes and line breaks inside quotes", () => {
    expect(readUsersCsv(fixture("quoted.csv"))).toEqual([
      user({ line: 2, username: "alice", email: "alice@example.com", displayName: "Liddell, Alice" }),
      user({ line: 3, username: "bob", email: "bob@example.com", displayName: 'Bob "The Builder" Smith' }),
      user({ line: 4, username: "carol", email: "carol@example.com", displayName: "Carol Danvers" }),
      user({ line: 6, username: "dave", email: "dave@example.com", displayName: "Dave, Jr." }),
    ]);
  });

  it("reordered-columns.csv: columns in any order and case, trimmed; user_id lower-cased", () => {
    expect(readUsersCsv(fixture("reordered-columns.csv"))).toEqual([
      user({
        line: 2,
        username: "alice",
        email: "alice@example.com",
        userId: "0123456789abcdef0123456789abcdef",
        displayName: "Alice",
        rotationDays: 90,
      }),
      user({ line: 3, username: "bob", email: "bob@example.com", domain: "Engineering", displayName: "Bob" }),
    ]);
  });

  it("unicode.csv: non-ASCII names and addresses, NFC-normalised", () => {
    const rows = readUsersCsv(fixture("unicode.csv"));
    expect(rows).toEqual([
      user({ line: 2, username: "zoë", email: "zoe@exämple.com", domain: "Défaut", displayName: "Zoë Ångström" }),
      user({ line: 3, username: "josé", email: "josé@example.com", displayName: "José Núñez" }),
      user({ line: 4, username: "李雷", email: "li.lei@例子.中国", displayName: "李雷" }),
      user({ line: 5, username: "rené", email: "rene@example.com", displayName: "René Magritte" }),
    ]);
    // The file holds "rene" + U+0301 (NFD); the row holds the single character é.
    expect(readFileSync(fixture("unicode.csv"), "utf8")).toContain("rene\u0301");
    expect(rows[3]?.username).toBe("ren\u00e9");
  });

  it("missing-domain-column.csv: domain defaults to Default", () => {
    expect(readUsersCsv(fixture("missing-domain-column.csv")).map((r) => r.key)).toEqual([
      "alice@Default",
      "bob@Default",
    ]);
  });
});

describe("hostile fixtures", () => {
  it("broken-quoting.csv: E_CSV naming the line", () => {
    const err = csvError(() => readUsersCsv(fixture("broken-quoting.csv")));
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(["3 -"]);
    expect(err.message).toContain("broken-quoting.csv:3: a quote appears inside an unquoted field");
  });

  it("unclosed-quote.csv: names the line where the open quote's row starts", () => {
    const err = csvError(() => readUsersCsv(fixture("unclosed-quote.csv")));
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(["3 -"]);
    expect(err.problems[0]?.message).toMatch(/never closed/);
  });

  it("an open quote followed by a large file is cut short and named", () => {
    const tail = Array.from({ length: 5_000 }, (_, i) => `u${i},u${i}@example.com,User ${i}`).join("\n");
    const err = csvError(() =>
      parse(`username,email,display_name\na,a@example.com,ok\nb,b@example.com,"oops\n${tail}`),
    );
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(["3 -"]);
    expect(err.problems[0]?.message).toMatch(/quote is probably left open/);
  });

  it("a quote closed lines later is placed where its row starts", () => {
    const err = csvError(() =>
      parse('username,email,display_name\na,a@example.com,"oops\nb,b@example.com,"Bob"\nc,c@example.com,C\n'),
    );
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(["2 -"]);
    expect(err.problems[0]?.message).toMatch(/^text follows the closing quote of a field \(noticed on line 3\)/);
  });

  it("duplicate-users.csv: case-only duplicates and repeated IDs, naming both lines", () => {
    const err = csvError(() => readUsersCsv(fixture("duplicate-users.csv")));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual(["4 username", "7 user_id", "8 username"]);
    expect(err.problems[0]).toMatchObject({ user: "Alice@default", message: expect.stringMatching(/line 2\b/) });
    expect(err.problems[1]?.message).toMatch(/line 6\b/);
    expect(err.problems[2]).toMatchObject({ user: "bob@Default", message: expect.stringMatching(/line 3\b/) });
    // alice in Engineering (line 5) is another user: not reported.
    expect(err.problems.some((p) => p.line === 5)).toBe(false);
  });

  it("empty-email.csv: every bad row at once", () => {
    const err = csvError(() => readUsersCsv(fixture("empty-email.csv")));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual(["3 email", "4 email", "5 email"]);
    expect(err.problems.map((p) => p.user)).toEqual(["bob@Default", "carol@Default", "dave@Default"]);
    expect(err.message).toMatch(/^invalid users CSV .*empty-email\.csv: 3 problem\(s\); nothing was changed\n/);
  });

  it("formula-injection.csv: cells that start like a formula are read as they are (Keystone allows such names)", () => {
    expect(readUsersCsv(fixture("formula-injection.csv"))).toEqual([
      user({ line: 2, username: "=cmd()", email: "eve@example.com", displayName: "Eve" }),
      user({ line: 3, username: "alice", email: "alice@example.com", displayName: "+SUM(1+1)" }),
      user({ line: 4, username: "@foo", email: "foo@example.com", displayName: "Foo" }),
      user({
        line: 5,
        username: "=HYPERLINK(evil)",
        email: "+evil@example.com",
        displayName: "+cmd|' /C calc'!A0",
      }),
      user({ line: 6, username: "carol", email: "carol@example.com", displayName: "Carol", domain: "-2+3" }),
    ]);
  });

  it("a formula in the email column is still refused when it is not an address", () => {
    const err = csvError(() => parse('username,email\nbob,"=HYPERLINK(""http://evil.example"")"\n'));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual(["2 email"]);
    expect(err.problems[0]?.message).toMatch(/is not an email address/);
  });

  it("a formula-like name with a control character is still refused", () => {
    const err = csvError(() => parse('username,email\n"=HYPERLINK(x)\u0007",a@example.com\n'));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual(["2 username"]);
    expect(err.problems[0]?.message).toMatch(/control or invisible character \(U\+0007\)/);
  });

  it("bad-rows.csv: each problem names its line and column", () => {
    const err = csvError(() => readUsersCsv(fixture("bad-rows.csv")));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual([
      "3 username",
      "4 email",
      "5 user_id",
      "6 rotation_days",
      "7 email",
      "8 rotation_days",
      "9 rotation_days",
      "10 email",
    ]);
    expect(err.problems[0]?.user).toBeUndefined();
    expect(err.problems[1]?.user).toBe("bob@Default");
  });

  // binary-junk.bin is committed, but reproducible: 512 bytes of a 31-bit LCG (seed 1, byte =
  // bits 16..23), with every 37th byte from byte 0 set to NUL. (No README sits beside the
  // fixtures: every non-.ts file there that is not a good fixture is hostile; corpus.ts.)
  it("binary-junk.bin is the deterministic LCG junk described here", () => {
    let x = 1;
    const junk = Uint8Array.from({ length: 512 }, (_, i) => {
      x = (Math.imul(1103515245, x) + 12345) & 0x7fffffff;
      return i % 37 === 0 ? 0 : (x >> 16) & 0xff;
    });
    expect(new Uint8Array(readFileSync(fixture("binary-junk.bin")))).toEqual(junk);
  });

  it("binary-junk.bin: E_CSV, not UTF-8", () => {
    const err = csvError(() => readUsersCsv(fixture("binary-junk.bin")));
    expect(err.code).toBe("E_CSV");
    expect(err.problems).toHaveLength(1);
    expect(err.message).toMatch(
      /is not UTF-8 text \(byte 0x[0-9A-F]{2} at offset \d+, line \d+\); save it as 'CSV UTF-8/,
    );
  });

  it("latin1.csv: names the offset and line of the first bad byte", () => {
    const err = csvError(() => readUsersCsv(fixture("latin1.csv")));
    expect(err.code).toBe("E_CSV");
    const offset = readFileSync(fixture("latin1.csv")).indexOf(0xe9);
    expect(err.problems[0]?.message).toContain(`byte 0xE9 at offset ${offset}, line 3`);
  });

  it("utf16.csv: says UTF-16", () => {
    const err = csvError(() => readUsersCsv(fixture("utf16.csv")));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toMatch(/is UTF-16 text, not UTF-8/);
  });

  it("missing-columns.csv: E_CSV naming each missing required column", () => {
    const err = csvError(() => readUsersCsv(fixture("missing-columns.csv")));
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(["1 username", "1 email"]);
  });

  it("unknown-column.csv: a typo is not ignored; the known columns are listed", () => {
    const err = csvError(() => readUsersCsv(fixture("unknown-column.csv")));
    expect(err.code).toBe("E_CSV");
    expect(places(err)).toEqual(['1 "e-mail"', "1 email"]);
    expect(err.problems[0]?.message).toBe(
      'unknown column; the known columns are username, email, domain, user_id, display_name, rotation_days; did you mean "email"?',
    );
  });

  it("semicolons.csv: suggests saving as comma-separated", () => {
    const err = csvError(() => readUsersCsv(fixture("semicolons.csv")));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toMatch(/seem separated by ';'/);
  });

  it.each([
    ["header-only.csv", /no users below the header.*pulumi destroy/],
    ["empty.csv", /has no header row and no users/],
  ])("%s: E_CSV, no users", (name, message) => {
    const err = csvError(() => readUsersCsv(fixture(name)));
    expect(err.code).toBe("E_CSV");
    expect(err.problems).toHaveLength(1);
    expect(err.message).toMatch(message);
  });

  // The whole corpus, named or not above: a file added to the folder is refused or listed as good.
  it.each(hostileFixtures().map((f) => [basename(f), f]))("%s: refused, naming the file", (name, path) => {
    const err = csvError(() => readUsersCsv(path));
    expect(err.code).toMatch(/^E_CSV/);
    expect(err.message).toContain(name);
    expect(err.problems.length).toBeGreaterThan(0);
  });

  it("every good fixture is read", () => {
    for (const name of GOOD_FIXTURES) expect(readUsersCsv(fixture(name)).length, name).toBeGreaterThan(0);
  });
});

describe("file limits", () => {
  const dir = mkdtempSync(join(tmpdir(), "keystone-totp-csv-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a 10 MB file before reading it, with its size and the limit", () => {
    const path = join(dir, "huge.csv");
    writeOversizedCsv(path);
    const err = csvError(() => readUsersCsv(path));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toContain(`${path}: is 10.0 MiB (`);
    expect(err.message).toContain(`the limit is 8.0 MiB (${MAX_CSV_BYTES} bytes)`);
  });

  it("refuses oversized input given as bytes or text", () => {
    const text = oversizedCsv(MAX_CSV_BYTES + 1);
    expect(csvError(() => parseUsersCsv(new TextEncoder().encode(text), "x.csv")).message).toMatch(/limit is 8.0 MiB/);
    expect(csvError(() => parseUsersCsv(text, "x.csv")).message).toMatch(/limit is 8.0 MiB/);
  });

  it("refuses more than MAX_USERS rows, however short", () => {
    const err = csvError(() => parse(`username,email\n${"x,\n".repeat(MAX_USERS + 5)}`));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toContain(`has more than ${MAX_USERS} users (line ${MAX_USERS + 2}`);
  });

  it("names a missing file and what to do", () => {
    const path = join(dir, "nope.csv");
    const err = csvError(() => readUsersCsv(path));
    expect(err.code).toBe("E_CSV");
    expect(err.file).toBe(path);
    expect(err.message).toMatch(/nope\.csv: cannot be read: no such file .*check the path/);
  });

  it("refuses a directory", () => {
    const err = csvError(() => readUsersCsv(dir));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toMatch(/is not a regular file/);
  });

  it("lists at most MAX_PROBLEMS problems, then a count", () => {
    const rows = Array.from({ length: 300 }, (_, i) => `user${i},`).join("\n");
    const err = csvError(() => parse(`username,email\n${rows}`));
    expect(err.problems).toHaveLength(MAX_PROBLEMS + 1);
    expect(err.problems.at(-1)).toEqual({ line: 0, message: "... and 100 more problem(s); fix these first" });
  });

  it("parses 10,000 rows well under a second", () => {
    const bytes = new TextEncoder().encode(usersCsv(10_000));
    parseUsersCsv(bytes, "warm-up.csv");
    const start = performance.now();
    const rows = parseUsersCsv(bytes, "big.csv");
    const ms = performance.now() - start;
    expect(rows).toHaveLength(10_000);
    expect(rows[9_999]).toMatchObject({ line: 10_001, username: "user9999", displayName: "User 9999, Tester" });
    expect(ms).toBeLessThan(1_000);
  });
});

describe("header", () => {
  it("matches names trimmed and case-insensitively", () => {
    expect(parse(" UserName ,\tEMAIL\t\nx,x@example.com\n")).toHaveLength(1);
  });

  it("refuses a column given twice", () => {
    const err = csvError(() => parse("username,email,Email\na,a@example.com,b@example.com\n"));
    expect(err.code).toBe("E_CSV");
    expect(err.problems).toEqual([{ line: 1, column: "email", message: "appears twice (columns 2 and 3); keep one" }]);
  });

  it("says a header row is needed when the first line looks like data", () => {
    const err = csvError(() => parse("alice,alice@example.com\n"));
    expect(err.problems.at(-1)?.message).toMatch(/first line must be a header row/);
  });

  it("finds the header below leading blank lines", () => {
    expect(parse("\n\n username,email\na,a@example.com\n")[0]?.line).toBe(4);
  });

  it("accepts unnamed empty columns but not values under them", () => {
    expect(parse("username,email,,\na,a@example.com,,\n")).toHaveLength(1);
    const err = csvError(() => parse("username,email,\na,a@example.com,oops\nb,b@example.com,c,d\n"));
    expect(err.code).toBe("E_CSV_ROW");
    expect(places(err)).toEqual(["2 -", "3 -"]);
    expect(err.problems[0]?.message).toMatch(/value in column 3, which has no name/);
  });

  it("accepts short rows: missing trailing cells are empty", () => {
    expect(parse("username,email,domain\na,a@example.com\n")[0]?.domain).toBe("Default");
  });
});

describe("rows", () => {
  const one = (row: string, header = "username,email,domain,user_id,display_name,rotation_days"): UserRow[] =>
    parse(`${header}\n${row}\n`);
  const problem = (row: string) => {
    const err = csvError(() => one(row));
    expect(err.code).toBe("E_CSV_ROW");
    return err.problems;
  };

  it("skips fully blank lines, including lines of empty cells, but not partly empty rows", () => {
    const rows = parse("username,email\n\n   \n,\n , \na,a@example.com\n");
    expect(rows.map((r) => r.line)).toEqual([6]);
    expect(places(csvError(() => parse("username,email\n,a@example.com\n")))).toEqual(["2 username"]);
  });

  it("uses Default for an empty domain cell", () => {
    expect(one("a,a@example.com,,,,")[0]?.domain).toBe("Default");
  });

  it("folds whitespace in display names", () => {
    expect(one('a,a@example.com,,,"  Ada \t\n  Lovelace ",')[0]?.displayName).toBe("Ada Lovelace");
  });

  it.each([
    ["255 characters", "x".repeat(255), true],
    ["256 characters", "x".repeat(256), false],
    ["255 astral characters", "😀".repeat(255), true],
    ["a control character", "ab\u0007c", false],
    ["a bidi override", "admin\u202egnp", false],
    ["a leading hyphen", "-svc", true],
    ["a formula", "=HYPERLINK(evil)", true],
    ["a leading @", "@svc", true],
    ["an @ inside", "alice@corp", true],
  ])("user name with %s: accepted=%s", (_what, name, ok) => {
    if (ok) expect(one(`"${name}",a@example.com,,,,`)[0]?.username).toBe(name);
    else expect(problem(`"${name}",a@example.com,,,,`).map((p) => p.column)).toEqual(["username"]);
  });

  it.each([
    ["plain", "alice@example.com", true],
    ["plus tag", "alice+totp@mail.example.com", true],
    ["a formula-like local part", "=alice@example.com", true],
    ["IDN domain", "alice@bücher.example", true],
    ["non-ASCII local part", "δοκιμή@παράδειγμα.δοκιμή", true],
    ["254 characters", `${"a".repeat(64)}@${"b".repeat(185)}.com`, true],
    ["255 characters", `${"a".repeat(64)}@${"b".repeat(186)}.com`, false],
    ["no @", "alice.example.com", false],
    ["two @", "alice@x@example.com", false],
    ["a leading @", "@example.com", false],
    ["no dot in the domain", "alice@localhost", false],
    ["trailing dot", "alice@example.com.", false],
    ["double dot", "alice@example..com", false],
    ["inner space", "alice smith@example.com", false],
    ["a name and brackets", "Alice <alice@example.com>", false],
    ["two addresses", "a@example.com; b@example.com", false],
    ["a tab", "alice\t@example.com", false],
  ])("email %s: accepted=%s", (_what, email, ok) => {
    const row = `a,"${email}",,,,`;
    if (ok) expect(one(row)[0]?.email).toBe(email);
    else expect(problem(row).map((p) => p.column)).toEqual(["email"]);
  });

  it.each([
    ["32 hex digits", "0123456789abcdef0123456789abcdef", true],
    ["64 hex digits", "ab".repeat(32), true],
    ["a UUID", "123e4567-e89b-12d3-a456-426614174000", true],
    ["65 hex digits", "a".repeat(65), false],
    ["non-hex", "alice", false],
    ["only hyphens", "---", false],
    ["a formula", "=cmd()", false],
  ])("user_id with %s: accepted=%s", (_what, id, ok) => {
    const row = `a,a@example.com,,"${id}",,`;
    if (ok) expect(one(row)[0]?.userId).toBe(id);
    else expect(problem(row).map((p) => p.column)).toEqual(["user_id"]);
  });

  it.each([
    ["1", 1],
    ["3650", 3650],
    ["030", 30],
    ["0", undefined],
    ["3651", undefined],
    ["-5", undefined],
    ["1.5", undefined],
    ["1e3", undefined],
    ["ten", undefined],
    ["99999999999", undefined],
  ])("rotation_days %s", (days, expected) => {
    const row = `a,a@example.com,,,,${days}`;
    if (expected !== undefined) expect(one(row)[0]?.rotationDays).toBe(expected);
    else expect(problem(row).map((p) => p.column)).toEqual(["rotation_days"]);
  });

  it("refuses a domain with a control character or too long", () => {
    expect(problem(`a,a@example.com,"Dom\u0001ain",,,`).map((p) => p.column)).toEqual(["domain"]);
    expect(problem(`a,a@example.com,${"d".repeat(65)},,,`).map((p) => p.column)).toEqual(["domain"]);
  });

  it("reports every problem of one row", () => {
    expect(problem(",nope,,zz,,0").map((p) => p.column)).toEqual(["username", "email", "user_id", "rotation_days"]);
  });

  it("never echoes control characters (a name cannot drive the terminal)", () => {
    const err = csvError(() => one(`"evil\u001b[2J",a@example.com,,,,`));
    expect(err.message).not.toContain("\u001b");
    expect(err.problems[0]?.user).toBe("evil<U+001B>[2J@Default");
  });

  it("does not dump long values", () => {
    const err = csvError(() => one(`a,${"x".repeat(10_000)},,,,`));
    expect(err.message.length).toBeLessThan(500);
  });
});

describe("text input", () => {
  it("accepts a BOM and CRLF in a string", () => {
    expect(parse("\ufeffusername,email\r\na,a@example.com\r\n")).toHaveLength(1);
  });

  it.each([
    ["a NUL", "username,email\na\u0000,a@example.com\n", /NUL character at character 16 \(line 2\)/],
    ["a lone surrogate", "username,email\na\ud800,a@example.com\n", /lone surrogate at character 16, line 2/],
    ["U+FFFD", "username,email\nren\ufffd,a@example.com\n", /U\+FFFD at character 18 \(line 2\)/],
  ])("refuses %s as a whole-file problem", (_what, text, message) => {
    const err = csvError(() => parse(text));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toMatch(message);
  });

  it("refuses a NUL in bytes that are otherwise UTF-8", () => {
    const err = csvError(() => parseUsersCsv(new Uint8Array([0x61, 0x00, 0x0a]), "x.csv"));
    expect(err.code).toBe("E_CSV");
    expect(err.message).toMatch(/NUL character/);
  });
});

describe("userKey", () => {
  it("is username@domain with @, %, : and control characters percent-encoded", () => {
    expect(userKey("Default", "a@b.com")).toBe("a%40b.com@Default");
    expect(userKey("Dom:ain", "a::b%")).toBe("a%3A%3Ab%25@Dom%3Aain");
    expect(userKey("Default", "a\u0000b\u0085")).toBe("a%00b%C2%85@Default");
  });

  it("keeps case and non-ASCII, NFC-normalised", () => {
    expect(userKey("Défaut", "Zoe\u0308")).toBe("Zoë@Défaut");
    expect(userKey("Default", "Alice")).not.toBe(userKey("Default", "alice"));
  });

  it("never contains '::' and is distinct for distinct users", () => {
    const users = [
      ["a", "b@c"],
      ["a@b", "c"],
      ["a:", ":b"],
      ["a", ":b"],
      ["a%40b", "c"],
    ] as const;
    const keys = users.map(([d, u]) => userKey(d, u));
    for (const k of keys) expect(k).not.toContain("::");
    expect(new Set(keys).size).toBe(users.length);
  });
});

describe("CsvError from parseUsersCsv", () => {
  it("formats file:line (column) [user] for each problem", () => {
    const err = csvError(() => parse("username,email\nalice,\n"));
    expect(err.message).toBe(
      "invalid users CSV users.csv: 1 problem(s); nothing was changed\n" +
        "  users.csv:2 (column email) [alice@Default]: the email address is empty; every user needs one to receive their QR code",
    );
  });
});
