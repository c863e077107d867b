/**
 * Preflight checks of Keystone: reachable, TLS, the operator's token, whether that account
 * has MFA rules of its own, whether it may manage other users' credentials, whether the tool's
 * staged rules work (on a throwaway user), whether the `totp` auth method is enabled, and clock
 * skew. Each check returns a {@link CheckResult}; none leaves anything behind in Keystone, and
 * none writes to the operator's own user or to any existing user (on Keystone 30, MFA rules on
 * the operator would lock it out of MFA administration: docs/operator-account.md).
 *
 * The checks issue one token of their own (a "probe session", with the same settings the
 * client uses) because they need what the client does not expose: the token's `issued_at`
 * for the clock, the project's name for messages, and raw answers (403 versus 400) for the
 * permission probes. The token is kept in a private field and never printed.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/
 */
import { randomBytes } from "node:crypto";
import tls from "node:tls";
import { type ErrorCode, KeystoneError } from "../../lib/errors.ts";
import type { KeystoneAuth } from "../../lib/keystone/auth.ts";
import { type KeystoneClient, tokenRequestBody } from "../../lib/keystone/client.ts";
import { type HttpResponse, type Transport, TransportError } from "../../lib/keystone/http.ts";
import { isLoopbackHost } from "../../lib/mail/config.ts";
import {
  effectiveRules,
  MARKER_ATTRIBUTE,
  NO_OPTIONS,
  optionsOf,
  postureMarker,
  stagedRules,
} from "../../lib/mfa/posture.ts";
import { generateSecret, totpCode } from "../../lib/totp/secret.ts";
import { DAY_MS } from "../../lib/util/clock.ts";
import { DEFAULT_DOMAIN } from "../../providers/credential/types.ts";
import {
  assessSkew,
  type Clock,
  type ClockObservation,
  describeSkew,
  estimateSkew,
  formatSeconds,
  SKEW_UNCERTAINTY_NOTE_MS,
  type SkewEstimate,
  skewConsequence,
} from "./clock.ts";
import { type CheckResult, result } from "./types.ts";

/** Timeout of each doctor request to Keystone, in ms: the doctor must answer in seconds. */
export const DOCTOR_REQUEST_TIMEOUT_MS = 10_000;
/** Attempts per request of the Keystone client the doctor uses (first try included). */
export const DOCTOR_MAX_ATTEMPTS = 2;
/** A TLS certificate expiring within this many days is a warning. */
export const CERT_EXPIRY_WARNING_DAYS = 14;
/** Milliseconds in a day. */
/** How long to wait for a TLS handshake when reading the certificate, in ms. */
const TLS_INSPECT_TIMEOUT_MS = 5_000;

/** Keystone's message (`error.message`, 401) when a method is not in `[auth] methods`. */
export const UNSUPPORTED_METHOD_MESSAGE = "Attempted to authenticate with an unsupported method.";
/** The passcode sent to probe the `totp` method: any 6 digits do, it only has to be refused. */
export const PROBE_PASSCODE = "000000";
/** The role that may manage other users' credentials under Keystone's default policy. */
export const ADMIN_ROLE = "admin";

/** Stable check ids of this module. */
export const KEYSTONE_CHECK_IDS = {
  reachable: "keystone.reachable",
  tls: "keystone.tls",
  token: "keystone.token",
  credentials: "keystone.credentials",
  totpMethod: "keystone.totp-method",
  clock: "keystone.clock",
  operatorMfa: "keystone.operator-mfa",
  staging: "keystone.staging",
} as const;

/** What every Keystone check needs. */
export interface KeystoneCheckContext {
  readonly auth: KeystoneAuth;
  /** The transport to Keystone (TLS settings from `auth`). */
  readonly transport: Transport;
  /** The local clock, in ms since the epoch; tests shift it. */
  readonly now: Clock;
}

// ------------------------------------------------------------------ helpers

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function keystoneMessage(res: HttpResponse): string | undefined {
  const m = asRecord(asRecord(res.body).error).message;
  return typeof m === "string" ? m : undefined;
}

/** `Keystone said: ...; request id ...` (empty when neither is known), for messages. */
function saidParts(res: HttpResponse): string {
  const parts: string[] = [];
  const m = keystoneMessage(res);
  if (m) parts.push(`Keystone said: ${m}`);
  const id = header(res, "x-openstack-request-id");
  if (id) parts.push(`request id ${id}`);
  return parts.join("; ");
}

/** {@link saidParts} in parentheses with a leading space, or nothing. */
function said(res: HttpResponse): string {
  const s = saidParts(res);
  return s ? ` (${s})` : "";
}

/** The error code and advice for a request that got no HTTP answer. */
function transportProblem(e: TransportError, url: string): { code: ErrorCode; message: string; fix: string } {
  switch (e.failure) {
    case "refused":
      return {
        code: "E_KEYSTONE_NETWORK",
        message: `cannot connect to Keystone at ${url} (${e.errno ?? "refused"})`,
        fix: "Check OS_AUTH_URL (or auth_url in clouds.yaml) and that Keystone is running and reachable from here.",
      };
    case "timeout":
      return {
        code: "E_KEYSTONE_TIMEOUT",
        message: `Keystone at ${url} did not answer within ${DOCTOR_REQUEST_TIMEOUT_MS / 1000} s`,
        fix: "Check the network path (firewall, proxy) and Keystone's load; then run the doctor again.",
      };
    case "tls":
      return {
        code: "E_KEYSTONE_NETWORK",
        message: `TLS verification of ${url} failed (${e.message})`,
        fix: "Give the CA bundle that signed Keystone's certificate with OS_CACERT (or cacert in clouds.yaml); check that the host name in the URL matches the certificate.",
      };
    default:
      return {
        code: "E_KEYSTONE_NETWORK",
        message: `the request to Keystone at ${url} failed (${e.message})`,
        fix: "Check the host name in OS_AUTH_URL and the network; then run the doctor again.",
      };
  }
}

/** Parses an HTTP `Date` header (whole seconds); undefined when absent or invalid. */
function dateHeaderMs(res: HttpResponse): number | undefined {
  const raw = header(res, "date");
  if (!raw) return undefined;
  const ms = Date.parse(raw);
  return Number.isNaN(ms) ? undefined : ms;
}

// ------------------------------------------------------------------ reachable and TLS

/** What {@link checkReachable} learned, for the checks after it. */
export interface ReachableOutcome {
  readonly result: CheckResult;
  /** True when Keystone answered as an identity v3 endpoint. */
  readonly reachable: boolean;
  /** The transport failure, when there was no answer (the TLS check reports TLS ones). */
  readonly transportFailure: TransportError | undefined;
  /** Clock observation from a `Date` header, when the answer had one. */
  readonly dateObservation: ClockObservation | undefined;
}

/**
 * `GET /v3`: Keystone answers, and is an identity v3 endpoint (`version.id`, `version.status`).
 */
export async function checkReachable(ctx: KeystoneCheckContext): Promise<ReachableOutcome> {
  const id = KEYSTONE_CHECK_IDS.reachable;
  const title = "Keystone reachable";
  const url = ctx.auth.authUrl;
  const started = Date.now();
  const sentAtMs = ctx.now();
  let res: HttpResponse;
  try {
    res = await ctx.transport.send({ method: "GET", url, headers: { "user-agent": "keystone-totp-doctor" } });
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, url);
    // A TLS failure is explained by the TLS check, right after this one.
    const message =
      e.failure === "tls" ? `${url} answered, but not over a verified TLS connection (see keystone.tls)` : p.message;
    return {
      result: result(id, title, "failure", message, {
        fix: p.fix,
        code: p.code,
        details: { url, failure: e.failure },
      }),
      reachable: false,
      transportFailure: e,
      dateObservation: undefined,
    };
  }
  const receivedAtMs = ctx.now();
  const elapsedMs = Date.now() - started;
  const serverMs = dateHeaderMs(res);
  const dateObservation = serverMs === undefined ? undefined : { sentAtMs, receivedAtMs, serverMs };
  const version = asRecord(asRecord(res.body).version);
  const versionId = typeof version.id === "string" ? version.id : undefined;
  const versionStatus = typeof version.status === "string" ? version.status : undefined;
  if (res.status !== 200 || !versionId?.startsWith("v3")) {
    return {
      result: result(
        id,
        title,
        "failure",
        `${url} answered ${res.status} without an identity v3 version document${said(res)}`,
        {
          fix: "OS_AUTH_URL must be Keystone's public identity endpoint, e.g. https://keystone.example.com:5000/v3.",
          code: "E_KEYSTONE_HTTP",
          details: { url, status: res.status },
        },
      ),
      reachable: false,
      transportFailure: undefined,
      dateObservation,
    };
  }
  const details = { url, version: versionId, versionStatus, elapsedMs };
  const summary = `${url} answers: identity ${versionId} (${versionStatus ?? "status unknown"}), in ${elapsedMs} ms`;
  const deprecated = versionStatus !== undefined && !/^(stable|current|supported)$/i.test(versionStatus);
  return {
    result: deprecated
      ? result(id, title, "warning", `${summary}; that version is marked '${versionStatus}'`, {
          fix: "Plan the Keystone upgrade; keystone-totp needs identity v3 with the totp method.",
          details,
        })
      : result(id, title, "ok", summary, { details }),
    reachable: true,
    transportFailure: undefined,
    dateObservation,
  };
}

/** The peer certificate's subject and expiry, read over a fresh TLS connection. */
interface CertificateFacts {
  readonly subject: string;
  readonly validToMs: number;
}

function inspectCertificate(auth: KeystoneAuth): Promise<CertificateFacts | undefined> {
  const url = new URL(auth.authUrl);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 443);
  return new Promise((resolvePromise) => {
    const socket = tls.connect({
      host,
      port,
      ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
      rejectUnauthorized: !auth.insecure,
      ...(auth.caPem ? { ca: [...tls.rootCertificates, auth.caPem] } : {}),
    });
    const done = (facts: CertificateFacts | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolvePromise(facts);
    };
    const timer = setTimeout(() => done(undefined), TLS_INSPECT_TIMEOUT_MS);
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate();
      const validToMs = Date.parse(cert.valid_to ?? "");
      const cn = cert.subject?.CN;
      done(
        Number.isNaN(validToMs)
          ? undefined
          : { subject: Array.isArray(cn) ? cn.join(", ") : (cn ?? "(no CN)"), validToMs },
      );
    });
    socket.once("error", () => done(undefined));
  });
}

/**
 * TLS: the certificate is verified (and not close to expiry), or plain HTTP stays on loopback.
 *
 * @param reach - the outcome of {@link checkReachable}, whose TLS failure this reports.
 */
export async function checkTls(ctx: KeystoneCheckContext, reach: ReachableOutcome): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.tls;
  const title = "TLS";
  const url = new URL(ctx.auth.authUrl);
  if (url.protocol === "http:") {
    if (isLoopbackHost(url.hostname)) {
      return result(id, title, "ok", `plain HTTP to ${url.host}, a loopback address: nothing leaves this machine`);
    }
    return result(
      id,
      title,
      "warning",
      `plain HTTP to ${url.host}: the operator's password and every TOTP secret cross the network unencrypted`,
      { fix: "Use Keystone's https:// endpoint in OS_AUTH_URL." },
    );
  }
  if (reach.transportFailure?.failure === "tls") {
    const p = transportProblem(reach.transportFailure, ctx.auth.authUrl);
    return result(id, title, "failure", p.message, { fix: p.fix, code: p.code });
  }
  if (!reach.reachable) return result(id, title, "skipped", "Keystone did not answer");
  if (ctx.auth.insecure) {
    return result(
      id,
      title,
      "warning",
      `the certificate of ${url.host} is not verified (OS_INSECURE or verify: false)`,
      {
        fix: "Give Keystone's CA with OS_CACERT instead of turning verification off: anyone on the path could read the secrets.",
      },
    );
  }
  const facts = await inspectCertificate(ctx.auth);
  if (!facts) return result(id, title, "ok", `the certificate of ${url.host} is verified`);
  const daysLeft = Math.floor((facts.validToMs - Date.now()) / DAY_MS);
  const until = new Date(facts.validToMs).toISOString().slice(0, 10);
  const details = { subject: facts.subject, validTo: new Date(facts.validToMs).toISOString(), daysLeft };
  if (daysLeft < CERT_EXPIRY_WARNING_DAYS) {
    return result(
      id,
      title,
      "warning",
      `the certificate of ${url.host} (${facts.subject}) is verified but expires on ${until}, in ${Math.max(0, daysLeft)} day(s)`,
      {
        fix: "Renew Keystone's TLS certificate before it expires: every login and enrollment fails after that.",
        details,
      },
    );
  }
  return result(
    id,
    title,
    "ok",
    `the certificate of ${url.host} (${facts.subject}) is verified, valid until ${until}`,
    {
      details,
    },
  );
}

// ------------------------------------------------------------------ the probe session

/** What the probe token says about the operator, and the clock readings taken with it. */
export interface ProbeTokenInfo {
  readonly userId: string;
  readonly userName: string;
  readonly userDomainId: string;
  readonly userDomainName: string;
  readonly projectId: string;
  readonly projectName: string;
  readonly projectDomainName: string;
  readonly roles: readonly string[];
  /** Clock observation from the token's `issued_at`, when it had one. */
  readonly issuedAt: ClockObservation | undefined;
  /** Clock observation from the answer's `Date` header, when it had one. */
  readonly dateHeader: ClockObservation | undefined;
}

/** An operator token used by the checks; the token itself stays in a private field. */
export class ProbeSession {
  readonly info: ProbeTokenInfo;
  readonly #token: string;
  readonly #ctx: KeystoneCheckContext;

  constructor(ctx: KeystoneCheckContext, token: string, info: ProbeTokenInfo) {
    this.#ctx = ctx;
    this.#token = token;
    this.info = info;
  }

  /** The identity v3 root the session talks to. */
  get authUrl(): string {
    return this.#ctx.auth.authUrl;
  }

  /** `project NAME in domain D`, for messages. */
  get projectLabel(): string {
    return `project ${this.info.projectName || this.info.projectId} in domain ${this.info.projectDomainName || "?"}`;
  }

  /** `NAME in domain D`, for messages. */
  get userLabel(): string {
    return `${this.info.userName || this.info.userId} in domain ${this.info.userDomainName || "?"}`;
  }

  /**
   * Sends one request with the probe token; `path` is relative to the v3 root.
   *
   * @throws {TransportError} when no HTTP answer arrived.
   */
  request(method: "GET" | "POST" | "PATCH" | "DELETE", path: string, json?: unknown): Promise<HttpResponse> {
    return this.#ctx.transport.send({
      method,
      url: `${this.#ctx.auth.authUrl}${path}`,
      headers: { "user-agent": "keystone-totp-doctor", "x-auth-token": this.#token },
      ...(json === undefined ? {} : { json }),
    });
  }

  /**
   * Sends one request WITHOUT the probe token (a login of another user); `path` is relative to
   * the v3 root.
   *
   * @throws {TransportError} when no HTTP answer arrived.
   */
  send(
    method: "POST",
    path: string,
    json: unknown,
    headers: Readonly<Record<string, string>> = {},
  ): Promise<HttpResponse> {
    return this.#ctx.transport.send({
      method,
      url: `${this.#ctx.auth.authUrl}${path}`,
      headers: { "user-agent": "keystone-totp-doctor", ...headers },
      json,
    });
  }
}

/**
 * Issues a project-scoped token with the operator's settings, timing it with `ctx.now`.
 *
 * @throws {KeystoneError} `E_KEYSTONE_AUTH` when Keystone refuses the credentials, or a
 *   network, timeout or HTTP error. Messages never contain the password or a token.
 */
export async function openProbeSession(ctx: KeystoneCheckContext): Promise<ProbeSession> {
  const path = "/v3/auth/tokens";
  const sentAtMs = ctx.now();
  let res: HttpResponse;
  try {
    res = await ctx.transport.send({
      method: "POST",
      url: `${ctx.auth.authUrl}/auth/tokens?nocatalog`,
      headers: { "user-agent": "keystone-totp-doctor" },
      json: tokenRequestBody(ctx.auth),
    });
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, ctx.auth.authUrl);
    throw new KeystoneError(p.code, { method: "POST", path }, `${p.message}. ${p.fix}`, { cause: e });
  }
  const receivedAtMs = ctx.now();
  const token = header(res, "x-subject-token");
  const body = asRecord(asRecord(res.body).token);
  if (res.status !== 201 || !token) {
    const msg = keystoneMessage(res);
    const requestId = header(res, "x-openstack-request-id");
    const details = {
      method: "POST",
      path,
      status: res.status,
      ...(msg ? { keystoneMessage: msg } : {}),
      ...(requestId ? { requestId } : {}),
    };
    if (res.status === 401) {
      throw new KeystoneError(
        "E_KEYSTONE_AUTH",
        details,
        `Keystone refused the operator's credentials (${ctx.auth.source}). Check the user name, password, ` +
          "user domain, project and project domain (OS_* variables or clouds.yaml).",
      );
    }
    throw new KeystoneError("E_KEYSTONE_HTTP", details, "Keystone did not issue a token; check its logs.");
  }
  const user = asRecord(body.user);
  const project = asRecord(body.project);
  const str = (v: unknown): string => (typeof v === "string" ? v : "");
  const issuedMs = Date.parse(str(body.issued_at));
  const dateMs = dateHeaderMs(res);
  const info: ProbeTokenInfo = {
    userId: str(user.id),
    userName: str(user.name),
    userDomainId: str(asRecord(user.domain).id),
    userDomainName: str(asRecord(user.domain).name),
    projectId: str(project.id),
    projectName: str(project.name),
    projectDomainName: str(asRecord(project.domain).name),
    roles: Array.isArray(body.roles) ? body.roles.map((r) => str(asRecord(r).name)).filter(Boolean) : [],
    issuedAt: Number.isNaN(issuedMs) ? undefined : { sentAtMs, receivedAtMs, serverMs: issuedMs },
    dateHeader: dateMs === undefined ? undefined : { sentAtMs, receivedAtMs, serverMs: dateMs },
  };
  return new ProbeSession(ctx, token, info);
}

// ------------------------------------------------------------------ token, scope and roles

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
    source: ctx.auth.source,
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

// ------------------------------------------------------------------ credentials

/** A made-up user id that is not the operator's: the target of the permission probes. */
function probeUserId(): string {
  return randomBytes(16).toString("hex");
}

/** Keystone 30's refusal of an MFA change by an account with MFA rules and no fresh passcode. */
export function isPasscodeRefusal(res: HttpResponse): boolean {
  return res.status === 403 && /MFA passcode|OpenStack-MFA-Passcode/i.test(keystoneMessage(res) ?? "");
}

/** The advice for an operator account with MFA rules, on Keystone 30. */
export const OPERATOR_MFA_FIX =
  "Run keystone-totp as another administrator account that has no MFA rules, or set [security_compliance] " +
  "require_mfa_for_sensitive_account_actions = false in keystone.conf; see docs/operator-account.md.";

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

// ------------------------------------------------------------------ the operator's own MFA rules

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

// ------------------------------------------------------------------ staging round trip

/** Prefix of the throwaway user the staging round trip creates and deletes. */
export const PROBE_USER_PREFIX = "keystone-totp-doctor-";

function receiptOf(res: HttpResponse): string | undefined {
  return header(res, "openstack-auth-receipt");
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
  client: KeystoneClient,
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
    r = await stagingSteps(session, client, name, details, made, onCredential);
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
  client: KeystoneClient,
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
    const methods = await client.authMethods();
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
    await client.createTotpCredential(newId, secret);
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

// ------------------------------------------------------------------ totp method

/**
 * Whether Keystone accepts the `totp` auth method, by attempting a TOTP login for the
 * operator's own user with {@link PROBE_PASSCODE}. Keystone answers 401 in both cases, but
 * with {@link UNSUPPORTED_METHOD_MESSAGE} (and `error.identity.methods`, the enabled ones)
 * when `totp` is not in `[auth] methods`, and with a generic "requires authentication" when
 * the code is merely wrong. A failed TOTP attempt does not count towards Keystone's password
 * lockout. Should the code happen to be right, the token issued is discarded.
 */
export async function checkTotpMethod(ctx: KeystoneCheckContext, session: ProbeSession): Promise<CheckResult> {
  const id = KEYSTONE_CHECK_IDS.totpMethod;
  const title = "TOTP method";
  let res: HttpResponse;
  try {
    res = await ctx.transport.send({
      method: "POST",
      url: `${ctx.auth.authUrl}/auth/tokens`,
      headers: { "user-agent": "keystone-totp-doctor" },
      json: {
        auth: {
          identity: { methods: ["totp"], totp: { user: { id: session.info.userId, passcode: PROBE_PASSCODE } } },
        },
      },
    });
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, ctx.auth.authUrl);
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

// ------------------------------------------------------------------ clock

/**
 * Clock skew between this machine and Keystone, from the probe token's `issued_at` (Keystone's
 * own clock, the one that checks TOTP codes), and from an HTTP `Date` header when a proxy in
 * front of Keystone adds one (Keystone under uWSGI sends none). The verdict uses `issued_at`
 * when present; see `clock.ts` for the thresholds and why.
 *
 * @param dateObservation - a `Date` header reading from an earlier request, if any.
 */
export function checkClock(info: ProbeTokenInfo, dateObservation?: ClockObservation): CheckResult {
  const id = KEYSTONE_CHECK_IDS.clock;
  const title = "clock skew";
  const dateObs = info.dateHeader ?? dateObservation;
  const fromToken = info.issuedAt ? estimateSkew(info.issuedAt) : undefined;
  const fromDate = dateObs ? estimateSkew(dateObs) : undefined;
  const used: SkewEstimate | undefined = fromToken ?? fromDate;
  if (!used) {
    return result(id, title, "warning", "cannot measure: the token had no issued_at and no answer had a Date header", {
      fix: "Check by hand that Keystone's hosts keep time with NTP (chronyc tracking or timedatectl).",
    });
  }
  const source = fromToken ? "a fresh token's issued_at" : "the HTTP Date header";
  const details = {
    skewMs: used.skewMs,
    uncertaintyMs: used.uncertaintyMs,
    source: fromToken ? "issued_at" : "date-header",
    ...(fromToken && fromDate ? { dateHeaderSkewMs: fromDate.skewMs } : {}),
  };
  const status = assessSkew(used.skewMs);
  const imprecise =
    used.uncertaintyMs > SKEW_UNCERTAINTY_NOTE_MS
      ? `; slow answer, so only accurate to ${formatSeconds(used.uncertaintyMs)}`
      : "";
  const proxy =
    fromToken &&
    fromDate &&
    Math.abs(fromDate.skewMs - fromToken.skewMs) > 2 * (fromDate.uncertaintyMs + fromToken.uncertaintyMs)
      ? `; by the HTTP Date header (added by a proxy) ${describeSkew(fromDate.skewMs, "the proxy's clock")}`
      : "";
  const message =
    `${describeSkew(used.skewMs, undefined, used.uncertaintyMs)} (${used.skewMs >= 0 ? "+" : "-"}${formatSeconds(used.skewMs)} ` +
    `± ${formatSeconds(used.uncertaintyMs)}, from ${source})${imprecise}${proxy}: ${skewConsequence(used.skewMs)}`;
  if (status === "ok") return result(id, title, "ok", message, { details });
  const fix =
    "Synchronise the clocks with NTP (chrony or systemd-timesyncd) on every Keystone host, and on this machine " +
    "(the comparison trusts this machine's clock, as phones trust the network's).";
  return result(id, title, status, message, {
    fix: status === "failure" ? `${fix} Until then TOTP logins fail.` : fix,
    ...(status === "failure" ? { code: "E_KEYSTONE_HTTP" as const } : {}),
    details,
  });
}
