import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../providers/errors.ts";
import { loadCredentialSpecs } from "../../../providers/program/credentials.ts";

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
