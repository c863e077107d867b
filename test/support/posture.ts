/**
 * How a user can log in, measured on the real Keystone (never through the fault proxy): with
 * the password alone, a TOTP code alone (user ID + passcode), password + TOTP, or one of the
 * user's application credentials; each returns Keystone's HTTP status (201 = token issued).
 * Also: a project role and an application credential made with the user's own token, the
 * user's MFA options and keystone-totp's marker as the admin reads them, and a watcher that
 * tries a TOTP code alone for every credential a user holds, all along a run.
 *
 * Tokens are thrown away; passwords, TOTP secrets and application-credential secrets are
 * registered for the secret scan and never printed.
 */
import { randomBytes } from "node:crypto";
import { KeystoneClient, tokenRequestBody } from "../../lib/keystone/client.ts";
import { createTransport, type Transport } from "../../lib/keystone/http.ts";
import { login } from "../../lib/keystone/login.ts";
import { admitsTotpAlone, optionsOf } from "../../lib/mfa/posture.ts";
import { totpCode } from "../../lib/totp/secret.ts";
import { adminAuth, keystoneInstance, type TestUser } from "./keystone.ts";
import { registerSecrets } from "./secrets.ts";

/** Attempts at creating an application credential (see makeAppCredential), and the pause between. */
const APP_CREDENTIAL_ATTEMPTS = 10;
const APP_CREDENTIAL_RETRY_MS = 500;

/** The real Keystone's identity v3 URL (the default instance), never the proxy's. */
export function keystoneUrl(): string {
  return adminAuth().authUrl;
}

let shared: Transport | undefined;
function transport(): Transport {
  shared ??= createTransport();
  return shared;
}

/** An application credential of a user; `secret` is registered for the secret scan. */
export interface AppCredential {
  readonly id: string;
  readonly secret: string;
}

/** Raw admin calls the tool's client has no methods for (projects, roles). */
async function adminToken(): Promise<string> {
  const res = await transport().send({
    method: "POST",
    url: `${keystoneUrl()}/auth/tokens?nocatalog`,
    json: tokenRequestBody(adminAuth()),
  });
  const t = res.headers["x-subject-token"];
  if (res.status !== 201 || typeof t !== "string") throw new Error(`admin login failed: ${res.status}`);
  return t;
}

async function call(token: string, method: "GET" | "POST" | "PUT" | "PATCH", path: string, json?: unknown) {
  const res = await transport().send({
    method: method as "GET",
    url: `${keystoneUrl()}${path}`,
    headers: { "x-auth-token": token },
    json,
  });
  if (res.status >= 300) throw new Error(`${method} ${path.split("?")[0]}: HTTP ${res.status}`);
  return res.body as Record<string, unknown>;
}

/** A throwaway project in the Default domain; returns its ID. */
export async function makeProject(name: string): Promise<string> {
  const t = await adminToken();
  const body = await call(t, "POST", "/projects", { project: { name, domain_id: "default", enabled: true } });
  return String((body.project as { id: string }).id);
}

/** A project's ID by name (Default domain). */
export async function projectIdByName(name: string): Promise<string> {
  const t = await adminToken();
  const list = (await call(t, "GET", `/projects?name=${encodeURIComponent(name)}`)).projects as { id: string }[];
  if (!list[0]) throw new Error(`no project '${name}'`);
  return list[0].id;
}

/** Deletes a project (best effort). */
export async function deleteProject(id: string): Promise<void> {
  const t = await adminToken();
  await transport()
    .send({ method: "DELETE", url: `${keystoneUrl()}/projects/${id}`, headers: { "x-auth-token": t } })
    .catch(() => undefined);
}

/** Renames a user in Keystone, as an admin would (its ID, options and credentials stay). */
export async function renameUser(userId: string, name: string): Promise<void> {
  await call(await adminToken(), "PATCH", `/users/${userId}`, { user: { name } });
}

/** Gives a user a role (default `member`) on a project. */
export async function grantRole(userId: string, projectId: string, roleName = "member"): Promise<void> {
  const t = await adminToken();
  const roles = (await call(t, "GET", `/roles?name=${encodeURIComponent(roleName)}`)).roles as { id: string }[];
  const role = roles[0];
  if (!role) throw new Error(`no role '${roleName}'`);
  await call(t, "PUT", `/projects/${projectId}/users/${userId}/roles/${role.id}`);
}

/**
 * Creates an application credential as the user would: with the user's own project-scoped
 * token (password login), `POST /v3/users/{id}/application_credentials`.
 */
export async function makeAppCredential(user: TestUser, projectId: string): Promise<AppCredential> {
  // Keystone 22 (2 uWSGI workers) intermittently answers 400 "Could not find role assignment"
  // for a role granted moments before, more often under load (seen 2 times in 3 while the bench
  // ran); the same request a little later succeeds. Not what any test here is about: retried.
  for (let attempt = 1; ; attempt++) {
    const res = await transport().send({
      method: "POST",
      url: `${keystoneUrl()}/auth/tokens?nocatalog`,
      json: {
        auth: {
          identity: { methods: ["password"], password: { user: { id: user.id, password: user.password } } },
          scope: { project: { id: projectId } },
        },
      },
    });
    const token = res.headers["x-subject-token"];
    if (res.status !== 201 || typeof token !== "string") {
      throw new Error(`project-scoped login of ${user.name} failed: HTTP ${res.status}`);
    }
    const made = await transport().send({
      method: "POST",
      url: `${keystoneUrl()}/users/${user.id}/application_credentials`,
      headers: { "x-auth-token": token },
      json: { application_credential: { name: `automation-${randomBytes(3).toString("hex")}` } },
    });
    if (made.status === 201) {
      const ac = (made.body as { application_credential: { id: string; secret: string } }).application_credential;
      registerSecrets(ac.secret);
      return { id: ac.id, secret: ac.secret };
    }
    const stale = made.status === 400 && JSON.stringify(made.body).includes("role assignment");
    if (!stale || attempt >= APP_CREDENTIAL_ATTEMPTS) {
      throw new Error(`POST /users/${user.id}/application_credentials: HTTP ${made.status} (attempt ${attempt})`);
    }
    await new Promise((r) => setTimeout(r, APP_CREDENTIAL_RETRY_MS));
  }
}

/** Password alone (by user ID). */
export async function loginPassword(user: TestUser): Promise<number> {
  return (await login(keystoneUrl(), { id: user.id }, { password: user.password }, transport())).status;
}

/** A TOTP code alone: user ID and the current code of `secret`, no password. */
export async function loginTotpAlone(userId: string, secret: string): Promise<number> {
  registerSecrets(secret);
  return (await login(keystoneUrl(), { id: userId }, { passcode: totpCode(secret) }, transport())).status;
}

/** Password and the current code of `secret`. */
export async function loginPasswordTotp(user: TestUser, secret: string): Promise<number> {
  registerSecrets(secret);
  return (
    await login(keystoneUrl(), { id: user.id }, { password: user.password, passcode: totpCode(secret) }, transport())
  ).status;
}

/** An application credential (ID + secret), as Terraform or a CI job logs in. */
export async function loginAppCredential(ac: AppCredential): Promise<number> {
  const res = await transport().send({
    method: "POST",
    url: `${keystoneUrl()}/auth/tokens?nocatalog`,
    json: {
      auth: {
        identity: {
          methods: ["application_credential"],
          application_credential: { id: ac.id, secret: ac.secret },
        },
      },
    },
  });
  return res.status;
}

/** The four ways in, as statuses. */
export interface LoginMatrix {
  password: number;
  totpAlone: number | undefined;
  passwordTotp: number | undefined;
  appCredential: number | undefined;
}

/**
 * The user's login matrix: `secret` is the TOTP secret the user received (omit before
 * enrollment), `ac` one of their application credentials.
 */
export async function loginMatrix(user: TestUser, secret?: string, ac?: AppCredential): Promise<LoginMatrix> {
  return {
    password: await loginPassword(user),
    totpAlone: secret === undefined ? undefined : await loginTotpAlone(user.id, secret),
    passwordTotp: secret === undefined ? undefined : await loginPasswordTotp(user, secret),
    appCredential: ac === undefined ? undefined : await loginAppCredential(ac),
  };
}

/**
 * IDs of a user's TOTP credentials: what assertions compare, so that a failing one never
 * prints a credential's blob (the user's TOTP secret). Blobs are registered for the scan.
 */
export async function credentialIds(admin: KeystoneClient, userId: string): Promise<string[]> {
  const creds = await admin.listTotpCredentials(userId);
  registerSecrets(...creds.map((c) => c.blob));
  return creds.map((c) => c.id);
}

/** A user's options and keystone-totp's marker, as the admin reads them. */
export interface UserOptions {
  readonly options: Record<string, unknown>;
  /** The `keystone_totp` attribute; null when absent or null. */
  readonly marker: unknown;
}

/** Reads a user's options and marker. */
export async function readUserOptions(admin: KeystoneClient, userId: string): Promise<UserOptions> {
  const u = await admin.getUser(userId);
  if (!u) throw new Error(`user ${userId} is gone`);
  return { options: { ...u.options }, marker: u.marker ?? null };
}

/** Sorted copy of a rule set, for comparisons that ignore order. */
export function sortedRules(rules: unknown): string[][] {
  if (!Array.isArray(rules)) return [];
  return (rules as string[][]).map((r) => [...r].sort()).sort((a, b) => a.join(",").localeCompare(b.join(",")));
}

/** What a TOTP code alone did while being watched. */
export interface WatchReport {
  /** TOTP-alone logins tried (one per credential held, per round). */
  readonly tries: number;
  /** Users let in by a TOTP code alone at least once (names). */
  readonly opened: readonly string[];
}

/**
 * Tries a TOTP code alone, over and over until stopped, for every TOTP credential the given
 * users hold in Keystone (the blob as the admin reads it: the secret the user is sent). The
 * watcher has its own Keystone client, talks to Keystone directly, and never throws: a
 * failed round is simply tried again.
 */
export function watchTotpAlone(users: readonly { readonly id: string; readonly name: string }[]): {
  stop(): Promise<WatchReport>;
} {
  const client = new KeystoneClient(adminAuth(keystoneInstance()));
  let stopped = false;
  let tries = 0;
  const opened = new Set<string>();
  const loop = (async () => {
    while (!stopped) {
      for (const u of users) {
        if (stopped) break;
        try {
          for (const c of await client.listTotpCredentials(u.id)) {
            if (!/^[A-Z2-7]+=*$/.test(c.blob)) continue;
            tries++;
            if ((await loginTotpAlone(u.id, c.blob)) === 201) opened.add(u.name);
          }
        } catch {
          // Keystone busy or the user just deleted: the next round tries again.
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      client.close();
      return { tries, opened: [...opened] };
    },
  };
}

/** What {@link checkNoLockoutNoOpening} found. */
export interface SafetyReport {
  /** Users refused with their password alone (locked out before they scanned a QR code). */
  readonly lockedOut: string[];
  /** Users holding a TOTP credential whose options let a TOTP code alone in. */
  readonly openRules: string[];
  /** Users let in by a TOTP code alone, with one of the secrets they hold. */
  readonly openLogin: string[];
  /** How many users hold at least one TOTP credential. */
  readonly withCredential: number;
}

/**
 * The two promises of a staged enrollment, for every user: the password alone still logs in
 * (nobody is locked out), and whoever holds a TOTP credential has rules that refuse a TOTP
 * code alone, both by the options Keystone holds and by trying it.
 */
export async function checkNoLockoutNoOpening(
  admin: KeystoneClient,
  users: readonly TestUser[],
): Promise<SafetyReport> {
  const methods = await admin.authMethods();
  const r = { lockedOut: [] as string[], openRules: [] as string[], openLogin: [] as string[], withCredential: 0 };
  for (const u of users) {
    if ((await loginPassword(u)) !== 201) r.lockedOut.push(u.name);
    const creds = await admin.listTotpCredentials(u.id);
    registerSecrets(...creds.map((c) => c.blob));
    if (creds.length === 0) continue;
    r.withCredential++;
    const now = await admin.getUser(u.id);
    if (!now || admitsTotpAlone(optionsOf(now.options), methods)) r.openRules.push(u.name);
    for (const c of creds) {
      if (/^[A-Z2-7]+=*$/.test(c.blob) && (await loginTotpAlone(u.id, c.blob)) === 201) {
        r.openLogin.push(u.name);
        break;
      }
    }
  }
  return r;
}
