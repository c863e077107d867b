/**
 * The stack settings files the operator commands read beside Pulumi: a file Pulumi would refuse
 * is refused naming file, line and column, never quoting it (it may hold a password).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import {
  parseSettings,
  parseSettingsDoc,
  readSettingsFile,
  scalarSetting,
} from "../../../../operator/commands/settings-file.ts";

const FILE = "/ops/Pulumi.prod.yaml";

function refusal(text: string): ConfigError {
  try {
    parseSettings(text, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("accepted");
}

describe("stack settings files", () => {
  it("reads config as written; scalars as Pulumi gives them to a program", () => {
    const text = [
      "encryptionsalt: v1:abc",
      "config:",
      "  keystone-totp:usersCsv: users.csv",
      "  keystone-totp:rotationDays: 90",
      "  keystone-totp:enforceMfa: true",
      "  openstack:password:",
      "    secure: v1:cipher",
      "",
    ].join("\n");
    const config = parseSettings(text, FILE);
    expect(scalarSetting(config, "keystone-totp:usersCsv")).toBe("users.csv");
    expect(scalarSetting(config, "keystone-totp:rotationDays")).toBe("90");
    expect(scalarSetting(config, "keystone-totp:enforceMfa")).toBe("true");
    // Secrets stay ciphertext here: the program reads them through Pulumi.
    expect(scalarSetting(config, "openstack:password")).toBeUndefined();
    expect(parseSettingsDoc(text, FILE).encryptionsalt).toBe("v1:abc");
  });

  it("an empty file, or one of comments only, holds no settings (as for Pulumi)", () => {
    for (const text of ["", "\n\n", "# nothing yet\n", "  # indented\n\n# two\n", "config:\n", "config: {}\n"]) {
      expect(parseSettings(text, FILE)).toEqual({});
    }
  });

  it("invalid YAML: the file, line and column, and why, but not the text around it", () => {
    const e = refusal("config:\n  openstack:password: hunter2-in-the-clear\n  keystone-totp:usersCsv: [users.csv\n");
    expect(e.code).toBe("E_CONFIG");
    expect(e.message).toMatch(
      /^\/ops\/Pulumi\.prod\.yaml:\d+:\d+: not valid YAML \(.+\): fix the stack settings file$/,
    );
    expect(e.message).not.toContain("hunter2");
    expect(e.cause).toBeUndefined();
    const tab = refusal("config:\n\tkeystone-totp:issuer: x\n");
    expect(tab.message).toMatch(/^\/ops\/Pulumi\.prod\.yaml:2:\d+: not valid YAML/);
  });

  it("a document that is not a mapping of settings is refused, naming what it is", () => {
    expect(refusal("- a\n- b\n").message).toBe(
      `${FILE}: a stack settings file must be a mapping (config: ...), not a list`,
    );
    expect(refusal("just text\n").message).toMatch(/not a string$/);
    expect(refusal("config:\n  - a\n").message).toBe(
      `${FILE}: 'config' must be a mapping of settings (key: value), not a list`,
    );
  });

  it("a file that cannot be read is refused naming it and why", () => {
    const dir = mkdtempSync(join(tmpdir(), "kt-settings-"));
    try {
      const missing = join(dir, "Pulumi.none.yaml");
      expect(() => readSettingsFile(missing)).toThrow(
        `${missing}: cannot read the stack settings file (no such file): check --config-file`,
      );
      const ok = join(dir, "Pulumi.ok.yaml");
      writeFileSync(ok, "config:\n  keystone-totp:issuer: Example\n");
      expect(scalarSetting(readSettingsFile(ok), "keystone-totp:issuer")).toBe("Example");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
