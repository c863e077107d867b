/**
 * The operator's own MFA rules: `keystone.operator-mfa` reads them (reads only: nothing is ever
 * written to the operator's user), and the credential and staging checks recognise Keystone 30's
 * refusal of a change for want of the operator's passcode with {@link isPasscodeRefusal}. An
 * operator with MFA rules works before Keystone 2026.2 (30); on 30 it cannot run in bulk
 * (docs/operator-account.md).
 */
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { effectiveRules, optionsOf } from "../../lib/mfa/posture.ts";
import { KEYSTONE_CHECK_IDS, keystoneMessage, type ProbeSession, said, transportProblem } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** The advice for an operator account with MFA rules, on Keystone 30. */
export const OPERATOR_MFA_FIX =
  "Run keystone-totp as another administrator account that has no MFA rules, or set [security_compliance] " +
  "require_mfa_for_sensitive_account_actions = false in keystone.conf; see docs/operator-account.md.";

/** Keystone 30's refusal of an MFA change by an account with MFA rules and no fresh passcode. */
export function isPasscodeRefusal(res: HttpResponse): boolean {
  return res.status === 403 && /MFA passcode|OpenStack-MFA-Passcode/i.test(keystoneMessage(res) ?? "");
}

/**
 * `keystone.operator-mfa`: whether the operator's own account has active MFA rules. Reads only.
 * Such an account works on releases before Keystone 2026.2 (30); on 30 (with
 * `require_mfa_for_sensitive_account_actions`, the default) every credential change and every
 * MFA option change it makes needs a fresh code of its own: a bulk run cannot do that.
 */
export async function checkOperatorMfa(session: ProbeSession): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.operatorMfa;
  const title = "operator's own MFA rules";
  let res: HttpResponse;
  try {
    res = await session.request("GET", `/users/${encodeURIComponent(session.info.userId)}`);
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, session.authUrl);
    return result(id, title, "failure", p.message, { fix: p.fix, code: p.code });
  }
  if (res.status !== 200) {
    return result(id, title, "warning", `the operator's own user could not be read (${res.status})${said(res)}`, {
      fix: "Check by hand that the account keystone-totp logs in with has no MFA rules (openstack user show).",
    });
  }
  const user = asRecord(asRecord(res.body).user);
  const rules = effectiveRules(optionsOf(asRecord(user.options)));
  const details = { rules };
  if (rules.length === 0) {
    return result(id, title, "ok", `the operator's own account (${session.userLabel}) has no MFA rules`, { details });
  }
  return result(
    id,
    title,
    "warning",
    `the operator's own account (${session.userLabel}) has MFA rules ${JSON.stringify(rules)}: on Keystone 2026.2 ` +
      "(30) and later (require_mfa_for_sensitive_account_actions, the default), every TOTP credential change and " +
      "every MFA rule change it makes then needs a fresh TOTP code of its own (OpenStack-MFA-Passcode), each code " +
      "once, so bulk runs need an operator account without rules; earlier releases do not ask",
    { fix: OPERATOR_MFA_FIX, details },
  );
}
