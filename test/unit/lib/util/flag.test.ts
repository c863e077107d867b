/**
 * On/off text settings: one rule for every switch (environment variables, config strings).
 */
import { describe, expect, it } from "vitest";
import { isOn } from "../../../../lib/util/flag.ts";

describe("isOn", () => {
  it("takes 1, true, yes and on, in any case and with spaces around, as on", () => {
    for (const v of ["1", "true", "TRUE", "Yes", "on", " on ", "On\n"]) expect(isOn(v), JSON.stringify(v)).toBe(true);
  });

  it("takes anything else, and an absent setting, as off", () => {
    for (const v of [undefined, "", "0", "false", "no", "off", "ture", "yes please", "2"]) {
      expect(isOn(v), JSON.stringify(v)).toBe(false);
    }
  });
});
