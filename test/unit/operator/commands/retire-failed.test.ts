/**
 * The operator commands' reading of the program's `retireFailed` stack output: the line an
 * operator sees and the exit code of a run whose retirement failed.
 */
import { describe, expect, it } from "vitest";
import {
  formatRetireFailure,
  retireFailedExitCode,
  retireFailuresOf,
} from "../../../../operator/commands/retire-failed.ts";

const failed = {
  user: "alice@Default",
  ids: ["4f1c"],
  at: "2027-01-01T01:00:00.000Z",
  code: "E_KEYSTONE_HTTP",
  error: "DELETE /v3/credentials/4f1c failed: 503; after 6 attempts. Keystone is unavailable",
};

describe("retireFailed stack output", () => {
  it("a failed retirement ends the run with exit 3 and a line naming the user and the credential", () => {
    const fs = retireFailuresOf({ retireFailed: { value: [failed] } });
    expect(fs).toHaveLength(1);
    expect(retireFailedExitCode(fs)).toBe(3);
    const line = formatRetireFailure(fs[0] as (typeof fs)[number]);
    expect(line).toMatch(/^retire failed: alice@Default: old credential 4f1c still valid: \[E_KEYSTONE_HTTP\] DELETE/);
    expect(line).toContain("openstack credential delete 4f1c");
  });

  it("none listed, or a stack of an earlier version without the output: nothing to report", () => {
    expect(retireFailuresOf({ retireFailed: { value: [] } })).toEqual([]);
    expect(retireFailuresOf({ summary: { value: {} } })).toEqual([]);
  });

  it("a failure without one of our codes is still a Keystone failure (exit 3)", () => {
    expect(retireFailedExitCode(retireFailuresOf({ retireFailed: { value: [{ ...failed, code: undefined }] } }))).toBe(
      3,
    );
  });
});
