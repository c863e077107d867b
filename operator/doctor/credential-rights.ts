/**
 * `keystone.credentials`: whether the operator's account may list, create and delete other
 * users' TOTP credentials, and whether Keystone can store one, proven without writing to the
 * operator's user or to any existing user (see {@link checkCredentialAccess}).
 */
import { randomBytes } from "node:crypto";
import { KeystoneError } from "../../lib/errors.ts";
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { generateSecret } from "../../lib/totp/secret.ts";
import { DEFAULT_DOMAIN } from "../../providers/credential/types.ts";
import { isPasscodeRefusal, OPERATOR_MFA_FIX } from "./operator-mfa.ts";
import { KEYSTONE_CHECK_IDS, keystoneMessage, type ProbeSession, said, saidParts, transportProblem } from "./probe.ts";
import { ADMIN_ROLE } from "./token.ts";
import { type CheckResult, result } from "./types.ts";

/** A made-up user id that is not the operator's: the target of the permission probes. */
function probeUserId(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Whether the account may list, create and delete other users' credentials, and whether
 * Keystone can store one, changing nothing on any existing user (on every release).
 *
 * Keystone's default policy lets any user manage the credentials of their own user, and
 * silently filters a list down to the caller's own credentials, so a test on the operator's
 * own user proves nothing about permissions; and writing on the operator's own user can lock
 * it out of MFA administration on Keystone 30 (docs/operator-account.md). Instead:
 * 1. `GET /v3/credentials?user_id=<own>&type=totp` must answer 200;
 * 2. with `write` (the default): `POST /v3/credentials`, a valid TOTP credential (a fresh
 *    random secret, never shown) for a made-up user ID that no user has, deleted at once:
 *    201 proves the right to create, that Keystone can store a credential (key repository,
 *    database), and that the token is not a delegated one (application credentials and
 *    trusts get 403). Keystone does not check that the user exists (measured on 22: 201, and
 *    the delete 204). The credential belongs to nobody, so it lets nobody log in.
 *    Without `write` (`provision`'s no-op preflight): the same POST with an invalid blob (a
 *    number), which Keystone refuses: 403 means "may not create"; 400 proves nothing, since
 *    Keystone 27 and later validate the body before the policy;
 * 3. `DELETE /v3/credentials/<made-up id>`: 403 means "may not delete", 404 "may delete".
 *
 * @param onCredential - test seam: called while the probe credential exists (with its user ID).
 */
export async function checkCredentialAccess(
  session: ProbeSession,
  write = true,
  onCredential?: (userId: string) => Promise<void>,
): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.credentials;
  const title = "credential management";
  const own = session.info.userId;
  const target = probeUserId();
  const details: Record<string, unknown> = { probeUserId: target };
  const adminFix =
    `Grant the account the admin role on its project (openstack role add --user ${session.info.userName || own} ` +
    `--user-domain ${session.info.userDomainName || DEFAULT_DOMAIN} --project ${session.info.projectName || session.info.projectId} ` +
    `--project-domain ${session.info.projectDomainName || DEFAULT_DOMAIN} ${ADMIN_ROLE}), or run keystone-totp as an account that has it.`;
  const forbidden = (what: string, res: HttpResponse): CheckResult => {
    const keystoneSaid = [`${what} answered 403`, saidParts(res)].filter(Boolean).join("; ");
    if (isPasscodeRefusal(res)) {
      return result(
        id,
        title,
        "failure",
        `Keystone asks for a fresh TOTP code of the operator for every credential change (${keystoneSaid}): the ` +
          "operator's own account has MFA rules (Keystone 2026.2 (30), require_mfa_for_sensitive_account_actions), so " +
          "keystone-totp cannot enroll anyone with it",
        { fix: OPERATOR_MFA_FIX, code: "E_KEYSTONE_MFA", details: { ...details, status: 403 } },
      );
    }
    if (/delegat|application credential|trust/i.test(keystoneMessage(res) ?? "")) {
      return result(id, title, "failure", `the token may not manage credentials (${keystoneSaid})`, {
        fix: "Keystone refuses credential management through application credentials and trusts: authenticate with a password (OS_USERNAME and OS_PASSWORD).",
        code: "E_KEYSTONE_FORBIDDEN",
        details: { ...details, status: 403 },
      });
    }
    return result(
      id,
      title,
      "failure",
      `the account cannot manage credentials: needs the admin role on ${session.projectLabel} ` +
        `(${keystoneSaid}); Keystone would also hide other users' credentials from it`,
      { fix: adminFix, code: "E_KEYSTONE_FORBIDDEN", details: { ...details, status: 403 } },
    );
  };
  const unexpected = (what: string, res: HttpResponse): CheckResult =>
    result(id, title, "failure", `${what} answered ${res.status} unexpectedly${said(res)}`, {
      fix:
        res.status >= 500
          ? "Keystone could not store a credential: check its [credential] key_repository (keystone-manage credential_setup), its database and its logs."
          : "Check Keystone's logs for the request id; then run the doctor again.",
      code: res.status === 401 ? "E_KEYSTONE_AUTH" : "E_KEYSTONE_HTTP",
      details: { ...details, status: res.status },
    });

  let created = false;
  try {
    // 1. list
    const list = await session.request("GET", `/credentials?${new URLSearchParams({ user_id: own, type: "totp" })}`);
    if (list.status === 403) return forbidden("listing credentials", list);
    if (list.status !== 200) return unexpected("listing credentials", list);

    // 2. create
    if (write) {
      const create = await session.request("POST", "/credentials", {
        credential: { type: "totp", user_id: target, blob: generateSecret() },
      });
      details.createProbeStatus = create.status;
      if (create.status === 403) return forbidden("creating a credential for another user", create);
      if (create.status !== 201) return unexpected("creating a credential for another user", create);
      const made = asRecord(asRecord(create.body).credential).id;
      if (typeof made !== "string") return unexpected("creating a credential (no id in the answer)", create);
      created = true;
      // The delete runs whatever the test seam does; its error is thrown after it.
      const interrupted = await onCredential?.(target).then(
        () => undefined,
        (e: unknown) => ({ e }),
      );
      {
        const del = await session.request("DELETE", `/credentials/${encodeURIComponent(made)}`);
        details.deleteCreatedStatus = del.status;
        if (interrupted) throw interrupted.e;
        if (del.status !== 204 && del.status !== 404) {
          details.leftoverCredentialId = made;
          return result(
            id,
            title,
            "failure",
            `the probe credential ${made} (for the made-up user ID ${target}, which no user has: it lets nobody ` +
              `log in) could not be deleted: DELETE answered ${del.status}${said(del)}`,
            {
              fix: `Delete it: openstack credential delete ${made}`,
              code: del.status === 403 ? "E_KEYSTONE_FORBIDDEN" : "E_KEYSTONE_HTTP",
              details,
            },
          );
        }
      }
    } else {
      const create = await session.request("POST", "/credentials", {
        credential: { type: "totp", user_id: target, blob: 0 },
      });
      details.createProbeStatus = create.status;
      if (create.status === 403) return forbidden("creating a credential for another user", create);
      if (create.status === 201) {
        // Not seen from any Keystone; should one ever store it, it goes at once.
        const made = asRecord(asRecord(create.body).credential).id;
        if (typeof made === "string") await session.request("DELETE", `/credentials/${encodeURIComponent(made)}`);
      } else if (create.status !== 400) {
        return unexpected("creating a credential for another user", create);
      }
    }

    // 3. delete a credential that does not exist
    const del = await session.request("DELETE", `/credentials/${probeUserId()}`);
    details.deleteProbeStatus = del.status;
    if (del.status === 403) return forbidden("deleting another user's credential", del);
    if (del.status !== 404 && del.status !== 204) return unexpected("deleting a credential", del);
  } catch (e) {
    if (!(e instanceof TransportError || e instanceof KeystoneError)) throw e;
    const p = e instanceof TransportError ? transportProblem(e, session.authUrl) : undefined;
    return result(id, title, "failure", p ? p.message : e.message, {
      fix: p?.fix ?? "See the message; then run the doctor again.",
      code: p?.code ?? (e as KeystoneError).code,
      details,
    });
  }
  if (created) {
    return result(
      id,
      title,
      "ok",
      `the account may list, create and delete other users' credentials (${session.projectLabel}); a TOTP ` +
        "credential was created for a made-up user ID (no user has it) and deleted at once: Keystone stores credentials",
      { details },
    );
  }
  return result(
    id,
    title,
    "ok",
    `the account may list and delete other users' credentials (${session.projectLabel}); the right to create ` +
      "was not proven (nothing written: Keystone 27 and later check the body before the policy; npm run doctor proves it)",
    { details },
  );
}
