import { describe, expect, it } from "vitest";
import { EXIT_CODES, KeystoneTotpError } from "../../../../lib/errors.ts";
import { loadCredentialSpecs } from "../../../../operator/fleet/credentials.ts";
import { operatorPlaces, refuseOperatorSelf, specNamesOperator } from "../../../../operator/fleet/operator.ts";

const me = { userId: "0a1b2c", userName: "admin", userDomainId: "default", userDomainName: "Default" };
const row = (line: number, username: string, userId: string, domain = "Default") => ({
  line,
  username,
  domain,
  userId,
});

describe("specNamesOperator", () => {
  const specs = loadCredentialSpecs({
    byId: { userId: "0A1B2C" },
    otherId: { userId: "ffff" },
    byName: { userName: "ADMIN" },
    byNameDomainName: { userName: "admin", userDomain: "default" },
    byNameDomainId: { userName: "admin", userDomain: "default" },
    otherDomain: { userName: "admin", userDomain: "Lab" },
    otherName: { userName: "alice" },
    // An ID decides: a name is not compared when the entry gives an ID.
    idWins: { userId: "ffff", userName: "admin" },
  });
  it("matches by ID (any case), or by name and domain (name or ID of the domain, Default when not given)", () => {
    expect(specs.filter((s) => specNamesOperator(s, me)).map((s) => s.name)).toEqual([
      "byId",
      "byName",
      "byNameDomainName",
      "byNameDomainId",
    ]);
  });
  it("compares IDs only when the token gave no name", () => {
    const anon = { userId: "0a1b2c", userName: "", userDomainId: "", userDomainName: "" };
    expect(specs.filter((s) => specNamesOperator(s, anon)).map((s) => s.name)).toEqual(["byId"]);
  });
});

describe("operatorPlaces / refuseOperatorSelf", () => {
  const rows = [row(2, "alice", "u-alice"), row(5, "admin", "0a1b2c"), row(7, "bob", "u-bob", "Lab")];
  const specs = loadCredentialSpecs({ ops: { userName: "admin" }, svc: { userId: "u-svc" } });

  it("names the CSV file and line, the user and domain, and the credentials key", () => {
    expect(operatorPlaces(me, "/x/users.csv", rows, specs)).toEqual([
      "users CSV /x/users.csv line 5 (admin in domain Default)",
      "keystone-totp:credentials.ops",
    ]);
  });

  it("finds nothing when the operator is in neither place", () => {
    expect(operatorPlaces(me, "u.csv", [rows[0] as never, rows[2] as never], [specs[1] as never])).toEqual([]);
    expect(() => refuseOperatorSelf(me, "u.csv", [], [])).not.toThrow();
  });

  it("throws E_OPERATOR_SELF (exit 2) saying where, why and what to do", () => {
    let err: unknown;
    try {
      refuseOperatorSelf(me, "users.csv", rows, specs);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeystoneTotpError);
    const e = err as KeystoneTotpError;
    expect(e.code).toBe("E_OPERATOR_SELF");
    expect(EXIT_CODES[e.code]).toBe(2);
    expect(e.message).toContain("users CSV users.csv line 5 (admin in domain Default)");
    expect(e.message).toContain("keystone-totp:credentials.ops");
    expect(e.message).toContain("the account keystone-totp logs in with (admin in domain Default)");
    expect(e.message).toMatch(/Keystone 2026\.2 \(30\)/);
    expect(e.message).toMatch(
      /Remove them, or log in as another administrator account; see docs\/operator-account\.md/,
    );
  });
});
