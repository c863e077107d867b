/**
 * `keystone.totp-method`: whether Keystone accepts TOTP logins at all (`totp` in its `[auth]
 * methods`), asked with a TOTP login of the operator that is bound to be refused.
 */
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { KEYSTONE_CHECK_IDS, type ProbeSession, said, transportProblem } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** Keystone's message (`error.message`, 401) when a method is not in `[auth] methods`. */
export const UNSUPPORTED_METHOD_MESSAGE = "Attempted to authenticate with an unsupported method.";
/** The passcode sent to probe the `totp` method: any 6 digits do, it only has to be refused. */
export const PROBE_PASSCODE = "000000";

/**
 * Whether Keystone accepts the `totp` auth method, by attempting a TOTP login for the
 * operator's own user with {@link PROBE_PASSCODE}. Keystone answers 401 in both cases, but
 * with {@link UNSUPPORTED_METHOD_MESSAGE} (and `error.identity.methods`, the enabled ones)
 * when `totp` is not in `[auth] methods`, and with a generic "requires authentication" when
 * the code is merely wrong. A failed TOTP attempt does not count towards Keystone's password
 * lockout. Should the code happen to be right, the token issued is discarded.
 */
export async function checkTotpMethod(session: ProbeSession): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.totpMethod;
  const title = "TOTP method";
  let res: HttpResponse;
  try {
    res = await session.send("POST", "/auth/tokens", {
      auth: {
        identity: { methods: ["totp"], totp: { user: { id: session.info.userId, passcode: PROBE_PASSCODE } } },
      },
    });
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, session.authUrl);
    return result(id, title, "failure", p.message, { fix: p.fix, code: p.code });
  }
  return classifyTotpProbe(res);
}

/** Interprets the answer to the TOTP probe (see {@link checkTotpMethod}). */
export function classifyTotpProbe(res: HttpResponse): CheckResult {
  const id = KEYSTONE_CHECK_IDS.totpMethod;
  const title = "TOTP method";
  const error = asRecord(asRecord(res.body).error);
  const rawMethods = asRecord(error.identity).methods;
  const enabled = Array.isArray(rawMethods) ? rawMethods.map(String) : undefined;
  const message = typeof error.message === "string" ? error.message : "";
  const unsupported =
    res.status === 401 &&
    (message === UNSUPPORTED_METHOD_MESSAGE || (enabled !== undefined && !enabled.includes("totp")));
  if (unsupported) {
    const list = enabled ? enabled.join(", ") : "not listed";
    return result(
      id,
      title,
      "failure",
      `Keystone does not accept TOTP logins: the totp method is not enabled (Keystone said: "${message}"; ` +
        `enabled methods: ${list}); every enrolled user would be refused`,
      {
        fix:
          "Add totp to [auth] methods in keystone.conf on every Keystone node, e.g. " +
          `methods = ${[...(enabled ?? ["password", "token"]), "totp"].join(",")}, and restart Keystone.`,
        code: "E_KEYSTONE_HTTP",
        details: { enabledMethods: enabled ?? null, status: res.status },
      },
    );
  }
  if (res.status === 401 || res.status === 201) {
    return result(id, title, "ok", "Keystone accepts the totp method (a wrong code is refused as a wrong code)", {
      details: { status: res.status },
    });
  }
  return result(id, title, "failure", `a TOTP login attempt got ${res.status} instead of 401${said(res)}`, {
    fix: "Check Keystone's logs for the request id, and that [auth] methods includes totp.",
    code: "E_KEYSTONE_HTTP",
    details: { status: res.status },
  });
}
