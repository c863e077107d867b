/**
 * `verify-code USER@DOMAIN CODE` as a subprocess against the real Keystone, with the admin's
 * OS_* environment: the current code and the previous window's are valid, a wrong one is not,
 * for a user without MFA rules and for one with them (Keystone's auth receipt); bad input and
 * an unreachable Keystone get their exit codes; no secret ever appears in the output.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { generateSecret, TOTP_PERIOD_S, totpCode } from "../../../../lib/totp/secret.ts";
import {
  adminClient,
  adminEnv,
  keystoneInstance,
  makeUser,
  REPO,
  type TestUser,
  uniq,
} from "../../../support/keystone.ts";
import { deleteUser, updateUserOptions } from "../../../support/keystone-admin.ts";
import { leakedIn, registerSecrets } from "../../../support/secrets.ts";

const execFileAsync = promisify(execFile);
const WINDOW_MS = TOTP_PERIOD_S * 1000;
/** Time a check needs (node start + one login), in ms; codes are made with at least this left. */
const CHECK_BUDGET_MS = 8_000;

let admin: KeystoneClient;
let plain: TestUser;
let mfa: TestUser;
let unenrolled: TestUser;
const secrets: string[] = [];
const outputs: string[] = [];

/** Runs the script with the admin's OS_* environment (or `env` instead). */
async function verifyCode(
  args: string[],
  env: Record<string, string> = adminEnv(),
): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(clean)) if (k.startsWith("OS_")) delete clean[k];
  const r = await execFileAsync(join(REPO, "node_modules/.bin/node"), [join(REPO, "scripts/verify-code.ts"), ...args], {
    env: { ...clean, ...env },
    cwd: REPO,
  }).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  outputs.push(r.stdout, r.stderr);
  return r;
}

/** Waits, if needed, until the current TOTP window has at least {@link CHECK_BUDGET_MS} left. */
async function freshWindow(): Promise<void> {
  const left = WINDOW_MS - (Date.now() % WINDOW_MS);
  if (left < CHECK_BUDGET_MS) await new Promise((r) => setTimeout(r, left + 200));
}

/** A code valid in none of the previous, current and next windows. */
function wrongCode(secret: string): string {
  const now = Date.now();
  const near = new Set([-1, 0, 1].map((k) => totpCode(secret, now + k * WINDOW_MS)));
  for (let n = Number(totpCode(secret, now)) + 1; ; n++) {
    const c = String(n % 1_000_000).padStart(6, "0");
    if (!near.has(c)) return c;
  }
}

async function enroll(u: TestUser): Promise<string> {
  const secret = generateSecret();
  registerSecrets(secret);
  secrets.push(secret);
  await admin.createTotpCredential(u.id, secret);
  return secret;
}

let plainSecret: string;
let mfaSecret: string;

beforeAll(async () => {
  admin = adminClient();
  plain = await makeUser(admin, `it-vc-plain-${uniq()}`);
  // A user name that is an address: USER@DOMAIN is split on the last @.
  mfa = await makeUser(admin, `it-vc-${uniq()}@corp.example`);
  unenrolled = await makeUser(admin, `it-vc-none-${uniq()}`);
  registerSecrets(plain.password, mfa.password, unenrolled.password);
  plainSecret = await enroll(plain);
  mfaSecret = await enroll(mfa);
  await updateUserOptions(admin, mfa.id, {
    multi_factor_auth_enabled: true,
    multi_factor_auth_rules: [["password", "totp"]],
  });
});

afterAll(async () => {
  for (const u of [plain, mfa, unenrolled]) if (u) await deleteUser(admin, u.id);
  admin.close();
  // No secret, password or token in anything the script printed.
  const all = outputs.join("\n");
  expect(
    leakedIn(all, [...secrets, plain.password, mfa.password, unenrolled.password, keystoneInstance().password]),
  ).toBe(0);
});

describe("verify-code against the real Keystone", () => {
  // Each code is checked once: Keystone 30 with a cache accepts a code once (the previous
  // window's code first, then the current one: two different codes).
  it("user without MFA rules: previous and current window valid (exit 0), a wrong code invalid (exit 1)", async () => {
    const who = `${plain.name}@Default`;
    await freshWindow();
    const previous = await verifyCode([who, totpCode(plainSecret, Date.now() - WINDOW_MS)]);
    expect(previous.code).toBe(0);
    const current = await verifyCode([who, totpCode(plainSecret)]);
    expect(current.code).toBe(0);
    expect(current.stdout).toMatch(
      /^VALID: the code is valid for it-vc-plain-\w+@Default right now\. On Keystone 2026\.2 \(30\) and later with a cache, this code is now used: wait for the next one/m,
    );
    const wrong = await verifyCode([who, wrongCode(plainSecret)]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(/^INVALID: Keystone refused the code .* 1 TOTP credential\(s\)/m);
    expect(wrong.stdout).toMatch(/a code already used once \(by a login or by this check\) is refused/);
  });

  it("user with MFA rules (auth receipt): previous and current window valid, a wrong code invalid", async () => {
    const who = `${mfa.name}@Default`;
    expect(who).toMatch(/^it-vc-\w+@corp\.example@Default$/);
    await freshWindow();
    const previous = await verifyCode([who, totpCode(mfaSecret, Date.now() - WINDOW_MS)]);
    expect(previous.code).toBe(0);
    const current = await verifyCode([who, totpCode(mfaSecret).replace(/^(\d{3})/, "$1 ")]);
    expect(current.code).toBe(0);
    expect(current.stdout).toMatch(
      /^VALID: .* Keystone also requires password \+ totp at login.* this code is now used/m,
    );
    const wrong = await verifyCode([who, wrongCode(mfaSecret)]);
    expect(wrong.code).toBe(1);
  });

  it("explains a user that is not enrolled (exit 1) or does not exist (exit 2)", async () => {
    const none = await verifyCode([`${unenrolled.name}@Default`, "123456"]);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/no TOTP credential/);
    const missing = await verifyCode([`it-vc-missing-${uniq()}@Default`, "123456"]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toMatch(/does not exist/);
  });

  it("refuses bad input with exit 2 and usage errors with 64, before asking Keystone", async () => {
    expect((await verifyCode([`${plain.name}@Default`, "12345"])).code).toBe(2);
    expect((await verifyCode([`${plain.name}@Default`, "abcdef"])).code).toBe(2);
    const noDomain = await verifyCode([plain.name, "123456"]);
    expect(noDomain.code).toBe(2);
    expect(noDomain.stderr).toMatch(/USER@DOMAIN/);
    expect((await verifyCode([`${plain.name}@`, "123456"])).code).toBe(2);
    expect((await verifyCode([`${plain.name}@Default`])).code).toBe(64);
  });

  it("exits 3 when Keystone cannot be reached", async () => {
    const r = await verifyCode([`${plain.name}@Default`, "123456"], { OS_AUTH_URL: "http://127.0.0.1:9/v3" });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/could not be reached/);
  });
});
