/**
 * Fleet set-up shared by the end-to-end tests: people (a Keystone user with an address), the
 * users CSV, a stack wired to a Keystone (usually behind the fault proxy) and a real SMTP
 * server, `up` that never throws, and the tally of what each user holds (credentials in
 * Keystone, messages at the mail server, and whether the latest message logs them in).
 * {@link startFaultFleet} puts all of it together behind the fault proxy, for the fault tests.
 *
 * No TOTP secret is read back from Keystone (Keystone 30 never returns one): the secrets known
 * here are the ones the users were mailed.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import {
  adminAuth,
  adminEnv,
  type KeystoneInstance,
  keystoneInstance,
  makeUser,
  type TestUser,
  uniq,
} from "./keystone.ts";
import { deleteUser } from "./keystone-admin.ts";
import { type KnownSecrets, loginPasswordTotp } from "./posture.ts";
import { type FaultProxy, startFaultProxy } from "./proxy.ts";
import { type RunResult, TestStack } from "./pulumi.ts";
import { leakedIn, registerSecrets } from "./secrets.ts";
import { secretOfMessage, secretsSentTo, startSmtpServer, type TestSmtpServer } from "./smtp.ts";

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
  /**
   * The OS_* settings the tool runs with instead of the default instance's admin (another
   * instance's admin, a less privileged operator); `OS_AUTH_URL` is replaced by `authUrl`.
   */
  readonly operator?: Record<string, string>;
}

/** Creates and configures a stack of the repo's program for a fleet test. */
export async function fleetStack(prefix: string, o: FleetStackOptions): Promise<TestStack> {
  const env = o.operator ?? adminEnv();
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

/** The secrets a person was mailed, at every address they had (see {@link secretsSentTo}). */
export function mailedSecrets(smtp: TestSmtpServer, p: Person): Promise<string[]> {
  return secretsSentTo(smtp, [...p.oldEmails, p.email]);
}

/** {@link KnownSecrets} of these people: what each was mailed (others: none). */
export function knownByMail(smtp: TestSmtpServer, ps: readonly Person[]): KnownSecrets {
  return (u) => {
    const p = ps.find((x) => x.user.id === u.id);
    return p ? mailedSecrets(smtp, p) : [];
  };
}

/** What each user has now: credentials in Keystone, messages received, and whether they agree. */
export interface Tally {
  /**
   * Users with no credential, or whom the secret of their latest message does not log in
   * (password + a code of that secret, straight to Keystone).
   */
  lost: string[];
  /** Extra credentials, plus messages beyond one per issued secret. */
  duplicated: number;
  credentials: Record<string, number>;
  messages: Record<string, number>;
}

/**
 * Counts what each person holds; "lost" is proved by a real login with the password and a code
 * of the latest message's secret, at `admin`'s Keystone (one fresh code per person: codes.ts).
 * Every mailed secret is registered for the secret scan.
 */
export async function tally(admin: KeystoneClient, smtp: TestSmtpServer, ps: readonly Person[]): Promise<Tally> {
  const t: Tally = { lost: [], duplicated: 0, credentials: {}, messages: {} };
  for (const p of ps) {
    const creds = await admin.listTotpCredentials(p.user.id);
    await mailedSecrets(smtp, p);
    const msgs = smtp.messagesFor(p.email);
    const all = msgs.length + p.oldEmails.reduce((n, a) => n + smtp.messagesFor(a).length, 0);
    t.credentials[p.user.name] = creds.length;
    t.messages[p.user.name] = all;
    t.duplicated += Math.max(0, creds.length - 1) + Math.max(0, all - p.issued);
    // The user scans the latest message at their current address.
    const last = msgs.at(-1);
    const secret = last ? await secretOfMessage(last) : undefined;
    const loggedIn =
      creds.length > 0 && secret !== undefined && (await loginPasswordTotp(p.user, secret, admin.auth.authUrl)) === 201;
    if (!loggedIn) t.lost.push(p.user.name);
  }
  return t;
}

/** `{ name: n }` for every person. */
export function each(ps: readonly Person[], n: number): Record<string, number> {
  return Object.fromEntries(ps.map((p) => [p.user.name, n]));
}

/** Settings of {@link startFaultFleet}. */
export interface FaultFleetOptions {
  /** Stack name prefix, e.g. `e2e-faults-mail`. */
  readonly prefix: string;
  /** People made at the start, in CSV order: each name becomes the user `<name>-<tag>`. */
  readonly people: readonly string[];
  /** The Keystone the fleet lives in; default the default instance. */
  readonly instance?: KeystoneInstance;
  /** The OS_* settings the tool runs with; default the instance's admin (see {@link FleetStackOptions.operator}). */
  readonly operator?: Record<string, string>;
  /**
   * Extra environment of every run. Default `KEYSTONE_TOTP_SKIP_DOCTOR=1`: the preflight doctor
   * has its own tests, and here its probes would consume the armed faults and blur the counts.
   */
  readonly env?: Record<string, string>;
  /** Extra plaintext config `keystone-totp:<key>` values. */
  readonly config?: Record<string, string>;
}

/**
 * A fleet for a fault test: people in Keystone and in the CSV, a real SMTP server, the fault
 * proxy in front of Keystone (the tool's only way to it) and a stack wired to both. Every run's
 * output is kept in `output` for the secret scan.
 */
export interface FaultFleet {
  /** Suffix of every name made here. */
  readonly tag: string;
  /** The instance's admin, straight to Keystone (never through the proxy: its calls are not counted). */
  readonly admin: KeystoneClient;
  readonly smtp: TestSmtpServer;
  readonly proxy: FaultProxy;
  readonly stack: TestStack;
  /** Path of the users CSV. */
  readonly csv: string;
  /** The people made so far, in the CSV's order; tests edit it and call {@link writeCsv}. */
  readonly people: Person[];
  /** stdout and stderr of every run through {@link up}. */
  readonly output: string[];
  /** Makes one more person (not added to `people` or the CSV). */
  person(name: string): Promise<Person>;
  /** Writes the CSV: `ps`, default `people`. */
  writeCsv(ps?: readonly Person[]): void;
  /** `up --yes --skip-preview EXTRA`, never throwing (see {@link upAllowFail}). */
  up(extra?: string[]): Promise<RunResult>;
  /** What each of `ps` (default `people`) holds now (see {@link tally}). */
  tally(ps?: readonly Person[]): Promise<Tally>;
  /**
   * How many secrets show in the runs' output or the stack's exported state: the admin's and
   * the people's passwords, the TOTP secrets they were mailed, and `extra`.
   */
  leaks(extra?: readonly string[]): Promise<number>;
  /** Brings the proxy up, destroys and removes the stack, stops the servers, deletes the people. */
  close(): Promise<void>;
}

/** Starts a {@link FaultFleet}: people, CSV, SMTP server, proxy and stack (no `up` yet). */
export async function startFaultFleet(o: FaultFleetOptions): Promise<FaultFleet> {
  const inst = o.instance ?? keystoneInstance();
  const tag = uniq();
  const admin = new KeystoneClient(adminAuth(inst));
  const csv = join(mkdtempSync(join(tmpdir(), `kt-${o.prefix}-`)), "users.csv");
  const people: Person[] = [];
  const output: string[] = [];
  const person = (name: string) => makePerson(admin, name, tag);
  for (const name of o.people) people.push(await person(name));
  writeFleetCsv(csv, people);
  const smtp = await startSmtpServer();
  const proxy = await startFaultProxy(inst.port);
  const stack = await fleetStack(o.prefix, {
    authUrl: `http://127.0.0.1:${proxy.port}/v3`,
    smtp,
    csv,
    operator: o.operator ?? adminEnv(inst),
    env: o.env ?? { KEYSTONE_TOTP_SKIP_DOCTOR: "1" },
    ...(o.config ? { config: o.config } : {}),
  });
  return {
    tag,
    admin,
    smtp,
    proxy,
    stack,
    csv,
    people,
    output,
    person,
    writeCsv: (ps = people) => writeFleetCsv(csv, ps),
    up: (extra = []) => upAllowFail(stack, output, extra),
    tally: (ps = people) => tally(admin, smtp, ps),
    leaks: async (extra = []) => {
      const state = await stack.exportText();
      const secrets = [inst.password, ...people.map((p) => p.user.password), ...extra];
      for (const p of people) secrets.push(...(await mailedSecrets(smtp, p)));
      return leakedIn(output.join("\n") + state, secrets);
    },
    close: async () => {
      await proxy.up();
      proxy.disarm();
      await stack.destroy().catch(() => undefined);
      await stack.remove();
      await smtp.close();
      await proxy.close();
      for (const p of people) await deleteUser(admin, p.user.id).catch(() => undefined);
      admin.close();
    },
  };
}
