/**
 * The fleet's main paths through PLAIN `pulumi preview` / `up` / `destroy`: the CLI starts
 * Pulumi's Node.js language host on index.ts (Pulumi.yaml: `runtime: nodejs`, type stripping),
 * as an operator's own `pulumi up` does, instead of the Automation API of `npm run provision`.
 * Against the real Keystone and a real SMTP server: preview plans one create per user and
 * changes nothing, onboarding sends one message per user whose QR code logs that user in (and
 * a preview after it plans nothing), and destroy leaves no credential and sends nothing.
 *
 * What does not depend on how the program is started (a rerun changes and sends nothing; a CSV
 * edit does exactly what it says) is tested once, in fleet.test.ts, through the same engine.
 *
 * Needs `pulumi-language-nodejs` beside the CLI (scripts/get-pulumi.sh builds it with
 * ../shared/tools): without it the file skips and says why, except in CI, where it fails.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { plainCliGate } from "../support/language-host.ts";
import { TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

/** Users onboarded by the first `up`. */
const FLEET_SIZE = 5;
const ENROLLMENT_TYPE = ":TotpEnrollment";

interface Person {
  readonly user: TestUser;
  readonly email: string;
}

/** What `pulumi preview --json` reports, as far as these tests read it. */
interface PreviewJson {
  readonly steps?: readonly { op: string; urn: string }[];
  readonly changeSummary?: Record<string, number>;
}

const gate = plainCliGate();
if (gate.skip) console.warn(`[plain-cli] skipping the plain pulumi CLI tests: ${gate.missing}`);

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
let dir: string;
const fleet: Person[] = [];
/** Everyone who was ever in the CSV: destroy must leave none of them a credential. */
const everyone: Person[] = [];
const output: string[] = [];
let destroyed = false;

async function newPerson(name: string): Promise<Person> {
  const p = { user: await makeUser(admin, `${name}${tag}`), email: `${name}${tag}@example.com` };
  registerSecrets(p.user.password);
  everyone.push(p);
  return p;
}

function writeCsv(people: readonly Person[]): void {
  const rows = people.map((p) => `${p.user.name},${p.email},${p.user.domain}`);
  writeFileSync(join(dir, "users.csv"), `username,email,domain\n${rows.join("\n")}\n`);
}

/** The user's name in a resource URN (names are `username@domain`). */
function userOf(urn: string): string {
  return decodeURIComponent((urn.split("::").pop() ?? "").split("@")[0] ?? "");
}

/** Enrollment steps other than `same` that a plain `pulumi preview` plans, as "op user". */
async function plannedChanges(): Promise<string[]> {
  const r = await stack.run(["preview", "--json"]);
  output.push(r.stdout, r.stderr);
  const plan = JSON.parse(r.stdout) as PreviewJson;
  return (plan.steps ?? [])
    .filter((s) => s.op !== "same" && s.urn.includes(ENROLLMENT_TYPE))
    .map((s) => `${s.op} ${userOf(s.urn)}`)
    .sort();
}

/** Logs the person in with password + the code from the QR code of their only message. */
async function loginWithEmailedCode(p: Person): Promise<number> {
  const msgs = smtp.messagesFor(p.email);
  expect(msgs, p.email).toHaveLength(1);
  const secret = await secretOfMessage(msgs[0] as Buffer);
  const res = await login(
    admin.auth.authUrl,
    { name: p.user.name, domain: p.user.domain },
    { password: p.user.password, passcode: await freshCode(secret) },
  );
  return res.status;
}

beforeAll(async () => {
  if (gate.skip) return;
  // CI must run these tests: a missing language host fails them here, loudly.
  if (gate.missing) throw new Error(`plain pulumi CLI tests cannot run: ${gate.missing}`);
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-plain-"));
  for (let i = 0; i < FLEET_SIZE; i++) fleet.push(await newPerson(`plain${i}-`));
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  stack = new TestStack("e2e-plain", env, { engine: "plain" });
  await stack.init();
  writeCsv(fleet);
  await stack.set("keystone-totp:usersCsv", join(dir, "users.csv"));
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:issuer", "ACME Cloud");
});

afterAll(async () => {
  if (gate.skip) return;
  if (!destroyed) await stack?.run(["destroy", "--yes", "--skip-preview"], { allowFail: true });
  await stack?.remove();
  await smtp?.close();
  for (const p of everyone) await deleteUser(admin, p.user.id).catch(() => undefined);
  admin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(gate.skip)(
  `fleet through plain pulumi preview/up/destroy (Node.js language host)${gate.skip ? `: skipped, ${gate.missing}` : ""}`,
  () => {
    it(`preview plans ${FLEET_SIZE} enrollments and changes nothing`, async () => {
      expect(await plannedChanges()).toEqual(fleet.map((p) => `create ${p.user.name}`).sort());
      expect(smtp.received).toHaveLength(0);
      for (const p of fleet) expect(await admin.listTotpCredentials(p.user.id)).toEqual([]);
    });

    it(`up onboards ${FLEET_SIZE} users: one message each, whose QR code logs its user in with password + TOTP`, async () => {
      const up = await stack.up();
      output.push(up.stdout, up.stderr);
      expect(smtp.received).toHaveLength(FLEET_SIZE);
      for (const p of fleet) {
        expect(await loginWithEmailedCode(p), p.user.name).toBe(201);
        expect(await admin.listTotpCredentials(p.user.id)).toHaveLength(1);
      }
      expect((await stack.outputs()).deliveries).toBe(FLEET_SIZE);
      // The program the language host runs is stable: run again, it plans nothing (a preview,
      // cheaper than a rerun `up`; that a rerun sends nothing is fleet.test.ts's).
      expect(await plannedChanges(), "a preview after the up").toEqual([]);
      expect(smtp.received).toHaveLength(FLEET_SIZE);
    });

    it("destroy leaves no TOTP credential for any user and sends nothing", async () => {
      const sent = smtp.received.length;
      const down = await stack.destroy();
      destroyed = true;
      output.push(down.stdout, down.stderr);
      for (const p of everyone) expect(await admin.listTotpCredentials(p.user.id), p.user.name).toEqual([]);
      expect(await stack.resourceOutputs(ENROLLMENT_TYPE)).toEqual({});
      expect(smtp.received.length).toBe(sent);
    });

    it("no secret in state or in any output", async () => {
      const secrets = readFileSync(join(REPO, ".local/test-secrets.txt"), "utf8")
        .split("\n")
        .filter((s) => s.length >= 8);
      expect(leakedIn(await stack.exportText(), secrets)).toBe(0);
      expect(leakedIn(output.join("\n"), secrets)).toBe(0);
    });
  },
);
