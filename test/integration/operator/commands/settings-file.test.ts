/**
 * A stack settings file the operator gives (`--config-file`) that cannot be used stops the
 * command before anything exists: exit 2 with `E_CONFIG` naming the file, line and column, no
 * stack created in the backend, no secret of the file repeated. Runs the real `provision`
 * script and the real Pulumi CLI on a file backend of its own (no Keystone is reached).
 */
import { writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { collect } from "../../../support/process.ts";
import { TestStack } from "../../../support/pulumi.ts";

const stack = new TestStack("badcfg");

afterAll(async () => {
  await stack.remove();
});

/** The stacks of the test's backend, by name. */
async function stacks(): Promise<string[]> {
  const r = await collect("pulumi", ["stack", "ls", "--json"], { env: stack.environment(), stdio: "pipe" });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name);
}

describe("provision with a settings file it cannot use", () => {
  it.each([
    [
      "invalid YAML",
      "config:\n  openstack:password: hunter2-clear\n  keystone-totp:usersCsv: [users.csv\n",
      /:\d+:\d+: not valid YAML/,
    ],
    ["a list", "- keystone-totp:usersCsv\n", /must be a mapping \(config: \.\.\.\), not a list/],
    ["config as a list", "config:\n  - keystone-totp:usersCsv\n", /'config' must be a mapping of settings/],
  ])("%s: exit 2, E_CONFIG naming the file, and no stack created", async (_what, text, why) => {
    writeFileSync(stack.configFile, text);
    for (const verb of ["preview", "up"]) {
      const r = await stack.run(verb === "up" ? ["up", "--yes"] : [verb], { allowFail: true });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`[E_CONFIG] ${stack.configFile}`);
      expect(r.stderr).toMatch(why);
      expect(r.stdout + r.stderr).not.toContain("hunter2");
    }
    expect(await stacks()).toEqual([]);
  });
});
