/**
 * `keystone.token`: the operator can authenticate, with a project-scoped token, and should have
 * the `admin` role. The token issued here is the run's one operator token: every later check
 * uses it through the probe session it returns.
 */
import { KeystoneError } from "../../lib/errors.ts";
import { DEFAULT_DOMAIN } from "../../providers/credential/types.ts";
import { KEYSTONE_CHECK_IDS, type KeystoneCheckContext, openProbeSession, type ProbeSession } from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** The role that may manage other users' credentials under Keystone's default policy. */
export const ADMIN_ROLE = "admin";

/**
 * Authenticates as the operator: the token must be project-scoped, and should carry the
 * `admin` role (the credentials check decides whether the account may do the work).
 *
 * @returns the result, and the session for the checks after it (undefined on failure).
 */
export async function checkToken(
  ctx: KeystoneCheckContext,
): Promise<{ result: CheckResult; session: ProbeSession | undefined }> {
  const id = KEYSTONE_CHECK_IDS.token;
  const title = "operator token";
  let session: ProbeSession;
  try {
    session = await openProbeSession(ctx);
  } catch (e) {
    if (!(e instanceof KeystoneError)) throw e;
    const fix =
      e.code === "E_KEYSTONE_AUTH"
        ? "Fix the operator's credentials (OS_USERNAME, OS_PASSWORD, OS_USER_DOMAIN_NAME, OS_PROJECT_NAME, OS_PROJECT_DOMAIN_NAME, or the cloud in clouds.yaml)."
        : "See the message; then run the doctor again.";
    return {
      result: result(id, title, "failure", e.message, { fix, code: e.code, details: { status: e.status } }),
      session: undefined,
    };
  }
  const { info } = session;
  const details = {
    userId: info.userId,
    userName: info.userName,
    userDomain: info.userDomainName,
    projectId: info.projectId,
    projectName: info.projectName,
    projectDomain: info.projectDomainName,
    roles: info.roles,
    source: ctx.client.auth.source,
  };
  if (!info.projectId) {
    return {
      result: result(id, title, "failure", `the token of ${session.userLabel} is not scoped to a project`, {
        fix: "Set OS_PROJECT_NAME and OS_PROJECT_DOMAIN_NAME (or project_name in clouds.yaml): credential management needs a project-scoped token.",
        code: "E_CONFIG",
        details,
      }),
      session,
    };
  }
  const roles = info.roles.length > 0 ? info.roles.join(", ") : "none";
  const who = `user ${session.userLabel} on ${session.projectLabel}, roles: ${roles}`;
  if (!info.roles.includes(ADMIN_ROLE)) {
    return {
      result: result(id, title, "warning", `${who}: no '${ADMIN_ROLE}' role`, {
        fix:
          `Managing other users' credentials needs the admin role: openstack role add --user ${info.userName || info.userId} ` +
          `--user-domain ${info.userDomainName || DEFAULT_DOMAIN} --project ${info.projectName || info.projectId} ` +
          `--project-domain ${info.projectDomainName || DEFAULT_DOMAIN} ${ADMIN_ROLE}`,
        details,
      }),
      session,
    };
  }
  return { result: result(id, title, "ok", who, { details }), session };
}
