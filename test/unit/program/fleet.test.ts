import { describe, expect, it } from "vitest";
import type { KeystoneUser } from "../../../providers/keystone/client.ts";
import { planFleet } from "../../../providers/program/fleet.ts";
import { resolveFleetSettings } from "../../../providers/program/settings.ts";
import { parseUsersCsv } from "../../../providers/users/csv.ts";

const user = (id: string, name: string): KeystoneUser => ({
  id,
  name,
  domainId: "default",
  email: undefined,
  enabled: true,
  options: {},
});

describe("planFleet", () => {
  const settings = resolveFleetSettings((k) => ({ issuer: "ACME" })[k], "/p");
  const rows = parseUsersCsv(
    "username,email,domain\nalice,Alice@Example.com,Default\nalice,a2@example.com,eng\n",
    "t.csv",
  );

  it("names resources by domain and user, never by row, and keys rotation on the address", () => {
    const plan = planFleet(
      rows.map((row, i) => ({ row, user: user(`id${i}`, row.username) })),
      settings,
    );
    expect(plan.map((m) => m.name)).toEqual(["alice@Default", "alice@eng"]);
    expect(plan[0]).toMatchObject({
      issuer: "ACME",
      account: "alice@Default",
    });
    const reversed = planFleet(
      [...rows].reverse().map((row, i) => ({ row, user: user(`id${1 - i}`, row.username) })),
      settings,
    );
    expect(reversed.find((m) => m.name === "alice@Default")).toEqual(plan[0]);
  });

  it("asks for a resend on label changes only when told to", () => {
    const s2 = resolveFleetSettings((k) => ({ issuer: "ACME", resendOnLabelChange: "true" })[k], "/p");
    const [m] = planFleet([{ row: rows[0] as (typeof rows)[0], user: user("id0", "alice") }], s2);
    expect(m?.resendTrigger).toBeDefined();
  });
});

describe("resolveFleetSettings", () => {
  it("defaults safely and names bad keys", () => {
    const s = resolveFleetSettings(() => undefined, "/proj");
    expect(s).toMatchObject({
      usersCsv: "/proj/users.csv",
      issuer: "OpenStack",
      enforceMfa: false,
      smtp: false,
      outboxDir: "/proj/outbox",
    });
    expect(() => resolveFleetSettings((k) => (k === "enforceMfa" ? "maybe" : undefined), "/p")).toThrow(/enforceMfa/);
    expect(() => resolveFleetSettings((k) => (k === "issuer" ? "a:b" : undefined), "/p")).toThrow(/issuer/);
  });
});
