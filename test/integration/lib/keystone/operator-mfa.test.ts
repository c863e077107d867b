/**
 * An operator account protected by MFA (rules [["password","totp"]], admin role), against the
 * real Keystone: the password alone gets a receipt, reported as E_KEYSTONE_MFA (never as a
 * wrong password); password + the current code works; the run's one MFA login is handed over as
 * a token that other processes re-authenticate with; a revoked run token says so.
 *
 * Secrets are only ever compared as booleans, so that no failure prints one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeystoneError } from "../../../../lib/errors.ts";
import { type KeystoneAuth, RUN_TOKEN_ENV, resolveKeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { KeystoneClient, tokenRequestBody } from "../../../../lib/keystone/client.ts";
import { login } from "../../../../lib/keystone/login.ts";
import { generateSecret, TOTP_PERIOD_S, totpCode } from "../../../../lib/totp/secret.ts";
import { loginOnceForRun } from "../../../../operator/commands/mfa-login.ts";
import {
  adminAuth,
  adminClient,
  adminEnv,
  keystoneInstance,
  makeUser,
  type TestUser,
  uniq,
} from "../../../support/keystone.ts";
import { deleteUser, updateUserOptions } from "../../../support/keystone-admin.ts";

let admin: KeystoneClient;
let operator: TestUser;
let secret: string;
let adminToken: string;
const inst = keystoneInstance();
const base = adminAuth(inst);

/** A raw admin request (role assignment, token revocation: nothing the client offers). */
async function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base.authUrl}${path}`, { method, headers: { "x-auth-token": adminToken, ...headers } });
}

async function failure(p: Promise<unknown>): Promise<KeystoneError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KeystoneError) return e;
    throw e;
  }
  throw new Error("expected a failure");
}

function operatorAuth(extra: Partial<KeystoneAuth> = {}): KeystoneAuth {
  return { ...base, userName: operator.name, userDomainName: "Default", password: operator.password, ...extra };
}

beforeAll(async () => {
  admin = adminClient();
  operator = await makeUser(admin, `it-opmfa-${uniq()}`);
  const res = await fetch(`${base.authUrl}/auth/tokens?nocatalog`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(tokenRequestBody(base)),
  });
  expect(res.status).toBe(201);
  adminToken = res.headers.get("x-subject-token") ?? "";
  const projects = (await (await raw("GET", `/projects?name=${encodeURIComponent(inst.projectName)}`)).json()) as {
    projects: { id: string }[];
  };
  const roles = (await (await raw("GET", "/roles?name=admin")).json()) as { roles: { id: string }[] };
  const [project, role] = [projects.projects[0]?.id, roles.roles[0]?.id];
  expect(project && role).toBeTruthy();
  expect((await raw("PUT", `/projects/${project}/users/${operator.id}/roles/${role}`)).status).toBe(204);
  secret = generateSecret();
  await admin.createTotpCredential(operator.id, secret);
  await updateUserOptions(admin, operator.id, {
    multi_factor_auth_enabled: true,
    multi_factor_auth_rules: [["password", "totp"]],
  });
});

afterAll(async () => {
  if (operator) await deleteUser(admin, operator.id);
  admin.close();
});

describe("an operator account with MFA rules", () => {
  it("password alone: Keystone answers 401 with a receipt, reported as E_KEYSTONE_MFA, not as a wrong password", async () => {
    const direct = await login(base.authUrl, { id: operator.id }, { password: operator.password });
    expect({ status: direct.status, receipt: direct.receipt }).toEqual({ status: 401, receipt: true });
    // Keystone lists a rule's methods in no fixed order (a Python set).
    expect(direct.requiredMethods.map((r) => [...r].sort())).toEqual([["password", "totp"]]);

    const c = new KeystoneClient(operatorAuth(), { maxAttempts: 1 });
    const e = await failure(c.whoami());
    c.close();
    expect({ code: e.code, status: e.status }).toEqual({ code: "E_KEYSTONE_MFA", status: 401 });
    expect(e.message).toMatch(/accepted the password/);
    expect(e.message).toMatch(/OS_PASSCODE/);
    expect(/check the user name, password|wrong password|password is/i.test(e.message)).toBe(false);
    expect(e.message.includes(operator.password)).toBe(false);
  });

  it("password + the current code: the client works (lists credentials, as admin)", async () => {
    // The previous step's code: the next test uses the current one (Keystone 30 takes each once).
    const passcode = totpCode(secret, Date.now() - TOTP_PERIOD_S * 1000);
    const c = new KeystoneClient(operatorAuth({ passcode }), { maxAttempts: 1 });
    const me = await c.whoami();
    expect(me.userId).toBe(operator.id);
    expect(me.roles).toContain("admin");
    const creds = await c.listTotpCredentials(operator.id);
    expect(creds).toHaveLength(1);
    c.close();
  });

  it("one login per run: the token handed over re-authenticates (methods token); revoked, it says so", async () => {
    const env: NodeJS.ProcessEnv = {
      ...adminEnv(inst),
      OS_USERNAME: operator.name,
      OS_PASSWORD: operator.password,
      OS_PASSCODE: totpCode(secret),
    };
    const notes: string[] = [];
    const r = await loginOnceForRun("it", { env, interactive: false, write: (t) => notes.push(t) });
    expect(r.kind).toBe("mfa");
    expect(env.OS_PASSCODE).toBeUndefined();
    const token = env[RUN_TOKEN_ENV] ?? "";
    expect(token.length > 0).toBe(true);
    expect(notes.join("").includes(token)).toBe(false);

    // What a provider process of the run does: settings from the environment, no code.
    const auth = resolveKeystoneAuth({ env, cloudsYamlPaths: [] });
    expect(auth.runToken).toBe(true);
    const provider = new KeystoneClient(auth, { maxAttempts: 1 });
    expect((await provider.whoami()).userId).toBe(operator.id);
    expect(await provider.listTotpCredentials(operator.id)).toHaveLength(1);
    provider.close();

    // The run's token revoked (as if expired): a new process of the run is told to log in again.
    expect((await raw("DELETE", "/auth/tokens", { "x-subject-token": token })).status).toBe(204);
    const late = new KeystoneClient(resolveKeystoneAuth({ env, cloudsYamlPaths: [] }), { maxAttempts: 1 });
    const e = await failure(late.whoami());
    late.close();
    expect(e.code).toBe("E_KEYSTONE_MFA");
    expect([401, 404]).toContain(e.status);
    expect(e.message).toMatch(/token of this run's MFA login expired \(or was revoked\)/);
    expect(e.message.includes(token)).toBe(false);
  });
});
