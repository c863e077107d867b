/**
 * How the doctor's Keystone checks talk to Keystone: their settings, their check ids, the
 * "probe session" (the operator's token, with what the checks read from it) and the reading of
 * Keystone's answers for messages.
 *
 * The probe session is no token client of its own: it is the doctor's {@link KeystoneClient},
 * whose session issues the one operator token of the run (`authenticateOnce`) and sends the
 * probes (`send`). The checks need what the client's other calls do not give them: the token's
 * `issued_at` and `Date` (for the clock) and the project's name (for messages), from the token
 * answer; and raw answers (403 versus 400, auth receipts) from requests sent once, never
 * retried. The token stays in the session's private field and is never printed.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/
 */
import { type ErrorCode, KeystoneError } from "../../lib/errors.ts";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord, headerValue } from "../../lib/keystone/session.ts";
import type { Clock, ClockObservation } from "./clock.ts";

/** Timeout of each doctor request to Keystone, in ms: the doctor must answer in seconds. */
export const DOCTOR_REQUEST_TIMEOUT_MS = 10_000;
/** Attempts per request of the Keystone client the doctor uses (first try included). */
export const DOCTOR_MAX_ATTEMPTS = 2;
/** The User-Agent of the doctor's probes: a proxy in front of Keystone tells them apart by it. */
export const DOCTOR_USER_AGENT = "keystone-totp-doctor";

/** The headers every probe of the doctor adds to the session's. */
const DOCTOR_HEADERS: Readonly<Record<string, string>> = { "user-agent": DOCTOR_USER_AGENT };

/** Stable check ids of the Keystone checks. */
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

/** What the Keystone checks before the token need. */
export interface KeystoneCheckContext {
  /**
   * The doctor's client (TLS settings and timeout from the operator's settings); every request
   * of the checks goes through its session.
   */
  readonly client: KeystoneClient;
  /** The local clock, in ms since the epoch; tests shift it. */
  readonly now: Clock;
}

// ------------------------------------------------------------------ reading answers

/** Keystone's `error.message`, when the answer has one. */
export function keystoneMessage(res: HttpResponse): string | undefined {
  const m = asRecord(asRecord(res.body).error).message;
  return typeof m === "string" ? m : undefined;
}

/** `Keystone said: ...; request id ...` (empty when neither is known), for messages. */
export function saidParts(res: HttpResponse): string {
  const parts: string[] = [];
  const m = keystoneMessage(res);
  if (m) parts.push(`Keystone said: ${m}`);
  const id = headerValue(res, "x-openstack-request-id");
  if (id) parts.push(`request id ${id}`);
  return parts.join("; ");
}

/** {@link saidParts} in parentheses with a leading space, or nothing. */
export function said(res: HttpResponse): string {
  const s = saidParts(res);
  return s ? ` (${s})` : "";
}

/** The error code and advice for a request that got no HTTP answer. */
export function transportProblem(e: TransportError, url: string): { code: ErrorCode; message: string; fix: string } {
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
export function dateHeaderMs(res: HttpResponse): number | undefined {
  const raw = headerValue(res, "date");
  if (!raw) return undefined;
  const ms = Date.parse(raw);
  return Number.isNaN(ms) ? undefined : ms;
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

/** The operator's token as the checks use it: the client's session, and what the token said. */
export class ProbeSession {
  /** What the token said about the operator. */
  readonly info: ProbeTokenInfo;
  /** The doctor's client; its session holds the token. */
  readonly client: KeystoneClient;

  /** A probe session over `client`, whose token `info` describes (see {@link openProbeSession}). */
  constructor(client: KeystoneClient, info: ProbeTokenInfo) {
    this.client = client;
    this.info = info;
  }

  /** The identity v3 root the session talks to. */
  get authUrl(): string {
    return this.client.auth.authUrl;
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
   * Sends one request with the operator's token, once; `path` is relative to the v3 root.
   *
   * @returns Keystone's answer, whatever its status.
   * @throws {TransportError} when no HTTP answer arrived.
   */
  request(method: "GET" | "POST" | "PATCH" | "DELETE", path: string, json?: unknown): Promise<HttpResponse> {
    return this.client.send(method, path, { json, headers: DOCTOR_HEADERS });
  }

  /**
   * Sends one request WITHOUT the operator's token (a login of another user), once; `path` is
   * relative to the v3 root.
   *
   * @returns Keystone's answer, whatever its status.
   * @throws {TransportError} when no HTTP answer arrived.
   */
  send(
    method: "POST",
    path: string,
    json: unknown,
    headers: Readonly<Record<string, string>> = {},
  ): Promise<HttpResponse> {
    return this.client.send(method, path, { json, headers: { ...DOCTOR_HEADERS, ...headers }, withoutToken: true });
  }
}

/**
 * Sends an unauthenticated request with the doctor's User-Agent, once (`path` relative to the
 * v3 root, "" for the root itself), for the checks that need no token.
 *
 * @throws {TransportError} when no HTTP answer arrived.
 */
export function sendWithoutToken(
  client: KeystoneClient,
  method: "GET" | "POST",
  path: string,
  json?: unknown,
): Promise<HttpResponse> {
  return client.send(method, path, { json, headers: DOCTOR_HEADERS, withoutToken: true });
}

/**
 * Issues the run's project-scoped token with the operator's settings, in one request timed
 * with `ctx.now`; the client's session keeps it for every later request of the doctor.
 *
 * @throws {KeystoneError} `E_KEYSTONE_AUTH` when Keystone refuses the credentials, or a
 *   network, timeout or HTTP error. Messages never contain the password or a token.
 */
export async function openProbeSession(ctx: KeystoneCheckContext): Promise<ProbeSession> {
  const path = "/v3/auth/tokens";
  const auth = ctx.client.auth;
  const sentAtMs = ctx.now();
  let res: HttpResponse;
  let adopted: boolean;
  try {
    ({ response: res, adopted } = await ctx.client.authenticateOnce(DOCTOR_HEADERS));
  } catch (e) {
    if (!(e instanceof TransportError)) throw e;
    const p = transportProblem(e, auth.authUrl);
    throw new KeystoneError(p.code, { method: "POST", path }, `${p.message}. ${p.fix}`, { cause: e });
  }
  const receivedAtMs = ctx.now();
  const body = asRecord(asRecord(res.body).token);
  // Not adopted: no token in the answer, or one without an expiry the session could keep.
  if (res.status !== 201 || !adopted) {
    const msg = keystoneMessage(res);
    const requestId = headerValue(res, "x-openstack-request-id");
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
        `Keystone refused the operator's credentials (${auth.source}). Check the user name, password, ` +
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
  return new ProbeSession(ctx.client, info);
}
