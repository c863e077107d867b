/**
 * An operator account with MFA rules, against a scripted transport: the passcode settings, the
 * password + TOTP token request, a receipt reported as such (never as a wrong password),
 * Keystone 30's passcode refusal stopping every further write, the run's one MFA login handed
 * over as a token, and that token's expiry. The same against the real Keystone:
 * test/integration/lib/keystone/operator-mfa.test.ts.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KeystoneError } from "../../../../lib/errors.ts";
import {
  type KeystoneAuth,
  RUN_TOKEN_ENV,
  RUN_TOKEN_URL_ENV,
  resolveKeystoneAuth,
} from "../../../../lib/keystone/auth.ts";
import { KeystoneClient, tokenRequestBody } from "../../../../lib/keystone/client.ts";
import type { HttpRequest, HttpResponse, Transport } from "../../../../lib/keystone/http.ts";
import { loginOnceForRun } from "../../../../operator/commands/mfa-login.ts";
import { updateUserOptions } from "../../../support/keystone-admin.ts";

const PASSWORD = "pw-operator-8731";
const PASSCODE = "493817";

const env = {
  OS_AUTH_URL: "http://keystone.test:5000",
  OS_USERNAME: "ops",
  OS_PASSWORD: PASSWORD,
  OS_PROJECT_NAME: "admin",
  OS_USER_DOMAIN_NAME: "Default",
  OS_PROJECT_DOMAIN_NAME: "Default",
};

const auth = (extra: Partial<KeystoneAuth> = {}): KeystoneAuth => ({
  ...resolveKeystoneAuth({ env, cloudsYamlPaths: [] }),
  ...extra,
});

type Identity = { methods: string[]; password?: unknown; totp?: { user: { passcode: string } }; token?: unknown };
const identityOf = (req: HttpRequest) => (req.json as { auth: { identity: Identity } }).auth.identity;

/** As Keystone 22 answers (measured): no `error` in the body. */
const receipt: HttpResponse = {
  status: 401,
  headers: { "openstack-auth-receipt": "rcpt-1", "x-openstack-request-id": "req-r" },
  body: {
    receipt: { methods: ["password"], expires_at: "2099-01-01T00:00:00Z" },
    required_auth_methods: [["password", "totp"]],
  },
};

function tokenAnswer(id: string, expiresAtMs = Date.now() + 3_600_000): HttpResponse {
  return {
    status: 201,
    headers: { "x-subject-token": id },
    body: {
      token: {
        methods: ["password", "totp"],
        issued_at: new Date(Date.now()).toISOString(),
        expires_at: new Date(expiresAtMs).toISOString(),
        user: { id: "ops-id", name: "ops", domain: { id: "default", name: "Default" } },
        project: { id: "p" },
        roles: [{ name: "admin" }],
      },
    },
  };
}

/**
 * A Keystone whose operator has rules [["password","totp"]]: a token for password + the right
 * code (once), or for a token it issued and that has not expired; a receipt for the password
 * alone. Other requests follow `other`.
 */
function mfaKeystone(o: { other?: (req: HttpRequest) => HttpResponse; expiresAtMs?: number } = {}) {
  const log: HttpRequest[] = [];
  const issued = new Set<string>();
  let used = false;
  let n = 0;
  const transport: Transport = {
    async send(req) {
      log.push(req);
      if (req.url.includes("/auth/tokens")) {
        const id = identityOf(req);
        if (id.methods.includes("token")) {
          const t = (id.token as { id: string }).id;
          if (!issued.has(t) || Date.now() >= (o.expiresAtMs ?? Number.POSITIVE_INFINITY)) {
            return { status: 404, headers: {}, body: { error: { code: 404, message: `Could not find token: ${t}` } } };
          }
          return tokenAnswer(`tok-${++n}`, o.expiresAtMs);
        }
        if (id.methods.join() === "password") return receipt;
        if (id.totp?.user.passcode === PASSCODE && !used) {
          used = true; // Keystone 30: each code once
          const t = `tok-${++n}`;
          issued.add(t);
          return tokenAnswer(t, o.expiresAtMs);
        }
        return {
          status: 401,
          headers: {},
          body: { error: { code: 401, message: "The request you have made requires authentication." } },
        };
      }
      if (!o.other) throw new Error(`unexpected ${req.method} ${req.url}`);
      return o.other(req);
    },
    close() {},
  };
  return { transport, log };
}

async function failure(p: Promise<unknown>): Promise<KeystoneError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KeystoneError);
    return e as KeystoneError;
  }
  throw new Error("expected a failure");
}

describe("the operator's passcode settings", () => {
  it("reads OS_PASSCODE, openstack:passcode and a v3multifactor cloud's passcode", () => {
    expect(resolveKeystoneAuth({ env: { ...env, OS_PASSCODE: PASSCODE }, cloudsYamlPaths: [] }).passcode).toBe(
      PASSCODE,
    );
    const config = (k: string) => ({ "openstack:passcode": "111222" })[k];
    expect(resolveKeystoneAuth({ env: { ...env, OS_PASSCODE: PASSCODE }, config, cloudsYamlPaths: [] }).passcode).toBe(
      "111222",
    );
    const dir = mkdtempSync(join(tmpdir(), "kt-mfa-"));
    writeFileSync(
      join(dir, "clouds.yaml"),
      [
        "clouds:",
        "  ops:",
        "    auth_type: v3multifactor",
        "    auth_methods: [v3password, v3totp]",
        "    auth:",
        "      auth_url: https://keystone.example.com:5000/v3",
        "      username: ops",
        `      password: ${PASSWORD}`,
        `      passcode: "${PASSCODE}"`,
        "      project_name: admin",
        "      user_domain_name: Default",
        "      project_domain_name: Default",
      ].join("\n"),
    );
    const a = resolveKeystoneAuth({ env: { OS_CLOUD: "ops" }, cloudsYamlPaths: [join(dir, "clouds.yaml")] });
    expect(a).toMatchObject({ userName: "ops", password: PASSWORD, passcode: PASSCODE });
    expect(resolveKeystoneAuth({ env, cloudsYamlPaths: [] }).passcode).toBeUndefined();
  });

  it("asks for password and TOTP in one request, as keystoneauth's v3multifactor", () => {
    const body = tokenRequestBody(auth({ passcode: PASSCODE })) as { auth: { identity: Identity } };
    expect(body.auth.identity).toEqual({
      methods: ["password", "totp"],
      password: { user: { name: "ops", domain: { name: "Default" }, password: PASSWORD } },
      totp: { user: { name: "ops", domain: { name: "Default" }, passcode: PASSCODE } },
    });
    const byId = tokenRequestBody(auth({ userId: "u-1", passcode: PASSCODE })) as { auth: { identity: Identity } };
    expect(byId.auth.identity.totp).toEqual({ user: { id: "u-1", passcode: PASSCODE } });
    expect((tokenRequestBody(auth()) as { auth: { identity: Identity } }).auth.identity.methods).toEqual(["password"]);
  });

  it("prefers this run's token, for the same Keystone only, over every other setting", () => {
    const withToken = { ...env, OS_PASSCODE: PASSCODE, [RUN_TOKEN_ENV]: "run-tok" };
    const config = (k: string) => ({ "openstack:userName": "ops", "openstack:password": PASSWORD })[k];
    const a = resolveKeystoneAuth({
      env: { ...withToken, [RUN_TOKEN_URL_ENV]: "http://keystone.test:5000/v3" },
      config,
      cloudsYamlPaths: [],
    });
    expect(a).toMatchObject({ token: "run-tok", runToken: true, password: undefined, passcode: undefined });
    expect(a.userName).toBeUndefined();
    expect(a.projectName).toBe("admin");
    expect((tokenRequestBody(a) as { auth: { identity: Identity } }).auth.identity.methods).toEqual(["token"]);
    const other = resolveKeystoneAuth({
      env: { ...withToken, [RUN_TOKEN_URL_ENV]: "http://elsewhere.test/v3" },
      cloudsYamlPaths: [],
    });
    expect(other.token).toBeUndefined();
    expect(other.password).toBe(PASSWORD);
  });
});

describe("the operator's token request with MFA rules", () => {
  it("reports a receipt as E_KEYSTONE_MFA naming the ways to give a code, never as a wrong password", async () => {
    const k = mfaKeystone();
    const e = await failure(new KeystoneClient(auth(), { transport: k.transport }).whoami());
    expect(e.code).toBe("E_KEYSTONE_MFA");
    expect(e.message).toMatch(/accepted the password/);
    expect(e.message).toMatch(/MFA rules \(its rules: password\+totp\)/);
    expect(e.message).toMatch(/OS_PASSCODE.*v3multifactor.*openstack:passcode/s);
    expect(e.message).toMatch(/without MFA rules/);
    expect(e.message).not.toMatch(/check the user name, password/i);
    expect(e.message).not.toContain(PASSWORD);
    expect(k.log).toHaveLength(1);
  });

  it("keeps a plain 401 without a receipt E_KEYSTONE_AUTH", async () => {
    const transport: Transport = {
      send: async () => ({ status: 401, headers: {}, body: { error: { message: "requires authentication" } } }),
      close() {},
    };
    const e = await failure(new KeystoneClient(auth(), { transport, maxAttempts: 1 }).whoami());
    expect(e.code).toBe("E_KEYSTONE_AUTH");
    expect(e.message).toMatch(/Check the user name, password/);
  });

  it("logs in with password + TOTP, and keeps the code out of a refusal even when Keystone echoes it", async () => {
    const k = mfaKeystone();
    const c = new KeystoneClient(auth({ passcode: PASSCODE }), { transport: k.transport });
    expect((await c.whoami()).userId).toBe("ops-id");
    expect(identityOf(k.log[0] as HttpRequest).methods).toEqual(["password", "totp"]);
    const echo: Transport = {
      send: async () => ({
        status: 401,
        headers: {},
        body: { error: { message: `Invalid passcode ${PASSCODE} for user with password ${PASSWORD}` } },
      }),
      close() {},
    };
    const e = await failure(new KeystoneClient(auth({ passcode: PASSCODE }), { transport: echo }).whoami());
    expect(e.code).toBe("E_KEYSTONE_AUTH");
    expect(e.message).toMatch(/used for a login is refused/);
    expect(e.message).not.toContain(PASSCODE);
    expect(e.message).not.toContain(PASSWORD);
  });
});

describe("Keystone 30's refusal of MFA changes without the operator's passcode", () => {
  const refusal: HttpResponse = {
    status: 403,
    headers: { "x-openstack-request-id": "req-8ce662ef-be11-4c0f-b5cb-0bb872a17bc6" },
    body: {
      error: {
        code: 403,
        title: "Forbidden",
        message: "This action requires a current MFA passcode in the OpenStack-MFA-Passcode header.",
      },
    },
  };

  it("stops every further write of the client at once, unsent, with the cause and both fixes; reads go on", async () => {
    const k = mfaKeystone({
      other: (req) => (req.method === "GET" ? { status: 200, headers: {}, body: { credentials: [] } } : refusal),
    });
    const c = new KeystoneClient(auth({ passcode: PASSCODE }), { transport: k.transport });
    const first = await failure(
      updateUserOptions(c, "0123456789abcdef0123456789abcdef", { multi_factor_auth_rules: [["password", "totp"]] }),
    );
    expect(first.code).toBe("E_KEYSTONE_MFA");
    expect(first.status).toBe(403);
    expect(first.message).toMatch(/operator's own account has MFA rules/);
    expect(first.message).toMatch(/Keystone 30 requires a fresh code/);
    expect(first.message).toMatch(/admin account without MFA rules/);
    expect(first.message.length).toBeLessThan(500);
    expect(first.message).toMatch(/require_mfa_for_sensitive_account_actions = false/);
    expect(first.message).not.toContain(PASSCODE);
    const sent = k.log.length;
    for (const write of [
      () => c.createTotpCredential("u2", "JBSWY3DPEHPK3PXP"),
      () => c.deleteCredential("c1"),
      () => c.updateCredentialBlob("c1", "JBSWY3DPEHPK3PXP"),
      () => c.writeUserMfa("u3", { enabled: true, rules: [["password", "totp"]] }, null),
    ]) {
      expect(await failure(write())).toBe(first);
    }
    expect(k.log.length).toBe(sent);
    expect(await c.listTotpCredentials("u1")).toEqual([]);
    expect(k.log.length).toBe(sent + 1);
  });

  it("leaves any other 403 E_KEYSTONE_FORBIDDEN, and later writes are still sent", async () => {
    let writes = 0;
    const k = mfaKeystone({
      other: () => {
        writes++;
        return {
          status: 403,
          headers: {},
          body: { error: { message: "You are not authorized to perform the requested action." } },
        };
      },
    });
    const c = new KeystoneClient(auth({ passcode: PASSCODE }), { transport: k.transport });
    expect((await failure(c.deleteCredential("c1"))).code).toBe("E_KEYSTONE_FORBIDDEN");
    expect((await failure(c.deleteCredential("c2"))).code).toBe("E_KEYSTONE_FORBIDDEN");
    expect(writes).toBe(2);
  });
});

describe("one MFA login per run", () => {
  it("with a code: logs in once, hands the token over through the environment, removes OS_PASSCODE", async () => {
    const k = mfaKeystone();
    const e: NodeJS.ProcessEnv = { ...env, OS_PASSCODE: PASSCODE };
    const notes: string[] = [];
    const r = await loginOnceForRun("test", {
      env: e,
      interactive: false,
      client: { transport: k.transport },
      write: (t) => notes.push(t),
    });
    expect(r.kind).toBe("mfa");
    expect(e.OS_PASSCODE).toBeUndefined();
    expect(e[RUN_TOKEN_ENV]).toBe("tok-1");
    expect(notes.join("")).toMatch(/logged in once.*expires at.*fresh code.*Keystone 30.*without MFA rules/s);
    expect(notes.join("")).not.toContain(PASSCODE);
    expect(notes.join("")).not.toContain("tok-1");
    // A provider process of the run: token re-authentication, the code is not sent again.
    const provider = new KeystoneClient(resolveKeystoneAuth({ env: e, cloudsYamlPaths: [] }), {
      transport: k.transport,
    });
    expect((await provider.whoami()).userId).toBe("ops-id");
    expect(identityOf(k.log.at(-1) as HttpRequest).methods).toEqual(["token"]);
    // A nested command of the same run (shards -> provision) does not log in again.
    expect((await loginOnceForRun("test", { env: e, client: { transport: k.transport } })).kind).toBe("inherited");
    expect(k.log).toHaveLength(2);
  });

  it("on a terminal: a receipt asks for the code, then logs in with it", async () => {
    const k = mfaKeystone();
    const e: NodeJS.ProcessEnv = { ...env };
    const questions: string[] = [];
    const r = await loginOnceForRun("test", {
      env: e,
      interactive: true,
      prompt: async (q) => {
        questions.push(q);
        return `${PASSCODE}\n`;
      },
      client: { transport: k.transport },
      write: () => {},
    });
    expect(r.kind).toBe("mfa");
    expect(questions).toHaveLength(1);
    expect(questions[0]).toMatch(/accepted the password of ops@Default.*TOTP code/);
    expect(k.log.map((q) => identityOf(q).methods.join("+"))).toEqual(["password", "password+totp"]);
    expect(e[RUN_TOKEN_ENV]).toBe("tok-1");
  });

  it("off a terminal without a code: does nothing, and the run's first login fails with E_KEYSTONE_MFA", async () => {
    const k = mfaKeystone();
    const e: NodeJS.ProcessEnv = { ...env };
    expect(
      (await loginOnceForRun("test", { env: e, interactive: false, client: { transport: k.transport } })).kind,
    ).toBe("none");
    expect(k.log).toHaveLength(0);
    expect(e[RUN_TOKEN_ENV]).toBeUndefined();
  });

  it("a run outliving its MFA token stops with E_KEYSTONE_MFA saying so, instead of renewing early", async () => {
    let now = Date.now();
    const expiresAtMs = now + 10 * 60_000;
    const k = mfaKeystone({ expiresAtMs, other: () => ({ status: 200, headers: {}, body: { credentials: [] } }) });
    const e: NodeJS.ProcessEnv = { ...env, OS_PASSCODE: PASSCODE };
    await loginOnceForRun("test", { env: e, client: { transport: k.transport }, write: () => {} });
    const c = new KeystoneClient(resolveKeystoneAuth({ env: e, cloudsYamlPaths: [] }), {
      transport: k.transport,
      now: () => now,
    });
    await c.listTotpCredentials("u1");
    now = expiresAtMs - 60_000; // within the usual renewal margin: no new token request
    await c.listTotpCredentials("u1");
    const tokenRequests = () => k.log.filter((r) => r.url.includes("/auth/tokens")).length;
    expect(tokenRequests()).toBe(2);
    // Past the expiry: the re-authentication is refused (the fake's clock is the real one).
    const real = Date.now;
    Date.now = () => expiresAtMs + 1;
    try {
      now = expiresAtMs + 1;
      const err = await failure(c.listTotpCredentials("u1"));
      expect(err.code).toBe("E_KEYSTONE_MFA");
      expect(err.message).toMatch(/token of this run's MFA login expired.*Run again with a fresh code/s);
      expect(err.message).not.toContain("tok-1");
    } finally {
      Date.now = real;
    }
  });
});
