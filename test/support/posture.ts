/**
 * How a user can log in, measured on the real Keystone (never through the fault proxy): with
 * the password alone, a TOTP code alone (user ID + passcode), password + TOTP, or one of the
 * user's application credentials; each returns Keystone's HTTP status (201 = token issued).
 * Also: a project role and an application credential made with the user's own token, the
 * user's MFA options and keystone-totp's marker as the admin reads them, and a watcher that
 * checks, all along a run, that no user holding a TOTP credential can log in with a TOTP code alone.
 *
 * Nothing here reads a TOTP secret back from Keystone (Keystone 30 never returns one): the
 * secrets a test knows are the ones its users were mailed (see `secretsSentTo` in smtp.ts) or
 * its own inputs. Every TOTP code comes from codes.ts, used once (Keystone 30 refuses a code
 * the second time, even after a login the user's rules refused).
 *
 * Tokens are thrown away; passwords, TOTP secrets and application-credential secrets are
 * registered for the secret scan and never printed.
 */
import { randomBytes } from "node:crypto";
import { KeystoneClient, tokenRequestBody } from "../../lib/keystone/client.ts";
import { createTransport, type Transport } from "../../lib/keystone/http.ts";
import { login } from "../../lib/keystone/login.ts";
import { admitsTotpAlone, optionsOf } from "../../lib/mfa/posture.ts";
import { freshCode, spareCode } from "./codes.ts";
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

/**
 * A TOTP code alone: user ID and an unused code of `secret` (see codes.ts), no password.
 *
 * @param url - identity v3 URL; default the real Keystone of {@link keystoneUrl}.
 */
export async function loginTotpAlone(userId: string, secret: string, url = keystoneUrl()): Promise<number> {
  registerSecrets(secret);
  return (await login(url, { id: userId }, { passcode: await freshCode(secret) }, transport())).status;
}

/**
 * Password and an unused code of `secret` (see codes.ts).
 *
 * @param url - identity v3 URL; default the real Keystone of {@link keystoneUrl}.
 */
export async function loginPasswordTotp(user: TestUser, secret: string, url = keystoneUrl()): Promise<number> {
  registerSecrets(secret);
  const passcode = await freshCode(secret);
  return (await login(url, { id: user.id }, { password: user.password, passcode }, transport())).status;
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
 * prints a credential's blob (where Keystone still returns one). Blobs are not read.
 */
export async function credentialIds(admin: KeystoneClient, userId: string): Promise<string[]> {
  return (await admin.listTotpCredentials(userId)).map((c) => c.id);
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

/** A user the watcher and the safety check look at. */
export interface WatchedUser {
  readonly id: string;
  readonly name: string;
}

/**
 * The TOTP secrets a test knows a user holds: what the user was mailed (e.g.
 * `(u) => secretsSentTo(smtp, [emailOf(u)])`) or the test's own inputs. Never read from Keystone.
 */
export type KnownSecrets = (user: WatchedUser) => Promise<readonly string[]> | readonly string[];

/**
 * Whether a user is open to a TOTP code alone by what Keystone holds: a TOTP credential exists
 * while the user's options admit a TOTP code alone. The credentials are listed before and after
 * the options are read, and only a credential in both lists counts, so a credential deleted (or
 * created) while the options change never makes a false alarm.
 */
async function openByRules(client: KeystoneClient, userId: string, methods: readonly string[]): Promise<boolean> {
  const first = new Set((await client.listTotpCredentials(userId)).map((c) => c.id));
  const user = await client.getUser(userId);
  if (!user) throw new Error(`user ${userId} is gone`);
  const admits = admitsTotpAlone(optionsOf(user.options), methods);
  if (first.size === 0 || !admits) return false;
  return (await client.listTotpCredentials(userId)).some((c) => first.has(c.id));
}

/** What the watcher saw. */
export interface WatchReport {
  /** Probes that ran to the end: a user's credentials and options read (one per user per round). */
  readonly tries: number;
  /** Real TOTP-alone logins tried with a secret the test knew (at most one per secret per minute). */
  readonly logins: number;
  /** Probes that failed (their first messages in `errorMessages`); none is expected. */
  readonly errors: number;
  readonly errorMessages: readonly string[];
  /** Users found open at least once: a credential held while their options admitted TOTP alone, or a token got by TOTP alone. */
  readonly opened: readonly string[];
  /** Of those, the users a real TOTP-alone login let in. */
  readonly openLogin: readonly string[];
}

/** Watcher rounds pause this long; real logins with one secret are at most this often. */
const WATCH_PAUSE_MS = 50;
const WATCH_LOGIN_EVERY_MS = 60_000;
/** Error messages kept in a report. */
const KEPT_ERRORS = 5;

/**
 * Watches users all along a run, until stopped, with its own Keystone client talking to Keystone
 * directly. Each round, for each user: whether they hold a TOTP credential while their options
 * admit a TOTP code alone (see {@link openByRules}: on every release, even before the user's
 * secret is mailed); and, for each secret `known` says the user holds, a real TOTP-alone login
 * now and then, with a spare code (see `spareCode` in codes.ts: never one the test needs).
 * Failed probes are counted and reported, never hidden: callers assert that probes ran.
 */
export function watchTotpAlone(users: readonly WatchedUser[], known?: KnownSecrets): { stop(): Promise<WatchReport> } {
  const client = new KeystoneClient(adminAuth(keystoneInstance()));
  let stopped = false;
  let tries = 0;
  let logins = 0;
  let errors = 0;
  const errorMessages: string[] = [];
  const opened = new Set<string>();
  const openLogin = new Set<string>();
  const lastLogin = new Map<string, number>();
  let methods: string[] | undefined;
  const failed = (u: WatchedUser, e: unknown) => {
    errors++;
    if (errorMessages.length < KEPT_ERRORS) errorMessages.push(`${u.name}: ${(e as Error)?.message ?? String(e)}`);
  };
  const loop = (async () => {
    while (!stopped) {
      for (const u of users) {
        if (stopped) break;
        try {
          methods ??= await client.authMethods();
          if (await openByRules(client, u.id, methods)) opened.add(u.name);
          tries++;
        } catch (e) {
          failed(u, e);
        }
        try {
          for (const secret of known ? await known(u) : []) {
            if (stopped) break;
            if (Date.now() - (lastLogin.get(secret) ?? 0) < WATCH_LOGIN_EVERY_MS) continue;
            const passcode = spareCode(secret);
            if (passcode === undefined) continue;
            lastLogin.set(secret, Date.now());
            logins++;
            const status = (await login(keystoneUrl(), { id: u.id }, { passcode }, transport())).status;
            if (status === 201) {
              opened.add(u.name);
              openLogin.add(u.name);
            } else if (status !== 401) {
              throw new Error(`TOTP-alone login: HTTP ${status}`);
            }
          }
        } catch (e) {
          failed(u, e);
        }
      }
      await new Promise((r) => setTimeout(r, WATCH_PAUSE_MS));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      client.close();
      return { tries, logins, errors, errorMessages, opened: [...opened], openLogin: [...openLogin] };
    },
  };
}

/** What {@link checkNoLockoutNoOpening} found. */
export interface SafetyReport {
  /** Users refused with their password alone (locked out before they scanned a QR code). */
  readonly lockedOut: string[];
  /** Users holding a TOTP credential whose options let a TOTP code alone in. */
  readonly openRules: string[];
  /** Users let in by a TOTP code alone, with one of the secrets the test knows they hold. */
  readonly openLogin: string[];
  /** How many users hold at least one TOTP credential. */
  readonly withCredential: number;
  /** TOTP-alone logins tried (one per known secret of a user holding a credential). */
  readonly logins: number;
}

/**
 * The two promises of a staged enrollment, for every user: the password alone still logs in
 * (nobody is locked out), and whoever holds a TOTP credential has rules that refuse a TOTP
 * code alone: by the options Keystone holds, and by trying it with every secret `known` says the
 * user holds (each try spends a code: see codes.ts).
 */
export async function checkNoLockoutNoOpening(
  admin: KeystoneClient,
  users: readonly TestUser[],
  known?: KnownSecrets,
): Promise<SafetyReport> {
  const methods = await admin.authMethods();
  const r = {
    lockedOut: [] as string[],
    openRules: [] as string[],
    openLogin: [] as string[],
    withCredential: 0,
    logins: 0,
  };
  for (const u of users) {
    if ((await loginPassword(u)) !== 201) r.lockedOut.push(u.name);
    const creds = await admin.listTotpCredentials(u.id);
    if (creds.length === 0) continue;
    r.withCredential++;
    const now = await admin.getUser(u.id);
    if (!now || admitsTotpAlone(optionsOf(now.options), methods)) r.openRules.push(u.name);
    for (const secret of known ? await known(u) : []) {
      r.logins++;
      if ((await loginTotpAlone(u.id, secret)) === 201) {
        r.openLogin.push(u.name);
        break;
      }
    }
  }
  return r;
}
