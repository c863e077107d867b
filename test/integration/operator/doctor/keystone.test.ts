/**
 * The doctor against the real Keystone (the default instance, totp enabled): every Keystone
 * check passes for the admin and leaves nothing behind; an account with only the member role
 * gets a clear permission failure and leaves nothing behind either; users with MFA rules but
 * no credential are counted from a CSV; a shifted local clock is reported as skew; a
 * self-signed HTTPS endpoint is refused until its CA is given, then flagged as expiring soon.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { generateSecret } from "../../../../lib/totp/secret.ts";
import { checkClock } from "../../../../operator/doctor/clock-check.ts";
import { openProbeSession } from "../../../../operator/doctor/probe.ts";
import { type DoctorReport, formatJson, formatText, runDoctor } from "../../../../operator/doctor/run.ts";
import { checkTotpMethod } from "../../../../operator/doctor/totp-method.ts";
import type { CheckResult } from "../../../../operator/doctor/types.ts";
import {
  adminAuth,
  adminClient,
  adminEnv,
  keystoneInstance,
  makeUser,
  type TestUser,
  uniq,
} from "../../../support/keystone.ts";
import { deleteUser, updateUserOptions } from "../../../support/keystone-admin.ts";
import { deleteProject, grantRole, makeProject } from "../../../support/posture.ts";
import { leakedIn, registerSecrets } from "../../../support/secrets.ts";
import { makeSelfSignedCertificate, opensslAvailable } from "../../../support/smtp.ts";
import { startTlsTerminator, type TlsTerminator } from "../../../support/tls.ts";

const MFA_RULES = { multi_factor_auth_enabled: true, multi_factor_auth_rules: [["password", "totp"]] };

let admin: KeystoneClient;
const users: TestUser[] = [];
let dir: string;

/** A user made for this file, with its password registered for the secret scan. */
async function user(prefix: string): Promise<TestUser> {
  const u = await makeUser(admin, `it-doctor-${prefix}-${uniq()}`);
  registerSecrets(u.password);
  users.push(u);
  return u;
}

function check(report: DoctorReport, id: string): CheckResult {
  const c = report.checks.find((r) => r.id === id);
  if (!c) throw new Error(`no check ${id} in the report`);
  return c;
}

beforeAll(() => {
  admin = adminClient();
  dir = mkdtempSync(join(tmpdir(), "kt-doctor-ks-"));
});

afterAll(async () => {
  for (const u of users) await deleteUser(admin, u.id);
  admin.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("doctor against the real Keystone", () => {
  it("passes every Keystone check for the admin, and leaves no credential behind", async () => {
    const me = await admin.whoami();
    const before = await admin.listTotpCredentials(me.userId);
    const report = await runDoctor({ env: adminEnv(), cloudsYamlPaths: [], skipMail: true });
    for (const id of [
      "config.keystone",
      "keystone.reachable",
      "keystone.tls",
      "keystone.token",
      "keystone.credentials",
      "keystone.totp-method",
      "keystone.clock",
    ]) {
      expect(check(report, id).status, `${id}: ${check(report, id).message}`).toBe("ok");
    }
    expect(report.exitCode).toBe(0);
    expect(check(report, "keystone.reachable").message).toMatch(/identity v3\.\d+ \(stable\)/);
    expect(check(report, "keystone.token").message).toMatch(/roles: .*admin/);
    const probeUserId = String(check(report, "keystone.credentials").details?.probeUserId);
    expect(await admin.listTotpCredentials(probeUserId)).toEqual([]);
    expect((await admin.listTotpCredentials(me.userId)).map((c) => c.id)).toEqual(before.map((c) => c.id));
    const out = formatText(report) + formatJson(report);
    expect(leakedIn(out, [keystoneInstance().password])).toBe(0);
  });

  it("gives an account with only the member role a clear permission failure, leaving nothing behind", async () => {
    const member = await user("member");
    const projectName = `it-doctor-${uniq()}`;
    const projectId = await makeProject(projectName);
    try {
      await grantRole(member.id, projectId, "member");
      const inst = keystoneInstance();
      const report = await runDoctor({
        env: {
          OS_AUTH_URL: inst.authUrl,
          OS_USERNAME: member.name,
          OS_PASSWORD: member.password,
          OS_USER_DOMAIN_NAME: "Default",
          OS_PROJECT_NAME: projectName,
          OS_PROJECT_DOMAIN_NAME: "Default",
        },
        cloudsYamlPaths: [],
        skipMail: true,
      });
      const token = check(report, "keystone.token");
      expect(token.status).toBe("warning");
      expect(token.message).toContain("no 'admin' role");
      const creds = check(report, "keystone.credentials");
      expect(creds.status).toBe("failure");
      expect(creds.code).toBe("E_KEYSTONE_FORBIDDEN");
      expect(creds.message).toContain(
        `the account cannot manage credentials: needs the admin role on project ${projectName} in domain Default`,
      );
      expect(creds.fix).toMatch(/openstack role add --user .* admin/);
      expect(report.exitCode).toBe(3);
      // nothing behind: no credential on the member itself, nor on the made-up probe user
      expect(await admin.listTotpCredentials(member.id)).toEqual([]);
      expect(await admin.listTotpCredentials(String(creds.details?.probeUserId))).toEqual([]);
      expect(leakedIn(formatText(report) + formatJson(report), [member.password])).toBe(0);
    } finally {
      await deleteProject(projectId);
    }
  });

  it("counts users from a CSV: MFA rules without a credential, a credential without MFA rules, missing users", async () => {
    const mfaNoCred = await user("mfa-nocred");
    const credNoMfa = await user("cred-nomfa");
    const credMfa = await user("cred-mfa");
    const plain = await user("plain");
    await updateUserOptions(admin, mfaNoCred.id, MFA_RULES);
    await updateUserOptions(admin, credMfa.id, MFA_RULES);
    for (const u of [credNoMfa, credMfa]) {
      const secret = generateSecret();
      registerSecrets(secret);
      await admin.createTotpCredential(u.id, secret);
    }
    const missing = `it-doctor-missing-${uniq()}`;
    const csv = join(dir, "users.csv");
    writeFileSync(
      csv,
      `username,email,domain\n${[mfaNoCred, credNoMfa, credMfa, plain].map((u) => `${u.name},${u.name}@example.com,Default`).join("\n")}\n` +
        `${missing},${missing}@example.com,Default\n`,
    );
    const report = await runDoctor({ env: adminEnv(), cloudsYamlPaths: [], skipMail: true, csvFile: csv });
    expect(check(report, "users.csv").message).toContain("5 user(s) in 1 domain(s)");
    const found = check(report, "users.found");
    expect(found).toMatchObject({ status: "failure", code: "E_USER_NOT_FOUND" });
    expect(found.message).toContain(`1 of 5 user(s) not found in Keystone: ${missing}@Default`);
    const creds = check(report, "users.credentials");
    expect(creds.message).toBe("2 of 4 user(s) already have a TOTP credential");
    const mfa = check(report, "users.mfa");
    expect(mfa.status).toBe("failure");
    expect(mfa.message).toMatch(
      /^1 user\(s\) have MFA rules requiring TOTP but no TOTP credential, so they cannot log in/,
    );
    expect(mfa.details).toEqual({
      mfaWithoutCredential: [`${mfaNoCred.name}@Default`],
      credentialWithoutMfa: [`${credNoMfa.name}@Default`],
    });
    expect(report.exitCode).toBe(2); // the first failure: a user not found (bad input)
  });

  it("reports clock skew from a faked local clock: +90 s fails, +15 s warns, 0 is ok", async () => {
    const client = new KeystoneClient(adminAuth());
    const measure = async (shiftMs: number) =>
      checkClock((await openProbeSession({ client, now: () => Date.now() + shiftMs })).info);
    try {
      const ahead90 = await measure(90_000);
      expect(ahead90.status).toBe("failure");
      expect(ahead90.message).toMatch(/Keystone's clock is (89|90|91)\.\d s behind this machine's/);
      expect(ahead90.message).toMatch(/every fresh code .* refused/);
      expect(ahead90.code).toBe("E_KEYSTONE_HTTP");
      expect((await measure(15_000)).status).toBe("warning");
      expect((await measure(-15_000)).status).toBe("warning");
      expect((await measure(-90_000)).status).toBe("failure");
      const now = await measure(0);
      expect(now.status).toBe("ok");
      expect(Math.abs(Number(now.details?.skewMs))).toBeLessThan(2_000);
      // the same through the whole doctor, which takes the clock as an option
      const report = await runDoctor({
        env: adminEnv(),
        cloudsYamlPaths: [],
        skipMail: true,
        now: () => Date.now() + 90_000,
      });
      expect(check(report, "keystone.clock").status).toBe("failure");
      expect(report.exitCode).toBe(3);
    } finally {
      client.close();
    }
  });

  it("sees the totp method enabled on the default instance (a wrong code is just a wrong code)", async () => {
    const client = new KeystoneClient(adminAuth());
    try {
      const r = await checkTotpMethod(await openProbeSession({ client, now: Date.now }));
      expect(r.status).toBe("ok");
      expect(r.details).toMatchObject({ status: 401 });
    } finally {
      client.close();
    }
  });
});

describe.runIf(opensslAvailable())("doctor: TLS in front of the real Keystone", () => {
  let terminator: TlsTerminator;
  let port: number;
  let caFile: string;

  beforeAll(async () => {
    const cert = makeSelfSignedCertificate(dir);
    if (!cert) throw new Error("openssl is needed for the TLS test");
    caFile = cert.certFile;
    terminator = await startTlsTerminator(cert, keystoneInstance().port);
    port = terminator.port;
  });

  afterAll(async () => {
    await terminator.close();
  });

  it("refuses the self-signed certificate with advice, then accepts it with OS_CACERT and warns of its expiry", async () => {
    const env = { ...adminEnv(), OS_AUTH_URL: `https://127.0.0.1:${port}/v3` };
    const refused = await runDoctor({ env, cloudsYamlPaths: [], skipMail: true });
    expect(check(refused, "keystone.reachable").status).toBe("failure");
    const tls = check(refused, "keystone.tls");
    expect(tls).toMatchObject({ status: "failure", code: "E_KEYSTONE_NETWORK" });
    expect(tls.message).toMatch(/TLS verification of https:\/\/127\.0\.0\.1:\d+\/v3 failed/);
    expect(tls.fix).toMatch(/OS_CACERT/);
    expect(check(refused, "keystone.token").status).toBe("skipped");
    expect(refused.exitCode).toBe(3);

    const trusted = await runDoctor({ env: { ...env, OS_CACERT: caFile }, cloudsYamlPaths: [], skipMail: true });
    expect(check(trusted, "keystone.reachable").status).toBe("ok");
    const expiring = check(trusted, "keystone.tls");
    expect(expiring.status).toBe("warning"); // the test certificate is valid for one day
    expect(expiring.message).toMatch(/is verified but expires on \d{4}-\d\d-\d\d, in [01] day/);
    expect(check(trusted, "keystone.credentials").status).toBe("ok");
    expect(trusted.exitCode).toBe(0);
  });
});
