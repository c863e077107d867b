/**
 * The doctor's login-posture checks against the real Keystone (default instance): it flags a
 * user made TOTP-only-open by hand (and the finding is real: a code alone gets a token), and a
 * user whose application credential MFA rules block (its login really gets 401); it never
 * writes to the operator's own user: it proves the right to create on a made-up user ID and
 * does its staging round trip on a throwaway user it deletes, also when the round trip fails
 * half-way; it warns when the operator's own account has MFA rules.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { login } from "../../../../lib/keystone/login.ts";
import { admitsTotpAlone, optionsOf, stagedRules } from "../../../../lib/mfa/posture.ts";
import { generateSecret, totpCode } from "../../../../lib/totp/secret.ts";
import { type DoctorReport, runDoctor } from "../../../../operator/doctor/run.ts";
import type { CheckResult } from "../../../../operator/doctor/types.ts";
import { adminClient, adminEnv, keystoneInstance, makeUser, type TestUser, uniq } from "../../../support/keystone.ts";
import { deleteUser, updateUserOptions } from "../../../support/keystone-admin.ts";
import { grantRole, loginAppCredential, makeAppCredential, projectIdByName } from "../../../support/posture.ts";
import { registerSecrets } from "../../../support/secrets.ts";

let admin: KeystoneClient;
const users: TestUser[] = [];
let dir: string;

async function user(prefix: string): Promise<TestUser> {
  const u = await makeUser(admin, `it-posture-${prefix}-${uniq()}`);
  registerSecrets(u.password);
  users.push(u);
  return u;
}

async function enroll(u: TestUser): Promise<string> {
  const secret = generateSecret();
  registerSecrets(secret);
  await admin.createTotpCredential(u.id, secret);
  return secret;
}

function csvOf(list: readonly TestUser[]): string {
  const file = join(dir, `users-${uniq()}.csv`);
  writeFileSync(
    file,
    `username,email,domain\n${list.map((u) => `${u.name},${u.name}@example.com,Default`).join("\n")}\n`,
  );
  return file;
}

function check(report: DoctorReport, id: string): CheckResult {
  const c = report.checks.find((r) => r.id === id);
  if (!c) throw new Error(`no check ${id} in the report`);
  return c;
}

const doctor = (csvFile?: string, extra: Parameters<typeof runDoctor>[0] = {}) =>
  runDoctor({ env: adminEnv(), cloudsYamlPaths: [], skipMail: true, credentialRoundTrip: false, csvFile, ...extra });

beforeAll(() => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-doctor-posture-"));
});

afterAll(async () => {
  for (const u of users) await deleteUser(admin, u.id);
  admin.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("doctor: login posture of the CSV's users", () => {
  it("flags an enrolled user a TOTP code alone logs in, names them, and says how to fix it", async () => {
    const open = await user("open");
    const staged = await user("staged");
    const openSecret = await enroll(open);
    await enroll(staged);
    const methods = await admin.authMethods();
    await admin.writeUserMfa(
      staged.id,
      { enabled: true, rules: stagedRules(methods) },
      { v: 1, previous: { enabled: null, rules: null } },
    );
    // The finding is real: 6 digits and no password get a token.
    const alone = await login(keystoneInstance().authUrl, { id: open.id }, { passcode: totpCode(openSecret) });
    expect(alone.status).toBe(201);

    const report = await doctor(csvOf([open, staged]));
    const c = check(report, "users.totp-alone");
    expect(c.status).toBe("failure");
    expect(c.message).toContain(`1 of 2 enrolled user(s) can log in with a TOTP code alone`);
    expect(c.message).toContain(`${open.name}@Default`);
    expect(c.message).not.toContain(staged.name);
    expect(c.fix).toContain("npm run provision -- up --refresh");
    expect(report.exitCode).not.toBe(0);
  });

  it("flags a user whose application credential the MFA rules block, and not one the tool's rules keep", async () => {
    const blocked = await user("ac-blocked");
    const kept = await user("ac-kept");
    const projectId = await projectIdByName(keystoneInstance().projectName);
    await grantRole(blocked.id, projectId);
    await grantRole(kept.id, projectId);
    const blockedAc = await makeAppCredential(blocked, projectId);
    await makeAppCredential(kept, projectId);
    expect(await loginAppCredential(blockedAc)).toBe(201);
    await updateUserOptions(admin, blocked.id, {
      multi_factor_auth_enabled: true,
      multi_factor_auth_rules: [["password", "totp"]],
    });
    // The finding is real: the application credential no longer logs in.
    expect(await loginAppCredential(blockedAc)).toBe(401);

    const report = await doctor(csvOf([blocked, kept]));
    const c = check(report, "users.app-credentials");
    expect(c.status).toBe("warning");
    expect(c.message).toMatch(/^1 of 2 user\(s\) with application credentials are \(or will be\) refused/);
    expect(c.message).toContain(`${blocked.name}@Default`);
    expect(c.message).not.toContain(kept.name);
    expect(c.fix).toContain('["application_credential"]');

    const refusing = await doctor(csvOf([kept]), {
      posture: { enforceMfa: true, refuseApplicationCredentials: true },
    });
    const r = check(refusing, "users.app-credentials");
    expect(r.status).toBe("warning");
    expect(r.message).toContain("keystone-totp:refuseApplicationCredentials is set");
    expect(r.message).toContain(`${kept.name}@Default`);
  });

  it("fails on a rule made only of a method Keystone lacks (LP#2102096), and finds every user's options writable", async () => {
    const voided = await user("voided");
    await updateUserOptions(admin, voided.id, {
      multi_factor_auth_enabled: true,
      multi_factor_auth_rules: [["password", "totp"], ["mapped"]],
    });
    const report = await doctor(csvOf([voided]));
    const c = check(report, "users.rule-methods");
    expect(c.status).toBe("failure");
    expect(c.message).toContain("LP#2102096");
    expect(c.message).toContain(`${voided.name}@Default`);
    expect(c.message).toContain("(mapped)");
    const s = check(report, "users.stageable");
    expect(s.status).toBe("ok");
    expect(s.details?.drivers).toEqual({ default: "sql" });
  });
});

describe("doctor: nothing written to the operator; the round trip on a throwaway user", () => {
  async function operator() {
    const me = await admin.whoami();
    const u = await admin.getUser(me.userId);
    if (!u) throw new Error("no operator user");
    return u;
  }

  it("proves create on a made-up user ID and staging on a throwaway user; the operator's user is untouched", async () => {
    const methods = await admin.authMethods();
    const before = await operator();
    const seenProbe: number[] = [];
    const seen: { userId: string; name: string | undefined; credentials: number; totpAlone: boolean }[] = [];
    const report = await doctor(undefined, {
      credentialRoundTrip: true,
      onProbeCredential: async (userId) => {
        // The probe credential belongs to a user ID that no user has.
        expect(await admin.getUser(userId)).toBeUndefined();
        seenProbe.push((await admin.listTotpCredentials(userId)).length);
      },
      onRoundTripCredential: async (userId) => {
        const during = await admin.getUser(userId);
        seen.push({
          userId,
          name: during?.name,
          credentials: (await admin.listTotpCredentials(userId)).length,
          totpAlone: admitsTotpAlone(optionsOf(during?.options ?? {}), methods),
        });
      },
    });
    const c = check(report, "keystone.credentials");
    expect(c.status).toBe("ok");
    expect(c.details).toMatchObject({ createProbeStatus: 201, deleteCreatedStatus: 204, deleteProbeStatus: 404 });
    expect(seenProbe).toEqual([1]);
    const st = check(report, "keystone.staging");
    expect(st.status, st.message).toBe("ok");
    expect(st.details).toMatchObject({
      createUserStatus: 201,
      writeRulesStatus: 200,
      totpAloneStatus: 401,
      passwordWithReceiptStatus: 201,
      deleteUserStatus: 204,
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.userId).not.toBe(before.id);
    expect(seen[0]?.name).toMatch(/^keystone-totp-doctor-[0-9a-f]{12}$/);
    expect(seen[0]).toMatchObject({ credentials: 1, totpAlone: false });
    // Gone again, with its credential; the probe credential too.
    expect(await admin.getUser(seen[0]?.userId ?? "")).toBeUndefined();
    expect(await admin.listTotpCredentials(seen[0]?.userId ?? "")).toEqual([]);
    expect(await admin.listTotpCredentials(String(c.details?.probeUserId))).toEqual([]);
    const after = await operator();
    expect(after.options).toEqual(before.options);
    expect(after.marker).toEqual(before.marker);
    expect(await admin.listTotpCredentials(after.id)).toEqual([]);
    expect(check(report, "keystone.operator-mfa").status).toBe("ok");
  });

  it("deletes the throwaway user when the round trip fails half-way", async () => {
    let made = "";
    await expect(
      doctor(undefined, {
        credentialRoundTrip: true,
        onRoundTripCredential: async (userId) => {
          made = userId;
          throw new Error("interrupted");
        },
      }),
    ).rejects.toThrow("interrupted");
    expect(made).not.toBe("");
    expect(await admin.getUser(made)).toBeUndefined();
  });

  it("warns (never fails) when the operator's own account has MFA rules, and writes nothing to it", async () => {
    // A throwaway operator, given its rules by the instance's admin: on Keystone 30 an account
    // with rules could not take its own rules off again (the instance's admin would be locked
    // out of MFA administration for every later test).
    const op = await user("operator");
    const inst = keystoneInstance();
    await grantRole(op.id, await projectIdByName(inst.projectName), "admin");
    const own = { multi_factor_auth_enabled: true, multi_factor_auth_rules: [["password"], ["password", "totp"]] };
    await updateUserOptions(admin, op.id, own);
    const report = await runDoctor({
      env: { ...adminEnv(), OS_USERNAME: op.name, OS_PASSWORD: op.password, OS_USER_DOMAIN_NAME: "Default" },
      cloudsYamlPaths: [],
      skipMail: true,
      credentialRoundTrip: false,
    });
    const m = check(report, "keystone.operator-mfa");
    expect(m.status).toBe("warning");
    expect(m.message).toMatch(
      /Keystone 2026\.2 \(30\).*fresh TOTP code.*bulk runs need an operator account without rules/,
    );
    expect(m.fix).toMatch(/require_mfa_for_sensitive_account_actions = false/);
    const after = await admin.getUser(op.id);
    expect(after?.options).toEqual(own);
    expect(after?.marker).toBeUndefined();
  });

  it("writes nothing at all without the round trip (provision's preflight)", async () => {
    const report = await doctor(undefined, {
      credentialRoundTrip: false,
      onProbeCredential: async () => {
        throw new Error("no credential may be created");
      },
    });
    const c = check(report, "keystone.credentials");
    expect(c.status).toBe("ok");
    expect(c.details?.createProbeStatus).toBe(400);
    expect(c.message).toMatch(/the right to create was not proven/);
    expect(check(report, "keystone.staging").status).toBe("skipped");
  });
});
