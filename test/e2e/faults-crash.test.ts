/**
 * `up` killed with SIGKILL mid-run (the provision process, the Pulumi CLI and the provider
 * plugin, all at once), while Keystone has stored credentials whose answers never arrived:
 * the state then holds pending creates and Keystone holds credentials Pulumi does not know.
 * Then the operator's recovery steps from the README ("Recovering from faults") are followed:
 * the recovery `up` adopts the credentials the killed run stored (they carry the stack's tag,
 * see lib/ownership.ts), so every user holds exactly one credential, delivered once, at once,
 * and no credential is left in Keystone that Pulumi does not manage.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { loginPasswordTotp } from "../support/posture.ts";
import { alive, killTree, pulumiCli, startDetachedUp, until as untilCondition } from "../support/process.ts";
import { type FaultProxy, startFaultProxy } from "../support/proxy.ts";
import { type RunResult, TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { secretOfMessage, startSmtpServer, type TestSmtpServer } from "../support/smtp.ts";

const N = 6;
/** Creates answered before the crash; the others reach Keystone and are never answered. */
const K = 3;
const WAIT_MS = 120_000;

interface Person {
  readonly user: TestUser;
  readonly email: string;
}

const tag = uniq();
let admin: KeystoneClient;
let smtp: TestSmtpServer;
let proxy: FaultProxy;
let stack: TestStack;
let dir: string;
const people: Person[] = [];
const output: string[] = [];

/** The Pulumi CLI itself on the stack, for what `provision` does not offer; output kept. */
async function cli(args: string[]): Promise<RunResult> {
  const r = await pulumiCli(stack, args);
  output.push(r.stdout, r.stderr);
  return r;
}

/** Credentials of the fleet's users in Keystone that are not in `managed`. */
async function orphans(managed: ReadonlySet<string>): Promise<string[]> {
  const out: string[] = [];
  for (const p of people) {
    for (const c of await admin.listTotpCredentials(p.user.id)) if (!managed.has(c.id)) out.push(c.id);
  }
  return out;
}

function until(what: string, ok: () => boolean): Promise<void> {
  return untilCondition(what, ok, WAIT_MS);
}

async function run(args: string[]): Promise<RunResult> {
  const r = await stack.run(args, { allowFail: true });
  output.push(r.stdout, r.stderr);
  return r;
}

/** Credential IDs Pulumi manages, and pending operations, from the state (secrets stay encrypted). */
async function state(): Promise<{ managed: Set<string>; pending: { type: string; urn: string }[] }> {
  const dep = JSON.parse(await stack.exportText()).deployment as {
    resources?: { type: string; outputs?: { credentialId?: string } }[];
    pending_operations?: { type: string; resource: { urn: string } }[];
  };
  const managed = new Set(
    (dep.resources ?? [])
      .filter((r) => r.type.endsWith(":TotpEnrollment"))
      .map((r) => String(r.outputs?.credentialId ?? "")),
  );
  return {
    managed,
    pending: (dep.pending_operations ?? []).map((o) => ({ type: o.type, urn: o.resource.urn })),
  };
}

beforeAll(async () => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-crash-"));
  for (let i = 0; i < N; i++) {
    const user = await makeUser(admin, `crash${i}-${tag}`);
    registerSecrets(user.password);
    people.push({ user, email: `crash${i}-${tag}@example.com` });
  }
  writeFileSync(
    join(dir, "users.csv"),
    `username,email,domain\n${people.map((p) => `${p.user.name},${p.email},Default`).join("\n")}\n`,
  );
  smtp = await startSmtpServer();
  proxy = await startFaultProxy(keystoneInstance().port);
  registerSecrets(adminEnv().OS_PASSWORD);
  stack = new TestStack("e2e-crash", {
    ...adminEnv(),
    OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3`,
    KEYSTONE_TOTP_SKIP_DOCTOR: "1",
  });
  await stack.init();
  await stack.set("keystone-totp:usersCsv", join(dir, "users.csv"));
  await stack.set("keystone-totp:smtpUrl", smtp.url, { secret: true });
  await stack.set("keystone-totp:mailFrom", "ACME Cloud <noreply@example.com>");
  await stack.set("keystone-totp:sendRatePerSecond", "100");
});

afterAll(async () => {
  proxy?.disarm();
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await smtp?.close();
  await proxy?.close();
  for (const p of people) await deleteUser(admin, p.user.id).catch(() => undefined);
  admin?.close();
});

describe("SIGKILL mid-up, then the README's recovery", () => {
  it("kill -9 of provision, CLI and provider while creates are in flight; recovery leaves one delivered credential each", async () => {
    proxy.arm(/^POST \/v3\/credentials /, "hold", N, { skip: K });
    const up = startDetachedUp(stack);
    const pid = up.child.pid ?? 0;
    // Keystone has stored the held creates (answers withheld); the answered users' messages are
    // delivered and the engine has saved their resources, beside the pending held creates.
    await until("Keystone to store the held creates", () => proxy.heldAnswered() >= N - K);
    await until("the first deliveries", () => smtp.received.length >= K);
    await until("the checkpoint of the answered creates", () => {
      const cp = stack.checkpointNow();
      const saved = (cp?.resources ?? []).filter((r) => r.type.endsWith(":TotpEnrollment") && r.outputs?.credentialId);
      return saved.length >= K && (cp?.pending_operations ?? []).length >= N - K;
    });
    const tree = killTree(pid);
    await up.exited;
    output.push(up.output());
    await untilCondition("every killed process to be gone", () => tree.every((p) => !alive(p)), 10_000).catch(
      () => undefined,
    );
    const survivors = tree.filter(alive);
    console.log(
      `crash: killed ${tree.length} processes (${smtp.received.length} messages sent); survivors ${survivors.length}`,
    );
    expect(survivors).toEqual([]);
    // What the crash left: a lock, pending creates, and credentials Pulumi does not know.
    const crashed = await state();
    expect(crashed.pending.map((o) => o.type)).toEqual(Array(N - K).fill("creating"));
    expect(await orphans(crashed.managed)).toHaveLength(N - K);
    const locked = await run(["up", "--yes", "--skip-preview"]);
    expect(locked.code).not.toBe(0);
    expect(locked.stdout + locked.stderr).toMatch(/the stack is currently locked/);
    proxy.disarm();

    // The README's recovery, step by step.
    // 1. Remove the lock the killed CLI left (file backend): pulumi cancel.
    expect((await run(["cancel", "--yes"])).code).toBe(0);
    // 2. Drop the interrupted creates from the state (refresh alone keeps them).
    const clear = await cli(["refresh", "--yes", "--skip-preview", "--clear-pending-creates"]);
    expect(clear.code, clear.stdout + clear.stderr).toBe(0);
    expect((await state()).pending).toEqual([]);
    // 3. up: the users whose create was interrupted get a credential and a message. The
    //    credentials Keystone stored for them in the killed run carry this stack's tag and are
    //    adopted, not duplicated: one credential each, at once, nothing left for a grace window.
    const repaired = await run(["up", "--yes", "--skip-preview"]);
    expect(repaired.code, repaired.stderr).toBe(0);
    const mid = await state();
    expect(mid.pending).toEqual([]);
    for (const p of people) expect(smtp.messagesFor(p.email), p.email).toHaveLength(1);
    expect(await orphans(mid.managed)).toEqual([]);
    for (const p of people) expect(await admin.listTotpCredentials(p.user.id), p.user.name).toHaveLength(1);
    // 4. once the grace window (rotationGraceHours, 24 by default) has passed, an up finds nothing to retire
    const later = new Date(Date.now() + 25 * 3_600_000).toISOString();
    const retired = await stack.run(["up", "--yes", "--skip-preview"], {
      allowFail: true,
      env: { KEYSTONE_TOTP_NOW: later },
    });
    output.push(retired.stdout, retired.stderr);
    expect(retired.code, retired.stderr).toBe(0);

    const end = await state();
    expect(await orphans(end.managed)).toEqual([]);
    let lost = 0;
    let duplicated = 0;
    for (const p of people) {
      const creds = await admin.listTotpCredentials(p.user.id);
      const msgs = smtp.messagesFor(p.email);
      expect(creds, p.user.name).toHaveLength(1);
      expect(msgs, p.email).toHaveLength(1);
      const secret = await secretOfMessage(msgs[0] as Buffer);
      // Lost unless the one credential is Pulumi's and the mailed secret logs in (no blob is read).
      const managed = creds.every((c) => end.managed.has(c.id));
      if (!managed || (await loginPasswordTotp(p.user, secret, admin.auth.authUrl)) !== 201) lost++;
      duplicated += Math.max(0, creds.length - 1) + Math.max(0, msgs.length - 1);
    }
    expect(lost).toBe(0);
    expect(duplicated).toBe(0);
    console.log(
      `crash: recovered with cancel, refresh --clear-pending-creates, up, up after the grace window: ` +
        `exits ${repaired.code}, ${retired.code}; lost ${lost}, duplicated ${duplicated}`,
    );
    expect((await run(["up", "--yes", "--expect-no-changes"])).code).toBe(0);
    expect(leakedIn(output.join("\n"), [adminEnv().OS_PASSWORD ?? "", ...people.map((p) => p.user.password)])).toBe(0);
  });
});
