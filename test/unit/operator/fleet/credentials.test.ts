import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import { loadCredentialSpecs } from "../../../../operator/fleet/credentials.ts";

describe("loadCredentialSpecs", () => {
  it("reads named entries", () => {
    const specs = loadCredentialSpecs({
      alice: { userName: "alice", issuer: "ACME", rotationTrigger: 3 },
      ops: { userId: "abc", secretConfigKey: "opsSecret" },
    });
    expect(specs).toEqual([
      { name: "alice", args: { userName: "alice", issuer: "ACME", rotationTrigger: 3 }, secretConfigKey: undefined },
      { name: "ops", args: { userId: "abc" }, secretConfigKey: "opsSecret" },
    ]);
  });

  it("refuses plaintext secrets, unknown keys and missing users, all at once", () => {
    try {
      loadCredentialSpecs({ a: { userName: "a", secret: "X" }, "b c": { issuer: "I", colour: "red" } });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const m = (e as Error).message;
      expect(m).toMatch(/credentials\.a\.secret: never put a secret/);
      expect(m).toMatch(/credentials\.b c: name must be/);
      expect(m).toMatch(/credentials\.b c\.colour: unknown argument/);
      expect(m).toMatch(/credentials\.b c: give userId or userName/);
      expect(m).not.toContain(": X");
    }
  });
});

describe("clashesWithFleet", () => {
  const fleet = [{ key: "alice@Default", userId: "u-alice", username: "alice", domain: "Default" }];
  it("names an entry that is also a CSV user, by ID, by name (any case) or by resource name", async () => {
    const { clashesWithFleet } = await import("../../../../operator/fleet/credentials.ts");
    const specs = loadCredentialSpecs({
      byId: { userId: "u-alice" },
      byName: { userName: "ALICE", userDomain: "default" },
      "alice@Default": { userName: "someone-else" },
      ops: { userName: "ops", userDomain: "Default" },
      other: { userName: "alice", userDomain: "eng" },
    });
    const lines = clashesWithFleet(specs, fleet);
    expect(lines).toHaveLength(3);
    for (const n of ["byId", "byName", "alice@Default"]) {
      expect(
        lines.some((l) => l.startsWith(`keystone-totp:credentials.${n}: alice@Default is also in the users CSV`)),
      ).toBe(true);
    }
  });
});
