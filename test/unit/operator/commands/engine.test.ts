/**
 * The stack's settings are read by one `pulumi config --show-secrets` per command run, however
 * many parts of the command ask (the local-Keystone default, the MFA login, the CSV check, the
 * skip's fingerprint): each read is a CLI process that derives the passphrase's key.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigMap, Stack } from "@pulumi/pulumi/automation/index.js";
import { describe, expect, it } from "vitest";
import { allConfigOf, readStackCsv, stackConfig, stackSetting } from "../../../../operator/commands/engine.ts";
import type { EngineOptions } from "../../../../operator/commands/options.ts";

/** A stack whose every settings read is counted, answering `answers` in turn. */
function countingStack(answers: (() => Promise<ConfigMap>)[]): { stack: Stack; reads: () => number } {
  let reads = 0;
  const stack = {
    getAllConfig: () => {
      const answer = answers[Math.min(reads, answers.length - 1)];
      reads += 1;
      if (!answer) throw new Error("no answer");
      return answer();
    },
  } as unknown as Stack;
  return { stack, reads: () => reads };
}

const SETTINGS: ConfigMap = {
  "keystone-totp:usersCsv": { value: "/nonexistent/users.csv", secret: false },
  "openstack:password": { value: "pw", secret: true },
};

describe("the stack's settings, read once per command", () => {
  it("answers every reader from one read", async () => {
    const { stack, reads } = countingStack([async () => SETTINGS]);
    const o = { configFile: undefined } as unknown as EngineOptions;
    const config = await stackConfig(stack, o);
    expect(config("openstack:password")).toBe("pw");
    expect(await stackSetting(stack, o, "keystone-totp:usersCsv")).toBe("/nonexistent/users.csv");
    expect((await allConfigOf(stack))["openstack:password"]?.value).toBe("pw");
    // The CSV check reads the same settings (its file is missing: a CSV error, not a new read).
    await expect(readStackCsv(stack, o)).rejects.toMatchObject({ code: "E_CSV" });
    expect(reads()).toBe(1);
  });

  it("keeps each stack's own settings apart", async () => {
    const a = countingStack([async () => SETTINGS]);
    const b = countingStack([async () => ({ "keystone-totp:usersCsv": { value: "b.csv", secret: false } })]);
    expect((await allConfigOf(a.stack))["keystone-totp:usersCsv"]?.value).toBe("/nonexistent/users.csv");
    expect((await allConfigOf(b.stack))["keystone-totp:usersCsv"]?.value).toBe("b.csv");
    expect([a.reads(), b.reads()]).toEqual([1, 1]);
  });

  it("asks again after a failed read instead of keeping the failure", async () => {
    const { stack, reads } = countingStack([
      async () => {
        throw new Error("pulumi config: exit 255");
      },
      async () => SETTINGS,
    ]);
    await expect(allConfigOf(stack)).rejects.toThrow(/exit 255/);
    expect((await allConfigOf(stack))["openstack:password"]?.value).toBe("pw");
    expect(reads()).toBe(2);
  });

  it("reads --config-file itself, never the stack", async () => {
    const { stack, reads } = countingStack([async () => SETTINGS]);
    const dir = mkdtempSync(join(tmpdir(), "kt-engine-"));
    try {
      const configFile = join(dir, "Pulumi.s.yaml");
      writeFileSync(configFile, "config:\n  keystone-totp:usersCsv: from-file.csv\n");
      const config = await stackConfig(stack, { configFile } as unknown as EngineOptions);
      expect(config("keystone-totp:usersCsv")).toBe("from-file.csv");
      expect(config("openstack:password")).toBeUndefined();
      expect(reads()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
