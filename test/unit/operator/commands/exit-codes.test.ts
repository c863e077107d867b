/**
 * The one table of exit codes: lib/errors.ts EXIT_CODES, and README's "Exit codes" table,
 * which must say the same.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT, EXIT_CODES, exitCodeFor, exitCodeForCode, KeystoneTotpError } from "../../../../lib/errors.ts";
import { exitCodeFromOutput } from "../../../../operator/commands/engine.ts";
import { retireFailedExitCode } from "../../../../operator/commands/retire-failed.ts";
import { exitCodeForResults } from "../../../../operator/doctor/types.ts";
import { REPO } from "../../../support/keystone.ts";

/** README's table: exit code -> the error codes its row names. */
function readmeTable(): Map<number, string[]> {
  const readme = readFileSync(join(REPO, "README.md"), "utf8");
  const start = readme.indexOf("\n### Exit codes\n");
  expect(start, "README has a '### Exit codes' section").toBeGreaterThan(0);
  const section = readme.slice(start + 1).split(/\n#{2,3} /)[0] ?? "";
  const rows = new Map<number, string[]>();
  for (const line of section.split("\n")) {
    const m = /^\|\s*(\d+)\s*\|.*\|([^|]*)\|\s*$/.exec(line);
    if (m)
      rows.set(
        Number(m[1]),
        [...(m[2] ?? "").matchAll(/`(E_[A-Z_]+)`/g)].map((x) => x[1] as string),
      );
  }
  return rows;
}

describe("exit codes", () => {
  it("README's table names every error code with the exit code EXIT_CODES gives it, and nothing else", () => {
    const fromReadme: Record<string, number> = {};
    for (const [exit, codes] of readmeTable()) for (const c of codes) fromReadme[c] = exit;
    expect(fromReadme).toEqual({ ...EXIT_CODES });
  });

  it("README's table has a row for every exit code a command uses, and no other", () => {
    expect([...readmeTable().keys()].sort((a, b) => a - b)).toEqual(Object.values(EXIT).sort((a, b) => a - b));
  });

  it("every way of reaching an exit code reads the same table", () => {
    for (const [code, exit] of Object.entries(EXIT_CODES)) {
      expect(exitCodeFor(new KeystoneTotpError(code as keyof typeof EXIT_CODES, "x"))).toBe(exit);
      expect(exitCodeForCode(code)).toBe(exit);
      expect(exitCodeFromOutput(`error: update failed: [${code}] something`)).toBe(exit);
      expect(retireFailedExitCode([{ user: "u@D", ids: ["c1"], at: "", code, error: "x" }])).toBe(exit);
      expect(
        exitCodeForResults([
          { id: "a", title: "a", status: "failure", message: "x", code: code as keyof typeof EXIT_CODES },
        ]),
      ).toBe(exit);
    }
    expect(exitCodeFor(new Error("bug"))).toBe(EXIT.failed);
    expect(exitCodeFromOutput("error: something else")).toBe(EXIT.failed);
    expect(exitCodeForCode("E_NOT_OURS")).toBe(EXIT.failed);
    // A failed DELETE without one of our codes is still a Keystone call.
    expect(retireFailedExitCode([{ user: "u@D", ids: ["c1"], at: "", error: "x" }])).toBe(EXIT.keystone);
  });
});
