/**
 * TOTP passcodes for the tests' logins, each used at most once per secret in this process.
 *
 * Keystone 30 (with a cache) accepts a passcode once within its window plus 30 s, and a TOTP
 * login the user's rules refuse still uses the code up; every release accepts the current 30-s
 * step and the previous one (`[totp] included_previous_windows`, default 1), never a future one.
 * So no test may log in twice with one code: every login with a code takes it from here.
 * Earlier releases (22, 27) accept a code as often as its step is valid: against them (the
 * release of the test Keystone, {@link spendsCodes}) the current step's code is handed out at
 * once, every time, where waiting for an unused step would cost up to 30 s per login (about
 * 2 minutes in posture.test.ts alone). That a test takes a fresh code for every login is checked
 * where it matters: the compatibility suite runs the tests that log in repeatedly on 30.
 *
 * A code taken here is counted as used whatever Keystone answered (201, 401, or no answer).
 */
import { TOTP_PERIOD_S, totpCode } from "../../lib/totp/secret.ts";
import { keystoneInstance, keystoneRelease } from "./keystone.ts";
import { registerSecrets } from "./secrets.ts";

const STEP_MS = TOTP_PERIOD_S * 1000;
/**
 * The previous step's code is handed out only while at least this much of the current step is
 * left: Keystone must still see the current step when it checks it (else it is two steps old).
 */
const PREVIOUS_MARGIN_MS = 5_000;
/** After the last usable code, wait this far into the next step before taking its code. */
const NEXT_STEP_SLACK_MS = 50;
/** How long a used code value is remembered: Keystone 30 refuses it for its window plus 30 s. */
const REMEMBER_STEPS = 4;

/** First Keystone release that refuses a code used before (2026.2: `totp_used` cache region). */
const FIRST_SPENDING_RELEASE = 30;

let spends: boolean | undefined;
/**
 * Whether the test Keystone (KEYSTONE_TOTP_TEST_INSTANCE, else "default") refuses a code used
 * before; true when its release cannot be read.
 */
export function spendsCodes(): boolean {
  if (spends === undefined) {
    try {
      spends = keystoneRelease(keystoneInstance()) >= FIRST_SPENDING_RELEASE;
    } catch {
      spends = true;
    }
  }
  return spends;
}

/** Used codes by secret: step -> code value. */
const used = new Map<string, Map<number, string>>();

function stepAt(ms: number): number {
  return Math.floor(ms / STEP_MS);
}

function usedOf(secret: string, now: number): Map<number, string> {
  let u = used.get(secret);
  if (!u) {
    u = new Map();
    used.set(secret, u);
  }
  for (const s of u.keys()) if (s < stepAt(now) - REMEMBER_STEPS) u.delete(s);
  return u;
}

/**
 * Whether the code of `step` is free: neither that step nor any recent step with the same digits
 * (two steps can share a code, one time in a million) was used.
 */
function free(secret: string, u: Map<number, string>, step: number): boolean {
  if (u.has(step)) return false;
  const code = totpCode(secret, step * STEP_MS);
  for (const c of u.values()) if (c === code) return false;
  return true;
}

function take(secret: string, u: Map<number, string>, step: number): string {
  const code = totpCode(secret, step * STEP_MS);
  u.set(step, code);
  return code;
}

/**
 * A code of `secret` that this process has not used yet, now marked as used: the current step's,
 * else the previous step's (while enough of the current step is left for Keystone to still
 * accept it), else the next step's once it has begun (waits up to 30 s; never a future code).
 */
export async function freshCode(secret: string): Promise<string> {
  registerSecrets(secret);
  for (;;) {
    const code = codeNow(secret);
    if (code !== undefined) return code;
    const now = Date.now();
    await new Promise((r) => setTimeout(r, (stepAt(now) + 1) * STEP_MS - now + NEXT_STEP_SLACK_MS));
  }
}

/** {@link freshCode} without waiting: undefined when both usable codes are used. */
export function codeNow(secret: string): string | undefined {
  registerSecrets(secret);
  const now = Date.now();
  const step = stepAt(now);
  if (!spendsCodes()) return totpCode(secret, step * STEP_MS);
  const u = usedOf(secret, now);
  if (free(secret, u, step)) return take(secret, u, step);
  const left = (step + 1) * STEP_MS - now;
  if (left >= PREVIOUS_MARGIN_MS && free(secret, u, step - 1)) return take(secret, u, step - 1);
  return undefined;
}

/**
 * A code for a background check (the posture watcher) that leaves the test its own (on releases
 * that spend codes; elsewhere the current step's, always): given only
 * while neither the current nor the previous step's code is used and at least 10 s of the step
 * are left; it is the previous step's, so the current one stays free for the test (and becomes
 * the "previous" of the next step).
 */
export function spareCode(secret: string): string | undefined {
  registerSecrets(secret);
  const now = Date.now();
  const step = stepAt(now);
  if (!spendsCodes()) return totpCode(secret, step * STEP_MS);
  const u = usedOf(secret, now);
  const left = (step + 1) * STEP_MS - now;
  if (left < 2 * PREVIOUS_MARGIN_MS || !free(secret, u, step) || !free(secret, u, step - 1)) return undefined;
  return take(secret, u, step - 1);
}

/** Marks a code of `secret` used that was sent to Keystone some other way (e.g. typed into a CLI). */
export function markUsed(secret: string, code: string, atMs: number = Date.now()): void {
  const u = usedOf(secret, atMs);
  const step = stepAt(atMs);
  // A code of neither step is refused by Keystone without being used: nothing to remember.
  for (const s of [step, step - 1]) if (totpCode(secret, s * STEP_MS) === code) u.set(s, code);
}
