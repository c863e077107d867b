/** How a list of check results becomes the doctor's exit code. */
import { describe, expect, it } from "vitest";
import { exitCodeForResults, result } from "../../../../operator/doctor/types.ts";

describe("exitCodeForResults", () => {
  it("is 0 with warnings only, else the first failure's: 2 input, 3 Keystone, 4 mail, 1 other", () => {
    const ok = result("a", "a", "ok", "");
    const warn = result("b", "b", "warning", "");
    expect(exitCodeForResults([ok, warn])).toBe(0);
    expect(exitCodeForResults([ok, result("c", "c", "failure", "", { code: "E_SMTP" })])).toBe(4);
    expect(
      exitCodeForResults([
        result("c", "c", "failure", "", { code: "E_CSV_ROW" }),
        result("d", "d", "failure", "", { code: "E_KEYSTONE_FORBIDDEN" }),
      ]),
    ).toBe(2);
    expect(exitCodeForResults([result("e", "e", "failure", "")])).toBe(1);
  });
});
