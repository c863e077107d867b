/**
 * The TOTP method check: Keystone's unsupported-method answer versus a wrong code, and the one
 * probe it sends (unauthenticated, with the doctor's User-Agent). Against the real Keystone:
 * test/integration/operator/doctor/keystone.test.ts and nototp.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  checkTotpMethod,
  classifyTotpProbe,
  UNSUPPORTED_METHOD_MESSAGE,
} from "../../../../operator/doctor/totp-method.ts";
import { json, scriptedKeystone } from "../../../support/doctor.ts";

describe("classifyTotpProbe", () => {
  it("reports Keystone's unsupported-method answer as a failure naming the enabled methods", () => {
    const r = classifyTotpProbe({
      status: 401,
      headers: {},
      body: {
        error: {
          code: 401,
          identity: { methods: ["external", "password", "token"] },
          message: UNSUPPORTED_METHOD_MESSAGE,
        },
      },
    });
    expect(r.status).toBe("failure");
    expect(r.code).toBe("E_KEYSTONE_HTTP");
    expect(r.message).toContain("enabled methods: external, password, token");
    expect(r.fix).toContain("methods = external,password,token,totp");
    expect(r.details).toMatchObject({ enabledMethods: ["external", "password", "token"] });
  });

  it("reports a plain 401 (wrong code) or a 201 as ok", () => {
    const wrong = {
      status: 401,
      headers: {},
      body: { error: { message: "The request you have made requires authentication." } },
    };
    expect(classifyTotpProbe(wrong).status).toBe("ok");
    expect(classifyTotpProbe({ status: 201, headers: {}, body: {} }).status).toBe("ok");
  });

  it("reports anything else as a failure", () => {
    expect(classifyTotpProbe({ status: 500, headers: {}, body: {} }).status).toBe("failure");
  });
});

describe("checkTotpMethod", () => {
  it("sends one TOTP login of the operator, without a token, with the doctor's User-Agent", async () => {
    const k = scriptedKeystone((req, path) =>
      req.method === "POST" && path === "/auth/tokens" ? json(401, { error: { message: "wrong code" } }) : undefined,
    );
    const r = await checkTotpMethod(k.session);
    expect(r.status).toBe("ok");
    expect(k.seen).toHaveLength(1);
    expect(k.seen[0]?.url).toBe("http://keystone.test/v3/auth/tokens");
    expect(k.seen[0]?.headers).toEqual({ "user-agent": "keystone-totp-doctor" });
    expect(k.seen[0]?.json).toEqual({
      auth: { identity: { methods: ["totp"], totp: { user: { id: "op-id", passcode: "000000" } } } },
    });
  });
});
