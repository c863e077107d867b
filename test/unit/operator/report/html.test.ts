import { describe, expect, it } from "vitest";
import { enrollmentChart } from "../../../../operator/report/html.ts";

function circlesX(svg: string): number[] {
  return [...svg.matchAll(/<circle cx="([0-9.]+)"/g)].map((m) => Number(m[1]));
}

describe("enrollment chart", () => {
  it("places days linearly in time, so a quiet month looks like one", () => {
    const svg = enrollmentChart([
      ["2027-01-01", 10],
      ["2027-01-02", 20],
      ["2027-01-31", 25],
    ]);
    const [a = 0, b = 0, c = 0] = circlesX(svg);
    // The second day is 1/30 of the way along, not half-way.
    expect((b - a) / (c - a)).toBeCloseTo(1 / 30, 3);
  });

  it("anchors the first and last date labels inwards, and centres a single day", () => {
    const two = enrollmentChart([
      ["2027-01-01", 1],
      ["2027-03-01", 2],
    ]);
    expect(two).toContain('text-anchor="start">2027-01-01<');
    expect(two).toContain('text-anchor="end">2027-03-01<');
    expect(enrollmentChart([["2027-01-01", 3]])).toContain('text-anchor="middle">2027-01-01<');
  });
});
