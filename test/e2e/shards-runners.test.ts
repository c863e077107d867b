/**
 * One fleet split between two machines: two runners as separate processes, each in a working
 * folder of its own (a copy of the project, as each machine has its own checkout), sharing what
 * docs/shared-backend.md says a team shares: the PostgreSQL state backend, the passphrase, the
 * stacks' config files, the users CSV, Keystone and the mail server. Runner A runs
 * `shards up --only 0`, runner B `--only 1`, at the same time. Every user is enrolled once, by
 * the one stack of their bucket; a second round is skipped by both (records in the database).
 */
import { copyFileSync, cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { userKey } from "../../lib/users/csv.ts";
import { shardOf } from "../../operator/fleet/shard.ts";
import { adminClient, adminEnv, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { type StateDatabase, stateDatabase } from "../support/postgres.ts";
import { collect } from "../support/process.ts";
import { pulumiBinDir } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";
import { startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const USERS = 8;
const tag = uniq();
const prefix = `e2e-runners-${tag}`;
const base = `${prefix}-base`;
/** What a machine's checkout holds of the project (node_modules is linked, not copied). */
const PROJECT_PARTS = [
  "index.ts",
  "lib",
  "providers",
  "operator",
  "scripts",
  "package.json",
  "Pulumi.yaml",
  "tsconfig.json",
];

let admin: KeystoneClient;
let smtp: TestSmtpServer;
let db: StateDatabase;
let shared: string;
let csv: string;
let env: Record<string, string>;
type Runner = { readonly name: string; readonly dir: string };
const runners: Runner[] = [];
const users: TestUser[] = [];
const output: string[] = [];
const emailOf = (u: TestUser) => `${u.name}@example.com`;

/** A working folder of its own, as a second machine's checkout of the project. */
function checkout(name: string): { name: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), `kt-runner-${name}-`));
  for (const part of PROJECT_PARTS) cpSync(join(REPO, part), join(dir, part), { recursive: true });
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  return { name, dir };
}

async function inRunner(r: { dir: string }, cmd: string, args: string[]) {
  const res = await collect(cmd, args, { cwd: r.dir, env });
  output.push(res.stdout, res.stderr);
  return { code: res.code, out: res.stdout + res.stderr };
}

const shards = (r: { dir: string }, ...args: string[]) =>
  inRunner(r, "node", [join(r.dir, "scripts/shards.ts"), ...args, "--stack-prefix", prefix, "--shards", "2"]);
const pulumi = (r: { dir: string }, ...args: string[]) => inRunner(r, "pulumi", ["--non-interactive", ...args]);

/** The user keys whose enrollment a stack holds. */
async function managedBy(stack: string): Promise<string[]> {
  const r = await collect("pulumi", ["--non-interactive", "stack", "export", "--stack", stack], {
    cwd: runners[0]?.dir ?? REPO,
    env,
  });
  expect(r.code, r.stderr).toBe(0);
  const dep = JSON.parse(r.stdout) as { deployment: { resources?: { urn: string; type: string }[] } };
  return (dep.deployment.resources ?? [])
    .filter((res) => res.type.endsWith(":TotpEnrollment"))
    .map((res) => res.urn.split("::").pop() as string)
    .sort();
}

beforeAll(async () => {
  admin = adminClient();
  db = stateDatabase("kt_e2e_runners");
  shared = mkdtempSync(join(tmpdir(), "kt-runners-shared-"));
  for (let i = 0; i < USERS; i++) users.push(await makeUser(admin, `runner${i}-${tag}`));
  csv = join(shared, "users.csv");
  writeFileSync(csv, `username,email,domain\n${users.map((u) => `${u.name},${emailOf(u)},${u.domain}`).join("\n")}\n`);
  smtp = await startSmtpServer();
  const ks = adminEnv();
  registerSecrets(ks.OS_PASSWORD ?? "");
  const passphrase = `pp-${uniq()}-${uniq()}`;
  registerSecrets(passphrase);
  env = {
    ...(process.env as Record<string, string>),
    ...ks,
    PATH: `${join(REPO, "node_modules/.bin")}:${pulumiBinDir()}:${process.env.PATH}`,
    PULUMI_BACKEND_URL: db.url,
    PULUMI_CONFIG_PASSPHRASE: passphrase,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    KEYSTONE_TOTP_SKIP_DOCTOR: "1",
  };
  runners.push(checkout("a"), checkout("b"));
  const a = runners[0] as { dir: string };
  // The team's settings, made once on one machine: a base stack, copied into the shard stacks.
  expect((await pulumi(a, "stack", "init", base, "--secrets-provider", "passphrase")).code).toBe(0);
  for (const [k, v, secret] of [
    ["keystone-totp:usersCsv", csv, false],
    ["keystone-totp:smtpUrl", smtp.url, true],
    ["keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>", false],
  ] as const) {
    const r = await pulumi(a, "config", "set", "--stack", base, secret ? "--secret" : "--plaintext", k, "--", v);
    expect(r.code, r.out).toBe(0);
  }
});

afterAll(async () => {
  const a = runners[0];
  if (a) {
    for (const i of [0, 1]) {
      await inRunner(a, "node", [join(a.dir, "scripts/provision.ts"), "destroy", "--stack", `${prefix}-${i}`, "--yes"]);
    }
    for (const s of [`${prefix}-0`, `${prefix}-1`, base])
      await pulumi(a, "stack", "rm", "--yes", "--force", "--stack", s);
  }
  await smtp?.close();
  for (const u of users) await deleteUser(admin, u.id).catch(() => undefined);
  admin?.close();
  await db?.drop();
  for (const r of runners) rmSync(r.dir, { recursive: true, force: true });
  if (shared) rmSync(shared, { recursive: true, force: true });
});

describe("one fleet, two machines, one shared backend", () => {
  it("each runner runs its own stacks at the same time: every user enrolled once, by the stack of their bucket", async () => {
    const [a, b] = runners as [Runner, Runner];
    // The stacks and their settings, made once (preview changes no user); the config files are
    // then shared with the other machine, as a team commits them to its repository.
    const made = await shards(a, "preview", "--config-from", base);
    expect(made.code, made.out).toBe(0);
    for (const i of [0, 1])
      copyFileSync(join(a.dir, `Pulumi.${prefix}-${i}.yaml`), join(b.dir, `Pulumi.${prefix}-${i}.yaml`));

    const [ra, rb] = await Promise.all([
      shards(a, "up", "--only", "0", "--yes"),
      shards(b, "up", "--only", "1", "--yes"),
    ]);
    expect(ra.code, ra.out).toBe(0);
    expect(rb.code, rb.out).toBe(0);
    expect(ra.out).toMatch(new RegExp(`this runner runs ${prefix}-0 \\(--only\\)`));
    expect(rb.out).toMatch(new RegExp(`this runner runs ${prefix}-1 \\(--only\\)`));
    for (const u of users) {
      expect(smtp.messagesFor(emailOf(u)), u.name).toHaveLength(1);
      expect(await admin.listTotpCredentials(u.id), u.name).toHaveLength(1);
    }
    const owners = await Promise.all([0, 1].map((i) => managedBy(`${prefix}-${i}`)));
    expect(owners.flat().sort()).toEqual(users.map((u) => userKey(u.domain, u.name)).sort());
    for (const [i, names] of owners.entries()) for (const n of names) expect(shardOf(n, 2), n).toBe(i);
  });

  it("the next round is skipped by both runners: the records are in the shared database", async () => {
    const [a, b] = runners as [Runner, Runner];
    const [ra, rb] = await Promise.all([
      shards(a, "up", "--only", "0", "--yes"),
      shards(b, "up", "--only", "1", "--yes"),
    ]);
    expect(ra.code, ra.out).toBe(0);
    expect(rb.code, rb.out).toBe(0);
    expect(ra.out).toMatch(/shards: 0 stack\(s\) run, 1 skipped/);
    expect(rb.out).toMatch(/shards: 0 stack\(s\) run, 1 skipped/);
    expect(smtp.received).toHaveLength(USERS);
  });

  it("--only is refused together with --reshard, before anything runs", async () => {
    const r = await shards(runners[0] as { dir: string }, "up", "--only", "0", "--reshard", "--yes");
    expect(r.code).toBe(64);
    expect(r.out).toMatch(/--only cannot be combined with --reshard/);
  });
});
