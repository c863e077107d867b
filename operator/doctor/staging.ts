/**
 * `keystone.staging`: what enrollment does to every user (MFA rules staged, a TOTP credential,
 * a login with password + TOTP), done on a throwaway user the doctor creates for it and deletes
 * again; never on the operator, never on an existing user.
 */
import { randomBytes } from "node:crypto";
import { KeystoneError } from "../../lib/errors.ts";
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord, headerValue } from "../../lib/keystone/session.ts";
import { MARKER_ATTRIBUTE, NO_OPTIONS, postureMarker, stagedRules } from "../../lib/mfa/posture.ts";
import { generateSecret, totpCode } from "../../lib/totp/secret.ts";
import { isPasscodeRefusal, OPERATOR_MFA_FIX } from "./operator-mfa.ts";
import { KEYSTONE_CHECK_IDS, type ProbeSession, said, transportProblem } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** Prefix of the throwaway user the staging round trip creates and deletes. */
export const PROBE_USER_PREFIX = "keystone-totp-doctor-";

/** The auth receipt of a login that the user's MFA rules stopped half-way, if any. */
function receiptOf(res: HttpResponse): string | undefined {
  return headerValue(res, "openstack-auth-receipt");
}

/**
 * `keystone.staging`: what enrollment does to every user, done on a throwaway user the doctor
 * creates for it (never on the operator, never on an existing user), deleted at the end
 * whatever happened (Keystone deletes its credential with it):
 * 1. create user `keystone-totp-doctor-<random>` in the operator's domain, with a random
 *    password (never shown); 403: the account may not create users, the rest is not checked;
 * 2. write the tool's staged MFA rules and marker on it (as enrollment does);
 * 3. create a TOTP credential with a random secret (never shown);
 * 4. log in with the current code alone: the rules must refuse it with 401 and an auth
 *    receipt (the code was right, the rules asked for more);
 * 5. complete that login with the password and the receipt: 201 (password + TOTP works), so
 *    the code is used once only (Keystone 30 spends codes);
 * 6. delete the user.
 *
 * @param onCredential - test seam: called while the throwaway user holds its credential.
 */
export async function checkStaging(
  session: ProbeSession,
  onCredential?: (userId: string) => Promise<void>,
): Promise<CheckResult> {
  const name = `${PROBE_USER_PREFIX}${randomBytes(6).toString("hex")}`;
  const details: Record<string, unknown> = { probeUser: name };
  const made: { userId?: string } = {};
  // Whatever happens: the throwaway user goes (Keystone deletes its credential with it).
  const cleanUp = async (): Promise<void> => {
    if (made.userId === undefined) return;
    const del = await session.request("DELETE", `/users/${encodeURIComponent(made.userId)}`).catch(() => undefined);
    details.deleteUserStatus = del?.status ?? null;
    if (del?.status !== 204 && del?.status !== 404) details.leftoverUserId = made.userId;
  };
  let r: CheckResult;
  try {
    r = await stagingSteps(session, name, details, made, onCredential);
  } catch (e) {
    await cleanUp();
    throw e;
  }
  await cleanUp();
  return withLeftover(r);
}

/** The leftover throwaway user as a failure, when its delete failed (see {@link checkStaging}). */
export function withLeftover(r: CheckResult): CheckResult {
  const left = r.details?.leftoverUserId;
  if (typeof left !== "string") return r;
  return result(
    r.id,
    r.title,
    "failure",
    `${r.message}; the throwaway user ${String(r.details?.probeUser)} (${left}) could not be deleted (its password ` +
      "and TOTP secret were random and never shown, so it lets nobody log in)",
    { fix: `Delete it: openstack user delete ${left}`, code: "E_KEYSTONE_HTTP", details: r.details },
  );
}

async function stagingSteps(
  session: ProbeSession,
  name: string,
  details: Record<string, unknown>,
  made: { userId?: string },
  onCredential?: (userId: string) => Promise<void>,
): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.staging;
  const title = "MFA staging round trip";
  const password = randomBytes(24).toString("base64url");
  const notChecked =
    "not checked: that the account may write MFA rules on a user, and that the staged rules refuse a TOTP code " +
    "alone and admit password + TOTP (enrollment does both on every user)";
  try {
    const methods = await session.client.authMethods();
    const create = await session.request("POST", "/users", {
      user: { name, domain_id: session.info.userDomainId || "default", password, enabled: true },
    });
    details.createUserStatus = create.status;
    if (create.status === 403) {
      return result(
        id,
        title,
        "warning",
        `the account may not create users (403), so a throwaway user was not made: ${notChecked}`,
        {
          fix: "Enroll one test user first (a CSV of one row), and check that user's logins; or run the doctor as an account that may create users.",
          details,
        },
      );
    }
    const newId = asRecord(asRecord(create.body).user).id;
    if (create.status !== 201 || typeof newId !== "string") {
      return result(
        id,
        title,
        "warning",
        `creating a throwaway user answered ${create.status}${said(create)}: ${notChecked}`,
        {
          fix: "Check Keystone's logs for the request id; then run the doctor again.",
          details,
        },
      );
    }
    made.userId = newId;
    details.probeUserId = newId;
    const rules = stagedRules(methods);
    const patch = await session.request("PATCH", `/users/${encodeURIComponent(newId)}`, {
      user: {
        options: { multi_factor_auth_enabled: true, multi_factor_auth_rules: rules },
        [MARKER_ATTRIBUTE]: postureMarker(NO_OPTIONS),
      },
    });
    details.writeRulesStatus = patch.status;
    if (patch.status !== 200) {
      return isPasscodeRefusal(patch)
        ? result(
            id,
            title,
            "failure",
            `writing MFA rules on a throwaway user answered 403${said(patch)}: the operator's own account has MFA ` +
              "rules, and Keystone 2026.2 (30) asks it for a fresh TOTP code for every MFA change",
            { fix: OPERATOR_MFA_FIX, code: "E_KEYSTONE_MFA", details },
          )
        : result(id, title, "failure", `writing MFA rules on a throwaway user answered ${patch.status}${said(patch)}`, {
            fix:
              patch.status === 403
                ? "The account may not change users' options: give it the admin role, or run keystone-totp as an account that has it."
                : "Check Keystone's logs for the request id; then run the doctor again.",
            code: patch.status === 403 ? "E_KEYSTONE_FORBIDDEN" : "E_KEYSTONE_HTTP",
            details,
          });
    }
    const secret = generateSecret();
    await session.client.createTotpCredential(newId, secret);
    await onCredential?.(newId);
    const passcode = totpCode(secret, Date.now());
    const totpAlone = await session.send("POST", "/auth/tokens?nocatalog", {
      auth: { identity: { methods: ["totp"], totp: { user: { id: newId, passcode } } } },
    });
    details.totpAloneStatus = totpAlone.status;
    const receipt = receiptOf(totpAlone);
    if (totpAlone.status === 201) {
      return result(
        id,
        title,
        "failure",
        `a TOTP code alone logged the throwaway user in although the staged rules ${JSON.stringify(rules)} are on it: ` +
          "enrolled users could be logged in with 6 digits alone",
        {
          fix: "Check that [auth] methods lists password and totp, and Keystone's release (before 28.0.0, LP#2102096); do not enroll anyone until this passes.",
          code: "E_POSTURE",
          details,
        },
      );
    }
    if (totpAlone.status !== 401 || receipt === undefined) {
      return result(
        id,
        title,
        "warning",
        `the throwaway user's right TOTP code was refused without an auth receipt (${totpAlone.status})${said(totpAlone)}: ` +
          "Keystone did not accept the code at all (clock skew? see keystone.clock), so the staged rules were not tested",
        { fix: "Fix the clocks (keystone.clock) and run the doctor again.", details },
      );
    }
    const full = await session.send(
      "POST",
      "/auth/tokens?nocatalog",
      { auth: { identity: { methods: ["password"], password: { user: { id: newId, password } } } } },
      { "openstack-auth-receipt": receipt },
    );
    details.passwordWithReceiptStatus = full.status;
    if (full.status !== 201) {
      return result(
        id,
        title,
        "failure",
        `password + TOTP did not log the throwaway user in under the staged rules (${full.status})${said(full)}: ` +
          "enrolled users might not log in",
        { fix: "Check Keystone's logs for the request id and its [auth] methods.", code: "E_KEYSTONE_HTTP", details },
      );
    }
    return result(
      id,
      title,
      "ok",
      `on a throwaway user (${name}, deleted again): the tool's staged rules ${JSON.stringify(rules)} were written, ` +
        "a TOTP code alone was refused (401 with an auth receipt), and password + TOTP logged in (201)",
      { details },
    );
  } catch (e) {
    if (!(e instanceof TransportError || e instanceof KeystoneError)) throw e;
    const p = e instanceof TransportError ? transportProblem(e, session.authUrl) : undefined;
    return result(id, title, "failure", p ? p.message : `on a throwaway user: ${e.message}`, {
      fix: p?.fix ?? "See the message; then run the doctor again.",
      code: p?.code ?? (e as KeystoneError).code,
      details,
    });
  }
}
