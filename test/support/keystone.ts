/**
 * Access to the real Keystone started by `scripts/keystone.sh` (see scripts/test.sh), and
 * helpers to make throwaway users in it.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { KeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { instanceEnv, localStateDir } from "../../operator/commands/local-keystone.ts";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** What scripts/keystone.sh writes for each instance. */
export interface KeystoneInstance {
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly projectName: string;
  readonly userDomainName: string;
  readonly projectDomainName: string;
  readonly port: number;
  readonly name: string;
}

/** Reads a running instance's details; fails loudly (tests must not skip silently). */
export function keystoneInstance(name = "default"): KeystoneInstance {
  const base = localStateDir(REPO);
  const file = join(base, "keystone", name, "instance.json");
  if (!existsSync(file)) {
    throw new Error(`no local Keystone '${name}' (${file} missing): run scripts/keystone.sh start, or npm test`);
  }
  return JSON.parse(readFileSync(file, "utf8")) as KeystoneInstance;
}

/** The admin's auth settings for an instance. */
export function adminAuth(inst: KeystoneInstance = keystoneInstance(), authUrl = inst.authUrl): KeystoneAuth {
  return {
    authUrl: authUrl.replace(/\/+$/, "").replace(/(\/v3)?$/, "/v3"),
    userId: undefined,
    userName: inst.username,
    userDomainId: undefined,
    userDomainName: inst.userDomainName,
    password: inst.password,
    token: undefined,
    projectId: undefined,
    projectName: inst.projectName,
    projectDomainId: undefined,
    projectDomainName: inst.projectDomainName,
    caPem: undefined,
    insecure: false,
    source: "test",
  };
}

/** The OS_* environment for the admin of an instance. */
export function adminEnv(inst: KeystoneInstance = keystoneInstance()): Record<string, string> {
  const env = instanceEnv(inst);
  if (env === undefined) throw new Error(`local Keystone '${inst.name}': instance.json lacks admin settings`);
  return env;
}

/** A fresh random password, also recorded so the secret scan can look for it. */
export function randomPassword(): string {
  return `Pw-${randomBytes(12).toString("base64url")}`;
}

/** A test user made in Keystone, with its password. */
export interface TestUser {
  readonly id: string;
  readonly name: string;
  readonly domain: string;
  readonly password: string;
}

/** Creates a user with a random password in the Default domain. */
export async function makeUser(admin: KeystoneClient, name: string): Promise<TestUser> {
  const domainId = (await admin.domainIdByName("Default")) ?? "default";
  const password = randomPassword();
  const existing = await admin.findUser(name, "Default");
  if (existing) await admin.deleteUser(existing.id);
  const u = await admin.createUser({ name, domainId, password });
  return { id: u.id, name, domain: "Default", password };
}

/** A client for the admin of the default instance. */
export function adminClient(authUrl?: string): KeystoneClient {
  const inst = keystoneInstance();
  return new KeystoneClient(adminAuth(inst, authUrl ?? inst.authUrl));
}

/** A short unique suffix for names. */
export function uniq(): string {
  return randomBytes(4).toString("hex");
}

/** An answer of {@link keystoneRest}. */
export interface RestAnswer {
  readonly status: number;
  readonly body: unknown;
  readonly token: string | undefined;
}

/** One raw request to an instance's v3 API (`path` relative to /v3), with an optional token. */
export async function keystoneRest(
  method: string,
  path: string,
  o: { token?: string; json?: unknown; inst?: KeystoneInstance } = {},
): Promise<RestAnswer> {
  const base = adminAuth(o.inst ?? keystoneInstance()).authUrl;
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(o.token ? { "x-auth-token": o.token } : {}),
      ...(o.json === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(o.json === undefined ? {} : { body: JSON.stringify(o.json) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    body: text ? JSON.parse(text) : undefined,
    token: res.headers.get("x-subject-token") ?? undefined,
  };
}

/** A project-scoped token for a user, by password (the admin's project unless named). */
export async function passwordToken(
  u: { name: string; domain: string; password: string },
  projectName = keystoneInstance().projectName,
): Promise<string> {
  const res = await keystoneRest("POST", "/auth/tokens?nocatalog", {
    json: {
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: u.name, domain: { name: u.domain }, password: u.password } },
        },
        scope: { project: { name: projectName, domain: { name: "Default" } } },
      },
    },
  });
  if (res.status !== 201 || !res.token) throw new Error(`password login of ${u.name} answered ${res.status}`);
  return res.token;
}

/** Gives a user a role (default `member`) on the admin's project, as the admin. */
export async function grantProjectRole(userId: string, roleName = "member"): Promise<void> {
  const inst = keystoneInstance();
  const token = await passwordToken({ name: inst.username, domain: inst.userDomainName, password: inst.password });
  const roles = await keystoneRest("GET", `/roles?${new URLSearchParams({ name: roleName })}`, { token });
  const roleId = (roles.body as { roles: { id: string }[] }).roles[0]?.id;
  const projects = await keystoneRest("GET", `/projects?${new URLSearchParams({ name: inst.projectName })}`, { token });
  const projectId = (projects.body as { projects: { id: string }[] }).projects[0]?.id;
  if (!roleId || !projectId) throw new Error(`no role '${roleName}' or project '${inst.projectName}' in Keystone`);
  const res = await keystoneRest("PUT", `/projects/${projectId}/users/${userId}/roles/${roleId}`, { token });
  if (res.status !== 204) throw new Error(`role assignment answered ${res.status}`);
}

/**
 * Makes an application credential for a user, as the user does (with their own token), after
 * giving them the member role on the admin's project. Its secret is returned for login tests.
 */
export async function makeAppCredential(u: TestUser): Promise<{ id: string; secret: string }> {
  await grantProjectRole(u.id);
  const token = await passwordToken(u);
  const res = await keystoneRest("POST", `/users/${u.id}/application_credentials`, {
    token,
    json: { application_credential: { name: `ac-${uniq()}` } },
  });
  const ac = (res.body as { application_credential?: { id: string; secret: string } }).application_credential;
  if (res.status !== 201 || !ac) throw new Error(`application credential create answered ${res.status}`);
  return { id: ac.id, secret: ac.secret };
}

/** Logs in with an application credential: the HTTP status (201 = token issued). */
export async function appCredentialLogin(ac: { id: string; secret: string }): Promise<number> {
  const res = await keystoneRest("POST", "/auth/tokens?nocatalog", {
    json: { auth: { identity: { methods: ["application_credential"], application_credential: ac } } },
  });
  return res.status;
}
