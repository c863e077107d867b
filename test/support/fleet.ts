/**
 * Fleet set-up shared by the end-to-end tests: people (a Keystone user with an address), the
 * users CSV, a stack wired to a Keystone (usually behind the fault proxy) and a real SMTP
 * server, `up` that never throws, and the tally of what each user holds (credentials in
 * Keystone, messages at the mail server, and whether they agree).
 */
import { writeFileSync } from "node:fs";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { adminEnv, makeUser, type TestUser } from "./keystone.ts";
import { type RunResult, TestStack } from "./pulumi.ts";
import { registerSecrets } from "./secrets.ts";
import { secretOfMessage, type TestSmtpServer } from "./smtp.ts";

/** One fleet member. */
export interface Person {
  readonly user: TestUser;
  email: string;
  /** Addresses used before `email`: messages sent there count too. */
  readonly oldEmails: string[];
  /** Secrets issued to this user so far (each must reach them in exactly one message). */
  issued: number;
}

/** Makes a Keystone user `<name>-<tag>` (password registered for the secret scan) with an address. */
export async function makePerson(admin: KeystoneClient, name: string, tag: string): Promise<Person> {
  const user = await makeUser(admin, `${name}-${tag}`);
  registerSecrets(user.password);
  return { user, email: `${name}-${tag}@example.com`, oldEmails: [], issued: 0 };
}

/** Writes a `username,email,domain` CSV of these people to `path`. */
export function writeFleetCsv(path: string, ps: readonly Person[]): void {
  const rows = ps.map((p) => `${p.user.name},${p.email},${p.user.domain}`);
  writeFileSync(path, `username,email,domain\n${rows.join("\n")}${rows.length > 0 ? "\n" : ""}`);
}

/** Settings of {@link fleetStack}. */
export interface FleetStackOptions {
  /** Identity v3 URL the tool uses (e.g. the fault proxy's). */
  readonly authUrl: string;
  readonly smtp: TestSmtpServer;
  /** The users CSV. */
  readonly csv: string;
  /** Extra environment (e.g. KEYSTONE_TOTP_SKIP_DOCTOR, another operator's OS_*). */
  readonly env?: Record<string, string>;
  /** Extra plaintext config `keystone-totp:<key>` values. */
  readonly config?: Record<string, string>;
}

/** Creates and configures a stack of the repo's program for a fleet test. */
export async function fleetStack(prefix: string, o: FleetStackOptions): Promise<TestStack> {
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  const stack = new TestStack(prefix, { ...env, OS_AUTH_URL: o.authUrl, ...o.env });
  await stack.init();
  await stack.set("keystone-totp:usersCsv", o.csv);
  await stack.set("keystone-totp:smtpUrl", o.smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:sendRatePerSecond", "100");
  for (const [k, v] of Object.entries(o.config ?? {})) await stack.set(`keystone-totp:${k}`, v);
  return stack;
}

/** `up --yes --skip-preview EXTRA`, never throwing; its output is pushed to `output`. */
export async function upAllowFail(stack: TestStack, output: string[], extra: string[] = []): Promise<RunResult> {
  const r = await stack.run(["up", "--yes", "--skip-preview", ...extra], { allowFail: true });
  output.push(r.stdout, r.stderr);
  return r;
}

/** What each user has now: credentials in Keystone, messages received, and whether they agree. */
export interface Tally {
  /** Users with no credential, or whose latest message does not hold their credential's secret. */
  lost: string[];
  /** Extra credentials, plus messages beyond one per issued secret. */
  duplicated: number;
  credentials: Record<string, number>;
  messages: Record<string, number>;
}

/** Counts what each person holds (credential blobs are registered for the secret scan). */
export async function tally(admin: KeystoneClient, smtp: TestSmtpServer, ps: readonly Person[]): Promise<Tally> {
  const t: Tally = { lost: [], duplicated: 0, credentials: {}, messages: {} };
  for (const p of ps) {
    const creds = await admin.listTotpCredentials(p.user.id);
    registerSecrets(...creds.map((c) => c.blob));
    const msgs = smtp.messagesFor(p.email);
    const all = msgs.length + p.oldEmails.reduce((n, a) => n + smtp.messagesFor(a).length, 0);
    t.credentials[p.user.name] = creds.length;
    t.messages[p.user.name] = all;
    t.duplicated += Math.max(0, creds.length - 1) + Math.max(0, all - p.issued);
    // The user scans the latest message at their current address.
    const last = msgs.at(-1);
    const secret = last ? await secretOfMessage(last) : undefined;
    if (creds.length === 0 || !creds.some((c) => c.blob === secret)) t.lost.push(p.user.name);
  }
  return t;
}

/** `{ name: n }` for every person. */
export function each(ps: readonly Person[], n: number): Record<string, number> {
  return Object.fromEntries(ps.map((p) => [p.user.name, n]));
}
