import { describe, expect, it } from "vitest";
import { UserNotFoundError } from "../../../../lib/errors.ts";
import type { KeystoneClient, KeystoneUser } from "../../../../lib/keystone/client.ts";
import { parseUsersCsv } from "../../../../lib/users/csv.ts";
import { resolveUsers } from "../../../../lib/users/resolve.ts";

const user = (id: string, name: string): KeystoneUser => ({
  id,
  name,
  domainId: "default",
  email: undefined,
  enabled: true,
  options: {},
});

/** A Keystone with one domain, Default, holding `users` (names compared as PostgreSQL does: exactly). */
function keystone(users: KeystoneUser[]): KeystoneClient {
  return {
    domainIdByName: async (name: string) => (name === "Default" ? "default" : undefined),
    listUsers: async () => users,
    getUser: async (id: string) => users.find((u) => u.id === id),
  } as unknown as KeystoneClient;
}

const rows = (names: string[]) =>
  parseUsersCsv(`username,email\n${names.map((n, i) => `${n},u${i}@example.com`).join("\n")}\n`, "users.csv");

async function refusal(p: Promise<unknown>): Promise<UserNotFoundError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserNotFoundError);
  return err as UserNotFoundError;
}

describe("resolveUsers and names that differ only in case", () => {
  it("a CSV name in another case finds the one Keystone user of that name", async () => {
    const [r] = await resolveUsers(keystone([user("id3", "user03")]), rows(["USER03"]));
    expect(r?.user.id).toBe("id3");
  });

  it("an exact match is not ambiguous, even when another user differs only in case", async () => {
    const ks = keystone([user("id1", "bob"), user("id2", "Bob")]);
    const resolved = await resolveUsers(ks, rows(["Bob"]));
    expect(resolved.map((r) => r.user.id)).toEqual(["id2"]);
  });

  it("refuses a name that matches several users only by case, naming them, instead of picking one", async () => {
    const ks = keystone([user("id1", "bob"), user("id2", "Bob"), user("id3", "carol")]);
    const err = await refusal(resolveUsers(ks, rows(["BOB", "carol"])));
    expect(err.code).toBe("E_USER_NOT_FOUND");
    expect(err.users).toHaveLength(1);
    expect(err.users[0]).toMatch(/^BOB@Default \(ambiguous: .*'bob'.*'Bob'.* in domain Default/);
    expect(err.message).toContain("BOB@Default");
  });
});
