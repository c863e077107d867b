import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../../lib/errors.ts";
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

  // A new address rotating the secret is the enrollment's own rule now (addressTrigger), tested in
  // test/unit/providers/enrollment/handlers.test.ts ("a new address: new secret in place ...") and
  // through the engine in test/e2e/fleet.test.ts ("... one email changed ..."): the plan only
  // carries the row's address.
  it("names resources by domain and user, never by row: the same member whatever the row order", () => {
    const plan = planFleet(
      rows.map((row, i) => ({ row, user: user(`id${i}`, row.username) })),
      settings,
    );
    expect(plan.map((m) => m.name)).toEqual(["alice@Default", "alice@eng"]);
    expect(plan[0]).toMatchObject({
      issuer: "ACME",
      account: "alice@Default",
      email: "Alice@Example.com",
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
    const alice = { row: rows[0] as (typeof rows)[0], user: user("id0", "alice") };
    const renamed = { ...alice, row: { ...alice.row, displayName: "Alice B." } };
    const trigger = (config: Record<string, string>, member = alice) =>
      planFleet(
        [member],
        resolveFleetSettings((k) => config[k], "/p"),
      )[0]?.resendTrigger;
    // Not told: no trigger at all, whatever the labels, so a label change never sends.
    expect(trigger({ issuer: "ACME" })).toBeUndefined();
    expect(trigger({ issuer: "ACME 2" })).toBeUndefined();
    expect(trigger({ issuer: "ACME" }, renamed)).toBeUndefined();
    // Told: the trigger follows the issuer and the display name (a new value sends again), and
    // stays the same while they do.
    const told = { issuer: "ACME", resendOnLabelChange: "true" };
    expect(trigger(told)).toBeDefined();
    expect(trigger(told)).toBe(trigger({ ...told }));
    expect(trigger({ ...told, issuer: "ACME 2" })).not.toBe(trigger(told));
    expect(trigger(told, renamed)).not.toBe(trigger(told));
  });
});

describe("resolveFleetSettings", () => {
  it("defaults safely: no TOTP-only logins, no enforcement, users' own rules and application credentials left alone", () => {
    const s = resolveFleetSettings(() => undefined, "/proj");
    expect(s).toEqual({
      usersCsv: "/proj/users.csv",
      usersCsvExplicit: false,
      issuer: "OpenStack",
      accountLabel: "username@domain",
      enforceMfa: false,
      allowTotpOnlyLogin: false,
      refuseApplicationCredentials: false,
      replaceOwnRules: false,
      resendOnLabelChange: false,
      smtp: false,
      outboxDir: "/proj/outbox",
      rotationDays: 0,
      rotationGraceHours: 24,
      unmanagedCredentials: "remove",
      shard: undefined,
    });
  });

  it.each([
    ["enforceMfa", "maybe"],
    ["allowTotpOnlyLogin", "sometimes"],
    ["refuseApplicationCredentials", "2"],
    ["replaceOwnRules", "y"],
    ["resendOnLabelChange", "on"],
    ["accountLabel", "mail"],
    ["issuer", "a:b"],
    ["rotationDays", "-1"],
    ["rotationGraceHours", "1.5"],
    ["unmanagedCredentials", "delete"],
    ["shard", "4/4"],
  ])("refuses a bad %s, naming the key", (key, value) => {
    const read = () => resolveFleetSettings((k) => (k === key ? value : undefined), "/p");
    expect(read).toThrow(ConfigError);
    expect(read).toThrow(`keystone-totp:${key}`);
  });
});
