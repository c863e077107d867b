/**
 * Clock skew arithmetic: the estimate from a truncated server timestamp, and the thresholds
 * (warning from 10 s, failure past 30 s, in either direction).
 */
import { describe, expect, it } from "vitest";
import {
  assessSkew,
  describeSkew,
  estimateSkew,
  SKEW_FAILURE_MS,
  SKEW_WARNING_MS,
  skewConsequence,
} from "../../../../operator/doctor/clock.ts";

describe("estimateSkew", () => {
  it("takes the middle of the request and half a second for truncation", () => {
    // Server read 1000.4 s, truncated to 1000 s; request from 1000.2 s to 1000.6 s local.
    const e = estimateSkew({ sentAtMs: 1_000_200, receivedAtMs: 1_000_600, serverMs: 1_000_000 });
    expect(e.skewMs).toBe(100); // (1000 - 1000.6 + 1001 - 1000.2) / 2 = 0.1 s
    expect(e.uncertaintyMs).toBe(700); // half of (1.0 + 0.4)
  });

  it("is exact to within the uncertainty for any true skew and moment", () => {
    for (const trueSkew of [-90_000, -15_000, -250, 0, 420, 15_000, 90_000]) {
      for (const at of [0, 137, 499, 999]) {
        const sentAtMs = 5_000_000 + at;
        const receivedAtMs = sentAtMs + 450;
        const serverRead = sentAtMs + 300 + trueSkew;
        const e = estimateSkew({ sentAtMs, receivedAtMs, serverMs: Math.floor(serverRead / 1000) * 1000 });
        expect(Math.abs(e.skewMs - trueSkew)).toBeLessThanOrEqual(e.uncertaintyMs);
      }
    }
  });
});

describe("assessSkew", () => {
  it("is ok below 10 s, a warning from 10 s to 30 s, a failure past 30 s, both directions", () => {
    expect(SKEW_WARNING_MS).toBe(10_000);
    expect(SKEW_FAILURE_MS).toBe(30_000);
    for (const sign of [1, -1]) {
      expect(assessSkew(sign * 0)).toBe("ok");
      expect(assessSkew(sign * 9_999)).toBe("ok");
      expect(assessSkew(sign * 10_000)).toBe("warning");
      expect(assessSkew(sign * 15_000)).toBe("warning");
      expect(assessSkew(sign * 30_000)).toBe("warning");
      expect(assessSkew(sign * 30_001)).toBe("failure");
      expect(assessSkew(sign * 90_000)).toBe("failure");
    }
  });

  it("words the direction and what users see", () => {
    expect(describeSkew(-12_345)).toBe("Keystone's clock is 12.3 s behind this machine's");
    expect(describeSkew(15_000)).toBe("Keystone's clock is 15.0 s ahead of this machine's");
    expect(describeSkew(40)).toBe("Keystone's clock agrees with this machine's");
    expect(skewConsequence(-15_000)).toMatch(/within 15\.0 s of appearing are refused/);
    expect(skewConsequence(15_000)).toMatch(/typed within 15\.0 s/);
    expect(skewConsequence(-90_000)).toMatch(/every fresh code/);
    expect(skewConsequence(0)).toMatch(/accepted/);
  });
});
