/**
 * The clock check's verdict from a token's `issued_at`, and its fall-back to a `Date` header.
 * The arithmetic under it: clock.test.ts; against the real Keystone with a shifted local clock:
 * test/integration/operator/doctor/keystone.test.ts.
 */
import { describe, expect, it } from "vitest";
import { checkClock } from "../../../../operator/doctor/clock-check.ts";
import type { ProbeTokenInfo } from "../../../../operator/doctor/probe.ts";
import { OPERATOR_INFO } from "../../../support/doctor.ts";

describe("checkClock", () => {
  const info = (skewMs: number): ProbeTokenInfo => ({
    ...OPERATOR_INFO,
    issuedAt: {
      sentAtMs: 1_000_000,
      receivedAtMs: 1_000_000,
      serverMs: Math.floor((1_000_000 + skewMs) / 1000) * 1000,
    },
  });

  it("judges issued_at against the thresholds", () => {
    expect(checkClock(info(0)).status).toBe("ok");
    expect(checkClock(info(-15_000)).status).toBe("warning");
    expect(checkClock(info(15_000)).status).toBe("warning");
    const fail = checkClock(info(-90_000));
    expect(fail).toMatchObject({ status: "failure", code: "E_KEYSTONE_HTTP" });
    expect(fail.message).toMatch(/behind/);
    expect(fail.fix).toMatch(/NTP/);
  });

  it("falls back to a Date header, and warns when there is nothing to measure", () => {
    const noToken = { ...info(0), issuedAt: undefined };
    expect(checkClock(noToken).status).toBe("warning");
    const withDate = checkClock(noToken, { sentAtMs: 1_000_000, receivedAtMs: 1_000_100, serverMs: 1_040_000 });
    expect(withDate.status).toBe("failure");
    expect(withDate.details).toMatchObject({ source: "date-header" });
  });
});
