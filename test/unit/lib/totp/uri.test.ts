import { describe, expect, it } from "vitest";
import { InputError } from "../../../../lib/errors.ts";
import { generateSecret } from "../../../../lib/totp/secret.ts";
import { otpauthUri, parseOtpauthUri } from "../../../../lib/totp/uri.ts";

describe("otpauthUri", () => {
  const secret = generateSecret();

  it("follows the Key URI format with SHA1, 6 digits and 30 s", () => {
    const uri = otpauthUri({ issuer: "ACME Cloud", account: "alice@Default", secret });
    expect(uri).toBe(
      `otpauth://totp/ACME%20Cloud:alice%40Default?secret=${secret}&issuer=ACME%20Cloud&algorithm=SHA1&digits=6&period=30`,
    );
  });

  it("round-trips awkward labels as an app reads them", () => {
    const account = "Zoë O'Brien/ops: on-call & más+1@example.com";
    const p = parseOtpauthUri(otpauthUri({ issuer: "Ünï Cloud & Co", account, secret }));
    expect(p).toEqual({
      issuer: "Ünï Cloud & Co",
      account,
      secret,
      algorithm: "SHA1",
      digits: 6,
      period: 30,
    });
  });

  it.each([
    ["issuer", { issuer: "A:B", account: "x" }],
    ["issuer", { issuer: "", account: "x" }],
    ["account", { issuer: "A", account: "line\nbreak" }],
    ["account", { issuer: "A", account: "x".repeat(200) }],
    ["issuer", { issuer: "lone \uD800 surrogate", account: "x" }],
  ])("refuses a bad %s", (property, parts) => {
    try {
      otpauthUri({ ...parts, secret });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      expect((e as InputError).property).toBe(property);
    }
  });
});
