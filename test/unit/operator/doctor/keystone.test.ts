/**
 * The Keystone checks against a scripted transport: how answers are classified (TOTP method
 * unsupported versus a wrong code, endpoints that are not identity v3, refusals, TLS), the
 * clock verdict, and the whole doctor's order, skipping and exit codes. The same checks run
 * against the real Keystone in test/integration/doctor.
 */
import { describe, expect, it } from "vitest";
import type { KeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { type HttpRequest, type HttpResponse, type Transport, TransportError } from "../../../../lib/keystone/http.ts";
import { normaliseSecret } from "../../../../lib/totp/secret.ts";
import {
  checkClock,
  checkCredentialAccess,
  checkOperatorMfa,
  checkReachable,
  checkStaging,
  checkTls,
  classifyTotpProbe,
  type KeystoneCheckContext,
  ProbeSession,
  type ProbeTokenInfo,
  UNSUPPORTED_METHOD_MESSAGE,
} from "../../../../operator/doctor/keystone.ts";
import { formatJson, formatText, runDoctor } from "../../../../operator/doctor/run.ts";
import { exitCodeForResults, result } from "../../../../operator/doctor/types.ts";

const PASSWORD = "unit-doctor-password-1234";

function auth(authUrl = "http://keystone.test/v3"): KeystoneAuth {
  return {
    authUrl,
    userId: undefined,
    userName: "admin",
    userDomainId: undefined,
    userDomainName: "Default",
    password: PASSWORD,
    token: undefined,
    projectId: undefined,
    projectName: "admin",
    projectDomainId: undefined,
    projectDomainName: "Default",
    caPem: undefined,
    insecure: false,
    source: "test",
  };
}

function transport(handler: (req: HttpRequest) => HttpResponse | TransportError): Transport {
  return {
    async send(req) {
      const r = handler(req);
      if (r instanceof TransportError) throw r;
      return r;
    },
    close() {},
  };
}

function ctx(t: Transport, a = auth()): KeystoneCheckContext {
  return { auth: a, transport: t, now: Date.now };
}

const V3: HttpResponse = { status: 200, headers: {}, body: { version: { id: "v3.14", status: "stable" } } };

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

describe("checkReachable and checkTls", () => {
  it("accepts an identity v3 version document", async () => {
    const r = await checkReachable(ctx(transport(() => V3)));
    expect(r.reachable).toBe(true);
    expect(r.result.status).toBe("ok");
    expect(r.result.message).toContain("identity v3.14 (stable)");
  });

  it("refuses an endpoint that is not identity v3", async () => {
    const r = await checkReachable(ctx(transport(() => ({ status: 404, headers: {}, body: undefined }))));
    expect(r.reachable).toBe(false);
    expect(r.result).toMatchObject({ status: "failure", code: "E_KEYSTONE_HTTP" });
  });

  it("explains a refused connection and a TLS failure", async () => {
    const refused = await checkReachable(
      ctx(transport(() => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED"))),
    );
    expect(refused.result).toMatchObject({ status: "failure", code: "E_KEYSTONE_NETWORK" });
    expect(refused.result.fix).toMatch(/OS_AUTH_URL/);

    const httpsCtx = ctx(
      transport(() => new TransportError("tls", "SELF_SIGNED_CERT_IN_CHAIN", "SELF_SIGNED_CERT_IN_CHAIN")),
      auth("https://keystone.test/v3"),
    );
    const reach = await checkReachable(httpsCtx);
    const tls = await checkTls(httpsCtx, reach);
    expect(tls).toMatchObject({ status: "failure", code: "E_KEYSTONE_NETWORK" });
    expect(tls.fix).toMatch(/OS_CACERT/);
  });

  it("warns about plain HTTP off loopback only", async () => {
    const remote = ctx(
      transport(() => V3),
      auth("http://keystone.example.com:5000/v3"),
    );
    expect((await checkTls(remote, await checkReachable(remote))).status).toBe("warning");
    const local = ctx(
      transport(() => V3),
      auth("http://127.0.0.1:5000/v3"),
    );
    expect((await checkTls(local, await checkReachable(local))).status).toBe("ok");
  });
});

describe("checkClock", () => {
  const info = (skewMs: number): ProbeTokenInfo => ({
    userId: "u",
    userName: "admin",
    userDomainId: "default",
    userDomainName: "Default",
    projectId: "p",
    projectName: "admin",
    projectDomainName: "Default",
    roles: ["admin"],
    issuedAt: {
      sentAtMs: 1_000_000,
      receivedAtMs: 1_000_000,
      serverMs: Math.floor((1_000_000 + skewMs) / 1000) * 1000,
    },
    dateHeader: undefined,
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

describe("runDoctor", () => {
  it("without Keystone settings: one config failure, Keystone checks skipped, exit 2", async () => {
    const report = await runDoctor({ env: {}, cloudsYamlPaths: [], skipMail: true });
    expect(report.checks[0]).toMatchObject({ id: "config.keystone", status: "failure", code: "E_CONFIG" });
    expect(report.checks.slice(1).every((c) => c.status === "skipped")).toBe(true);
    expect(report.exitCode).toBe(2);
  });

  it("with Keystone down: reachable fails, the rest is skipped, exit 3, and no password in any output", async () => {
    const env = {
      OS_AUTH_URL: "http://keystone.test:5000/v3",
      OS_USERNAME: "admin",
      OS_PASSWORD: PASSWORD,
      OS_PROJECT_NAME: "admin",
    };
    const report = await runDoctor({
      env,
      cloudsYamlPaths: [],
      skipMail: true,
      transport: transport(() => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED")),
    });
    const byId = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
    expect(byId).toMatchObject({
      "config.keystone": "ok",
      "keystone.reachable": "failure",
      "keystone.token": "skipped",
      "keystone.credentials": "skipped",
      "keystone.totp-method": "skipped",
      "keystone.clock": "skipped",
    });
    expect(report.exitCode).toBe(3);
    const text = formatText(report);
    expect(text.trimEnd().split("\n")).toHaveLength(report.checks.length + 1);
    expect(text).toMatch(/^FAIL keystone\.reachable: cannot connect/m);
    expect(text).not.toContain(PASSWORD);
    expect(formatJson(report)).not.toContain(PASSWORD);
    expect(JSON.parse(formatJson(report)).exitCode).toBe(3);
  });
});

describe("exitCodeForResults", () => {
  it("is 0 with warnings only, else the first failure's: 2 input, 3 Keystone, 4 mail, 1 other", () => {
    const ok = result("a", "a", "ok", "");
    const warn = result("b", "b", "warning", "");
    expect(exitCodeForResults([ok, warn])).toBe(0);
    expect(exitCodeForResults([ok, result("c", "c", "failure", "", { code: "E_SMTP" })])).toBe(4);
    expect(
      exitCodeForResults([
        result("c", "c", "failure", "", { code: "E_CSV_ROW" }),
        result("d", "d", "failure", "", { code: "E_KEYSTONE_FORBIDDEN" }),
      ]),
    ).toBe(2);
    expect(exitCodeForResults([result("e", "e", "failure", "")])).toBe(1);
  });
});

describe("checkCredentialAccess, checkOperatorMfa and checkStaging (scripted Keystone)", () => {
  const info: ProbeTokenInfo = {
    userId: "op-id",
    userName: "admin",
    userDomainId: "default",
    userDomainName: "Default",
    projectId: "p",
    projectName: "admin",
    projectDomainName: "Default",
    roles: ["admin"],
    issuedAt: undefined,
    dateHeader: undefined,
  };
  const json = (status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse => ({
    status,
    headers,
    body,
  });
  const PASSCODE_403 = json(403, {
    error: { message: "This action requires a current MFA passcode in the OpenStack-MFA-Passcode header" },
  });
  /** A scripted Keystone; every request is recorded. */
  function keystone(route: (req: HttpRequest, path: string) => HttpResponse | undefined) {
    const seen: HttpRequest[] = [];
    const t = transport((req) => {
      seen.push(req);
      const path = req.url.replace("http://keystone.test/v3", "");
      const r = route(req, path);
      if (r) return r;
      if (req.method === "POST" && path.startsWith("/auth/tokens")) {
        const body = req.json as { auth: { identity: { methods: string[] } } };
        if (body.auth.identity.methods[0] === "keystone-totp-probe") {
          return json(401, { error: { identity: { methods: ["password", "token", "totp"] } } });
        }
        const m = body.auth.identity.methods;
        if (m.includes("password") && !m.includes("totp") && JSON.stringify(body).includes("admin")) {
          return json(
            201,
            { token: { expires_at: new Date(Date.now() + 3_600_000).toISOString(), user: { id: "op-id" } } },
            { "x-subject-token": "tok" },
          );
        }
      }
      return json(500, { error: { message: `unscripted ${req.method} ${path}` } });
    });
    return { seen, t, session: new ProbeSession(ctx(t), "tok", info) };
  }

  it("creates a VALID credential for a made-up user ID, deletes it at once, and never touches the operator", async () => {
    const k = keystone((req, path) => {
      if (req.method === "GET" && path.startsWith("/credentials?")) return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return json(201, { credential: { id: "c1" } });
      if (req.method === "DELETE" && path === "/credentials/c1") return json(204, undefined);
      if (req.method === "DELETE" && path.startsWith("/credentials/")) return json(404, undefined);
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r.status, r.message).toBe("ok");
    const post = k.seen.find((q) => q.method === "POST" && q.url.endsWith("/credentials"));
    const cred = (post?.json as { credential: { user_id: string; blob: unknown } } | undefined)?.credential ?? {
      user_id: "",
      blob: "",
    };
    expect(cred.user_id).toMatch(/^[0-9a-f]{32}$/);
    expect(cred.user_id).not.toBe("op-id");
    expect(normaliseSecret(String(cred.blob))).toBe(cred.blob);
    expect(k.seen.filter((q) => q.method === "DELETE").map((q) => q.url.split("/").pop())).toContain("c1");
    expect(r.message).not.toContain(String(cred.blob));
    expect(k.seen.some((q) => q.url.includes("/users/op-id") && q.method !== "GET")).toBe(false);
  });

  it("does not take a 400 (schema before policy, Keystone 27+) for the right to create", async () => {
    const k = keystone((req, path) => {
      if (req.method === "GET") return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return json(400, { error: { message: "Invalid input" } });
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r.status).toBe("failure");
    const noWrite = await checkCredentialAccess(
      keystone((req, path) => {
        if (req.method === "GET") return json(200, { credentials: [] });
        if (req.method === "POST" && path === "/credentials") return json(400, {});
        if (req.method === "DELETE") return json(404, undefined);
        return undefined;
      }).session,
      false,
    );
    expect(noWrite.status).toBe("ok");
    expect(noWrite.message).toMatch(/the right to create was not proven/);
  });

  it("names the operator's MFA rules (E_KEYSTONE_MFA) when Keystone 30 asks for a passcode", async () => {
    const k = keystone((req, path) => {
      if (req.method === "GET") return json(200, { credentials: [] });
      if (req.method === "POST" && path === "/credentials") return PASSCODE_403;
      return undefined;
    });
    const r = await checkCredentialAccess(k.session);
    expect(r).toMatchObject({ status: "failure", code: "E_KEYSTONE_MFA" });
    expect(r.message).toMatch(/operator's own account has MFA rules/);
    expect(r.fix).toMatch(
      /another administrator account that has no MFA rules.*require_mfa_for_sensitive_account_actions = false/,
    );
  });

  it("warns when the operator's own account has active MFA rules, ok without (disabled rules are none)", async () => {
    const withRules = (options: Record<string, unknown>) =>
      keystone((req, path) =>
        req.method === "GET" && path === "/users/op-id" ? json(200, { user: { options } }) : undefined,
      ).session;
    const warn = await checkOperatorMfa(withRules({ multi_factor_auth_rules: [["password", "totp"]] }));
    expect(warn.status).toBe("warning");
    expect(warn.message).toMatch(
      /every TOTP credential change and every MFA rule change it makes then needs a fresh TOTP code/,
    );
    expect((await checkOperatorMfa(withRules({}))).status).toBe("ok");
    expect(
      (await checkOperatorMfa(withRules({ multi_factor_auth_enabled: false, multi_factor_auth_rules: [["password"]] })))
        .status,
    ).toBe("ok");
  });

  it("skips the staging round trip with a WARN saying what was not checked when users may not be created", async () => {
    const k = keystone((req, path) => (req.method === "POST" && path === "/users" ? json(403, {}) : undefined));
    const client = new KeystoneClient(auth(), { transport: k.t, maxAttempts: 1 });
    const r = await checkStaging(k.session, client);
    expect(r.status).toBe("warning");
    expect(r.message).toMatch(/may not create users.*not checked: that the account may write MFA rules/);
    expect(k.seen.some((q) => q.method === "PATCH")).toBe(false);
  });

  it("stages a throwaway user, logs in once with the code, and deletes the user; a code alone that logs in fails", async () => {
    for (const totpAlone of [401, 201]) {
      let made: { name: string; password: string } | undefined;
      const k = keystone((req, path) => {
        if (req.method === "POST" && path === "/users") {
          made = (req.json as { user: { name: string; password: string } }).user;
          return json(201, { user: { id: "tmp-id" } });
        }
        if (req.method === "PATCH" && path === "/users/tmp-id") return json(200, { user: { id: "tmp-id" } });
        if (req.method === "POST" && path === "/credentials")
          return json(201, { credential: { id: "c2", user_id: "tmp-id" } });
        if (req.method === "DELETE" && path === "/users/tmp-id") return json(204, undefined);
        const m = (req.json as { auth?: { identity: { methods: string[] } } } | undefined)?.auth?.identity.methods;
        if (path.startsWith("/auth/tokens") && m?.[0] === "totp") {
          return json(
            totpAlone,
            {},
            totpAlone === 401 ? { "openstack-auth-receipt": "rcpt" } : { "x-subject-token": "t2" },
          );
        }
        if (path.startsWith("/auth/tokens") && req.headers?.["openstack-auth-receipt"] === "rcpt") return json(201, {});
        return undefined;
      });
      const client = new KeystoneClient(auth(), { transport: k.t, maxAttempts: 1 });
      const r = await checkStaging(k.session, client);
      expect(r.status, r.message).toBe(totpAlone === 401 ? "ok" : "failure");
      expect(made?.name).toMatch(/^keystone-totp-doctor-/);
      // One TOTP login only: a code is never used twice (Keystone 30 spends codes).
      const totpLogins = k.seen.filter((q) => JSON.stringify(q.json ?? {}).includes('"passcode"'));
      expect(totpLogins).toHaveLength(1);
      expect(k.seen.at(-1)).toMatchObject({ method: "DELETE" });
      expect(k.seen.at(-1)?.url).toMatch(/\/users\/tmp-id$/);
      expect(k.seen.some((q) => q.url.includes("/users/op-id"))).toBe(false);
      expect(JSON.stringify(r)).not.toContain(made?.password ?? "never");
    }
  });
});
