/**
 * Upgrading a stack written by 0.1 (two resources per user: a TotpCredential and a
 * TotpDelivery) to one TotpEnrollment per user, through the real engine: nobody gets a new
 * secret or a second message, every credential ID stays, every user still logs in with the
 * QR code they already scanned, and the state is in the new shape afterwards.
 *
 * The 0.1 state is made from a current one by rewriting each enrollment into the two 0.1
 * resources with the fields 0.1 wrote (same secret ciphertext, same IDs), then imported.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { totpCode } from "../../lib/totp/secret.ts";
import { adminClient, adminEnv, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { TestStack } from "../support/pulumi.ts";
import { registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const N = 4;
const T = "pulumi-nodejs:dynamic/keystone-totp";
const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let stack: TestStack;
let dir: string;
const users: (TestUser & { email: string })[] = [];

interface StateResource {
  urn: string;
  type: string;
  id?: string;
  custom?: boolean;
  parent?: string;
  provider?: string;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
  dependencies?: string[];
  propertyDependencies?: Record<string, string[]>;
  [k: string]: unknown;
}

/** The two resources 0.1 kept for one user, from the one resource this version keeps. */
function asEarlierShape(e: StateResource): StateResource[] {
  const o = e.outputs ?? {};
  const providerOf = (file: string) => String(e.inputs?.__provider).replace("enrollment.cjs", file);
  const credUrn = e.urn.replace(":TotpEnrollment::", ":TotpCredential::");
  // 0.1 stored the address as the rotation trigger; this version derives it.
  const rotationTrigger = `email:${String(o.email).toLowerCase()}`;
  const labels = { userId: o.userId, issuer: o.issuer, account: o.account, rotationTrigger };
  const credInputs = { __provider: providerOf("credential.cjs"), ...labels, unmanaged: "remove", userChecked: true };
  const credential: StateResource = {
    urn: credUrn,
    custom: true,
    id: e.id,
    type: `${T}:TotpCredential`,
    inputs: credInputs,
    outputs: {
      ...credInputs,
      credentialId: o.credentialId,
      retiring: [],
      unmanagedIds: [],
      resolvedUserId: o.userId,
      accountLabel: o.account,
      // 0.1 also kept the URI as a secret; its ciphertext is as opaque as this one.
      secret: o.secret,
      otpauthUri: o.secret,
      fingerprint: o.fingerprint,
      createdAt: o.createdAt,
      rotatedAt: o.rotatedAt,
    },
    parent: e.parent,
    provider: e.provider,
    additionalSecretOutputs: ["secret", "otpauthUri"],
  };
  const name = e.urn.slice(e.urn.lastIndexOf("::") + 2);
  const deliveryRecord = {
    userKey: name,
    email: o.email,
    issuer: o.issuer,
    account: o.account,
    credentialId: o.credentialId,
    fingerprint: o.fingerprint,
  };
  const delivery: StateResource = {
    urn: e.urn.replace(":TotpEnrollment::", ":TotpDelivery::"),
    custom: true,
    id: `${o.credentialId}/${o.fingerprint}`,
    type: `${T}:TotpDelivery`,
    inputs: { __provider: providerOf("delivery.cjs"), ...deliveryRecord, graceHours: 24 },
    outputs: {
      __provider: providerOf("delivery.cjs"),
      ...deliveryRecord,
      deliveredTo: o.email,
      deliveredAt: o.deliveredAt,
      transport: "smtp",
      messageId: o.messageId,
      reason: "new",
      retiring: [],
      graceHours: 24,
    },
    parent: e.parent,
    provider: e.provider,
    dependencies: [credUrn],
  };
  return [credential, delivery];
}

async function managedIds(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const u of users) {
    const creds = await admin.listTotpCredentials(u.id);
    expect(creds, u.name).toHaveLength(1);
    out[u.name] = creds[0]?.id ?? "";
  }
  return out;
}

beforeAll(async () => {
  admin = adminClient();
  for (let i = 0; i < N; i++) {
    const u = await makeUser(admin, `upg${i}${tag}`);
    registerSecrets(u.password);
    users.push({ ...u, email: `upg${i}.${tag}@example.com` });
  }
  dir = mkdtempSync(join(tmpdir(), "kt-upgrade-"));
  const csv = join(dir, "users.csv");
  writeFileSync(csv, `username,email\n${users.map((u) => `${u.name},${u.email}`).join("\n")}\n`);
  smtp = await startSmtpServer();
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  stack = new TestStack("e2e-upgrade", env);
  await stack.init();
  await stack.set("keystone-totp:usersCsv", csv);
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "noreply@example.com");
  await stack.up();
  expect(smtp.received.length).toBe(N);
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  for (const u of users) await admin.deleteUser(u.id).catch(() => undefined);
  admin?.close();
});

describe("upgrading a 0.1 stack (TotpCredential + TotpDelivery per user)", () => {
  it("takes every user over without a new secret, a message or a lost credential", async () => {
    const before = await managedIds();
    const exported = JSON.parse(await stack.exportText()) as { deployment: { resources: StateResource[] } };
    const resources = exported.deployment.resources.flatMap((r) =>
      r.type === `${T}:TotpEnrollment` ? asEarlierShape(r) : [r],
    );
    expect(resources.filter((r) => r.type === `${T}:TotpDelivery`)).toHaveLength(N);
    const file = join(dir, "earlier.json");
    writeFileSync(file, JSON.stringify({ ...exported, deployment: { ...exported.deployment, resources } }), {
      mode: 0o600,
    });
    await stack.run(["stack", "import", "--file", file]);

    const r = await stack.run(["up", "--yes", "--skip-preview"]);
    expect(r.code, r.stderr).toBe(0);
    expect(smtp.received.length).toBe(N);
    expect(await managedIds()).toEqual(before);

    const after = JSON.parse(await stack.exportText()) as { deployment: { resources: StateResource[] } };
    const types = after.deployment.resources.map((x) => x.type);
    expect(types.filter((t) => t.endsWith(":TotpEnrollment"))).toHaveLength(N);
    expect(types.filter((t) => t.endsWith(":TotpCredential") || t.endsWith(":TotpDelivery"))).toEqual([]);
    for (const e of after.deployment.resources.filter((x) => x.type.endsWith(":TotpEnrollment"))) {
      expect(e.outputs?.deliveredAt, e.urn).toBeTypeOf("string");
      expect(Object.keys(e.outputs ?? {})).not.toContain("otpauthUri");
    }

    // Each user still logs in with the code of the QR they scanned before the upgrade.
    for (const u of users) {
      const [raw] = smtp.messagesFor(u.email);
      const secret = await secretOfMessage(raw as Buffer);
      const res = await login(
        admin.auth.authUrl,
        { name: u.name, domain: u.domain },
        { password: u.password, passcode: totpCode(secret) },
      );
      expect(res.status, u.name).toBe(201);
    }
    await stack.upNoChanges();
    expect(smtp.received.length).toBe(N);
  });
});
