/**
 * Upgrading a stack written by 0.1 (two resources per user: a TotpCredential and a
 * TotpDelivery) to one TotpEnrollment per user, through the real engine: nobody gets a new
 * secret or a second message, every credential ID stays, every user still logs in with the
 * QR code they already scanned, and the state is in the new shape afterwards.
 *
 * The 0.1 state is the real one: 0.1's own code (commit 6f034b5, the parent of 7e6db25 which
 * brought TotpEnrollment; see test/support/release.ts) enrolls the fleet on this test's
 * Keystone and stack, then this version runs on what it wrote.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { freshCode } from "../support/codes.ts";
import { fleetStack, makePerson, type Person, upAllowFail, writeFleetCsv } from "../support/fleet.ts";
import { adminClient, adminEnv, keystoneInstance, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import type { TestStack } from "../support/pulumi.ts";
import { earlierVersion, provisionWith } from "../support/release.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

/** The last commit whose program declared a TotpCredential and a TotpDelivery per user (7e6db25^). */
const V01 = "6f034b5";
const N = 4;
const T = "pulumi-nodejs:dynamic/keystone-totp";

const tag = uniq();
let v01: string;
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
const people: Person[] = [];
const output: string[] = [];
/** Each user's credential ID and the secret of the QR 0.1 sent them. */
const enrolled = new Map<string, { id: string; secret: string }>();

interface StateResource {
  readonly urn: string;
  readonly type: string;
  readonly outputs?: Record<string, unknown>;
}

async function resources(): Promise<StateResource[]> {
  return (
    (JSON.parse(await stack.exportText()) as { deployment: { resources?: StateResource[] } }).deployment.resources ?? []
  );
}

async function credentialIds(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const p of people) out[p.user.name] = (await admin.listTotpCredentials(p.user.id)).map((c) => c.id);
  return out;
}

beforeAll(async () => {
  const t0 = Date.now();
  v01 = earlierVersion(V01);
  console.log(`upgrade: 0.1 (${V01}) ready in ${Date.now() - t0} ms`);
  admin = adminClient();
  for (let i = 0; i < N; i++) people.push(await makePerson(admin, `upg${i}`, tag));
  const csv = join(mkdtempSync(join(tmpdir(), "kt-upgrade-")), "users.csv");
  writeFleetCsv(csv, people);
  smtp = await startSmtpServer();
  stack = await fleetStack("e2e-upgrade", { authUrl: keystoneInstance().authUrl, smtp, csv });
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const p of people) await deleteUser(admin, p.user.id).catch(() => undefined);
  admin?.close();
});

describe("upgrading a 0.1 stack (TotpCredential + TotpDelivery per user)", () => {
  it("0.1 enrolls the fleet: a TotpCredential and a TotpDelivery per user, one message each", async () => {
    const r = await provisionWith(v01, stack, ["up", "--yes"], output);
    expect(r.code, (r.stdout + r.stderr).slice(-3000)).toBe(0);
    expect(smtp.received).toHaveLength(N);
    const types = (await resources()).map((x) => x.type);
    expect(types.filter((t) => t === `${T}:TotpCredential`)).toHaveLength(N);
    expect(types.filter((t) => t === `${T}:TotpDelivery`)).toHaveLength(N);
    expect(types.filter((t) => t === `${T}:TotpEnrollment`)).toEqual([]);
    const ids = await credentialIds();
    for (const p of people) {
      const msgs = smtp.messagesFor(p.email);
      expect(msgs, p.email).toHaveLength(1);
      const secret = await secretOfMessage(msgs[0] as Buffer);
      registerSecrets(secret);
      expect(ids[p.user.name], p.user.name).toHaveLength(1);
      enrolled.set(p.user.name, { id: ids[p.user.name]?.[0] ?? "", secret });
    }
  });

  it("takes every user over without a new secret, a message or a lost credential", async () => {
    expect(enrolled.size, "the 0.1 enrollment above").toBe(N);
    const r = await upAllowFail(stack, output);
    expect(r.code, (r.stdout + r.stderr).slice(-3000)).toBe(0);
    expect(smtp.received).toHaveLength(N);
    expect(await credentialIds()).toEqual(
      Object.fromEntries(people.map((p) => [p.user.name, [enrolled.get(p.user.name)?.id]])),
    );

    const after = await resources();
    const types = after.map((x) => x.type);
    expect(types.filter((t) => t.endsWith(":TotpEnrollment"))).toHaveLength(N);
    expect(types.filter((t) => t.endsWith(":TotpCredential") || t.endsWith(":TotpDelivery"))).toEqual([]);
    for (const e of after.filter((x) => x.type.endsWith(":TotpEnrollment"))) {
      expect(e.outputs?.deliveredAt, e.urn).toBeTypeOf("string");
      expect(Object.keys(e.outputs ?? {})).not.toContain("otpauthUri");
    }

    // Each user still logs in with the code of the QR 0.1 sent them.
    for (const p of people) {
      const res = await login(
        admin.auth.authUrl,
        { name: p.user.name, domain: p.user.domain },
        { password: p.user.password, passcode: await freshCode(enrolled.get(p.user.name)?.secret ?? "") },
      );
      expect(res.status, p.user.name).toBe(201);
    }
    const again = await upAllowFail(stack, output, ["--expect-no-changes"]);
    expect(again.code, (again.stdout + again.stderr).slice(-3000)).toBe(0);
    expect(smtp.received).toHaveLength(N);
  });

  it("no secret in any output or in state", async () => {
    const all = [
      adminEnv().OS_PASSWORD ?? "",
      ...people.map((p) => p.user.password),
      ...[...enrolled.values()].map((e) => e.secret),
    ];
    expect(leakedIn(output.join("\n") + (await stack.exportText()), all)).toBe(0);
  });
});
