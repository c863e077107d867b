import { describe, expect, it } from "vitest";
import type { KeystoneUser } from "../../../../lib/keystone/client.ts";
import { parseUsersCsv } from "../../../../lib/users/csv.ts";
import { planFleet } from "../../../../operator/fleet/fleet.ts";
import { resolveFleetSettings } from "../../../../operator/fleet/settings.ts";

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

  it("a case-only edit of a CSV name keeps the resource's name: Keystone's spelling, the CSV's as an alias", () => {
    const [before] = planFleet(
      parseUsersCsv("username,email\nuser03,u3@example.com\n", "t.csv").map((row) => ({
        row,
        user: user("id3", "user03"),
      })),
      settings,
    );
    const [after] = planFleet(
      parseUsersCsv("username,email\nUSER03,u3@example.com\n", "t.csv").map((row) => ({
        row,
        user: user("id3", "user03"),
      })),
      settings,
    );
    expect(before?.name).toBe("user03@Default");
    expect(before?.aliases).toEqual([]);
    // Same name and same inputs: Pulumi sees no change, so no new secret and no message.
    expect(after).toEqual({ ...before, aliases: ["USER03@Default"] });
  });

  it("a rotate request names the user by resource name, or by the CSV's spelling", () => {
    const [row] = parseUsersCsv("username,email\nAlice,a@example.com\n", "t.csv");
    const members = (users: string[]) =>
      planFleet([{ row: row as NonNullable<typeof row>, user: user("id1", "alice") }], settings, {
        token: "t1",
        users: new Set(users),
      });
    expect(members(["alice@Default"])[0]?.rotateRequest).toBe("t1");
    expect(members(["Alice@Default"])[0]?.rotateRequest).toBe("t1");
    expect(members(["bob@Default"])[0]?.rotateRequest).toBeUndefined();
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
