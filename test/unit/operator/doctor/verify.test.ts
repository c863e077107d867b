/**
 * verify-code's logic: parsing USER@DOMAIN (last @) and the code, and how Keystone's answers
 * to a TOTP login map to valid and invalid, against a scripted transport. The real Keystone
 * is in test/integration/doctor/verify-code.test.ts.
 */
import { describe, expect, it } from "vitest";
import { InputError, KeystoneError } from "../../../../lib/errors.ts";
import { type HttpRequest, type HttpResponse, type Transport, TransportError } from "../../../../lib/keystone/http.ts";
import {
  explainInvalid,
  normalisePasscode,
  parseUserAtDomain,
  REUSED_CODE_NOTE,
  SPENT_CODE_NOTE,
  verifyCode,
} from "../../../../operator/doctor/verify.ts";

function transportAnswering(answer: HttpResponse | TransportError): { transport: Transport; sent: HttpRequest[] } {
  const sent: HttpRequest[] = [];
  return {
    sent,
    transport: {
      async send(req) {
        sent.push(req);
        if (answer instanceof TransportError) throw answer;
        return answer;
      },
      close() {},
    },
  };
}

const URL_V3 = "http://keystone.test/v3";
const USER = { name: "ops@corp.example", domain: "Default" };

describe("parseUserAtDomain", () => {
  it("splits on the last @", () => {
    expect(parseUserAtDomain("alice@Default")).toEqual({ name: "alice", domain: "Default" });
    expect(parseUserAtDomain("ops@corp.example@Default")).toEqual({ name: "ops@corp.example", domain: "Default" });
    expect(parseUserAtDomain("a b@My Domain")).toEqual({ name: "a b", domain: "My Domain" });
  });

  it.each([
    ["alice", /no @DOMAIN/],
    ["@Default", /user name is empty/],
    ["alice@", /domain is empty/],
    [" alice@Default", /surrounding spaces/],
    ["al\nice@Default", /control characters/],
    [`${"x".repeat(256)}@Default`, /longer than 255/],
  ])("refuses %j", (raw, message) => {
    const err = (() => {
      try {
        parseUserAtDomain(raw);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe("E_INPUT");
    expect((err as Error).message).toMatch(message);
  });
});

describe("normalisePasscode", () => {
  it("takes six digits, with spaces as apps show them", () => {
    expect(normalisePasscode("123456")).toBe("123456");
    expect(normalisePasscode("123 456")).toBe("123456");
    expect(normalisePasscode("012345")).toBe("012345");
  });

  it.each(["12345", "1234567", "12345a", "", "１２３４５６", "123-456"])("refuses %j without repeating it", (raw) => {
    expect(() => normalisePasscode(raw)).toThrow(InputError);
    try {
      normalisePasscode(raw);
    } catch (e) {
      if (raw.length > 0) expect((e as Error).message).not.toContain(raw);
    }
  });
});

describe("verifyCode", () => {
  it("sends a TOTP login by name and domain, and calls a 201 valid", async () => {
    const { transport, sent } = transportAnswering({
      status: 201,
      headers: { "x-subject-token": "gAAAA-token" },
      body: { token: { methods: ["totp"] } },
    });
    const v = await verifyCode(URL_V3, USER, "123456", transport);
    expect(v).toMatchObject({ valid: true, moreMethodsRequired: false, status: 201 });
    expect(JSON.stringify(v)).not.toContain("gAAAA-token");
    expect(sent[0]?.url).toBe(`${URL_V3}/auth/tokens`);
    expect(sent[0]?.json).toEqual({
      auth: {
        identity: {
          methods: ["totp"],
          totp: { user: { name: "ops@corp.example", domain: { name: "Default" }, passcode: "123456" } },
        },
      },
    });
  });

  it("calls a 401 with an auth receipt listing totp valid, with the rules still required", async () => {
    const { transport } = transportAnswering({
      status: 401,
      headers: { "openstack-auth-receipt": "receipt" },
      body: {
        receipt: { methods: ["totp"] },
        required_auth_methods: [["password", "totp"]],
        error: { code: 401, message: "Additional authentications steps required." },
      },
    });
    const v = await verifyCode(URL_V3, USER, "123456", transport);
    expect(v).toMatchObject({ valid: true, moreMethodsRequired: true, requiredMethods: [["password", "totp"]] });
  });

  it("calls a plain 401 invalid", async () => {
    const { transport } = transportAnswering({
      status: 401,
      headers: {},
      body: { error: { code: 401, message: "The request you have made requires authentication." } },
    });
    expect(await verifyCode(URL_V3, USER, "123456", transport)).toMatchObject({ valid: false, status: 401 });
  });

  it("raises Keystone errors for other answers and for no answer", async () => {
    const e500 = await verifyCode(
      URL_V3,
      USER,
      "123456",
      transportAnswering({ status: 500, headers: {}, body: {} }).transport,
    ).catch((e: unknown) => e);
    expect(e500).toBeInstanceOf(KeystoneError);
    expect((e500 as KeystoneError).code).toBe("E_KEYSTONE_HTTP");
    const refused = await verifyCode(
      URL_V3,
      USER,
      "123456",
      transportAnswering(new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED")).transport,
    ).catch((e: unknown) => e);
    expect((refused as KeystoneError).code).toBe("E_KEYSTONE_NETWORK");
    expect((refused as Error).message).toMatch(/could not be reached/);
  });
});

describe("explainInvalid", () => {
  it("says why, from what the operator's account could see", () => {
    expect(explainInvalid({ enabled: false, totpCredentials: 1, requiresTotp: true })).toMatch(/disabled/);
    expect(explainInvalid({ enabled: true, totpCredentials: 0, requiresTotp: false })).toMatch(/not enrolled/);
    expect(explainInvalid({ enabled: true, totpCredentials: 2, requiresTotp: true })).toMatch(/2 TOTP credential/);
    expect(explainInvalid(undefined)).toMatch(/fresh code/);
    // A code used once is refused on releases that spend codes: said whenever the code itself may be at fault.
    expect(explainInvalid(undefined)).toContain(REUSED_CODE_NOTE);
    expect(explainInvalid({ enabled: true, totpCredentials: 2, requiresTotp: true })).toContain(REUSED_CODE_NOTE);
    expect(REUSED_CODE_NOTE).toMatch(/Keystone 2026\.2 \(30\) and later with a cache, a code already used once/);
    expect(SPENT_CODE_NOTE).toMatch(/this code is now used: wait for the next one/);
  });
});
