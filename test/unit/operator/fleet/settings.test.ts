import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
import {
  resolveFleetSettings,
  resolvePostureFlags,
  resolveRotationGraceHours,
} from "../../../../operator/fleet/settings.ts";

const from = (config: Record<string, string>) => (k: string) => config[k];

describe("the posture flags: one reader for the program, status and doctor", () => {
  it("reads each flag, false by default", () => {
    expect(resolvePostureFlags(from({}))).toEqual({
      enforceMfa: false,
      allowTotpOnlyLogin: false,
      refuseApplicationCredentials: false,
      replaceOwnRules: false,
    });
    expect(
      resolvePostureFlags(
        from({
          enforceMfa: "true",
          allowTotpOnlyLogin: "YES",
          refuseApplicationCredentials: "1",
          replaceOwnRules: "no",
        }),
      ),
    ).toEqual({
      enforceMfa: true,
      allowTotpOnlyLogin: true,
      refuseApplicationCredentials: true,
      replaceOwnRules: false,
    });
  });

  it("refuses a value it cannot read (E_CONFIG, naming the key) instead of taking it as false", () => {
    // status and doctor used to read 'ture' as false: a weaker posture than the operator asked for went unreported.
    expect(() => resolvePostureFlags(from({ allowTotpOnlyLogin: "ture" }))).toThrow(ConfigError);
    expect(() => resolvePostureFlags(from({ allowTotpOnlyLogin: "ture" }))).toThrow(
      "keystone-totp:allowTotpOnlyLogin must be true or false, not 'ture'",
    );
  });

  it("is what the program's settings use", () => {
    const config = from({ enforceMfa: "true", replaceOwnRules: "true" });
    expect(resolveFleetSettings(config, "/p")).toMatchObject(resolvePostureFlags(config));
  });
});

describe("rotationGraceHours", () => {
  it("defaults to 24 and refuses what the program refuses", () => {
    expect(resolveRotationGraceHours(from({}))).toBe(24);
    expect(resolveRotationGraceHours(from({ rotationGraceHours: "0" }))).toBe(0);
    expect(() => resolveRotationGraceHours(from({ rotationGraceHours: "soon" }))).toThrow(ConfigError);
  });
});
