/**
 * The request plumbing of the Keystone v3 client: options, tokens, retries, the in-flight
 * limit, lists and error mapping. The resources live beside it (credentials.ts, users.ts) and
 * client.ts puts them together as `KeystoneClient`.
 *
 * - One project-scoped token per session, renewed {@link TOKEN_RENEW_MARGIN_MS} (or a quarter
 *   of its lifetime, when shorter) before it expires and once on a 401. `KeystoneClient.shared`
 *   gives one client per process and set of credentials, so that every resource of a
 *   `pulumi up` shares one token.
 * - GET, PATCH and DELETE are retried on 429, 502, 503, 504, connection resets, refusals and
 *   timeouts, with exponential backoff, full jitter and Retry-After. POST is not (see
 *   credentials.ts for how a create is made safe to repeat).
 * - Errors name the method, path, status, Keystone's message and request id; never a token,
 *   password or blob (they are redacted even from Keystone's own messages).
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/
 */
import { type ErrorCode, KeystoneError } from "../errors.ts";
import type { KeystoneAuth } from "./auth.ts";
import { createTransport, type HttpResponse, type Transport, TransportError } from "./http.ts";

/** Attempts per idempotent request (first try included). */
export const MAX_ATTEMPTS = 6;
/** First backoff delay in ms; doubled per attempt, with full jitter. */
export const BACKOFF_BASE_MS = 250;
/** Longest single backoff delay in ms. */
export const BACKOFF_MAX_MS = 8_000;
/** Longest Retry-After honoured, in ms; longer asks are capped. */
export const RETRY_AFTER_MAX_MS = 60_000;
/**
 * A token is renewed when it has less than this left, in ms, or less than a quarter of its
 * lifetime when that is shorter: a Keystone with 2-minute tokens must not get a new token for
 * every request.
 */
export const TOKEN_RENEW_MARGIN_MS = 5 * 60_000;
/** Requests in flight per client; Keystone on 2 cores peaks at 4-8 concurrent writes. */
export const MAX_IN_FLIGHT = 8;
/**
 * Most pages followed through `links.next` for one list (Keystone 27.0+ paging), so that a
 * Keystone whose next link never ends cannot keep a run busy for ever: at Keystone's smallest
 * sensible page this is far more entries than any fleet has.
 */
export const MAX_LIST_PAGES = 10_000;

/** Statuses worth retrying a request on: busy or unavailable, Keystone or a proxy in front. */
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/** A method name no Keystone has: asking for it makes Keystone list the ones it has. */
const METHOD_PROBE = "keystone-totp-probe";

/** The client's User-Agent: a proxy in front of Keystone can count its requests by it. */
const USER_AGENT = "keystone-totp";

/** Counters of requests sent, for benchmarks and tests. */
export interface ClientStats {
  requests: number;
  byMethod: Record<string, number>;
  tokensIssued: number;
  retries: number;
}

/** Seams and tuning; every field optional, normalised once in the constructor. */
export interface KeystoneClientOptions {
  /** HTTP transport; default one with keep-alive agents built from the auth's TLS settings. */
  readonly transport?: Transport;
  /** Sleep used between retries, in ms; tests pass a fake. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Clock in ms since the epoch; tests pass a fake. */
  readonly now?: () => number;
  /** Random number in [0,1) for jitter. */
  readonly random?: () => number;
  /** Attempts per retryable request; default {@link MAX_ATTEMPTS}. */
  readonly maxAttempts?: number;
  /** Requests in flight; default {@link MAX_IN_FLIGHT}. */
  readonly maxInFlight?: number;
  /** Longest wait between two attempts, in ms; default {@link BACKOFF_MAX_MS}. */
  readonly backoffMaxMs?: number;
  /** Per-request timeout, in ms; default REQUEST_TIMEOUT_MS (30 s). Ignored with `transport`. */
  readonly timeoutMs?: number;
}

/**
 * Tuning from the environment, for operators on slow or flaky links and for tests that must
 * bound their waiting: `KEYSTONE_TOTP_MAX_ATTEMPTS` (1..20), `KEYSTONE_TOTP_BACKOFF_MAX_MS`
 * (10..600000) and `KEYSTONE_TOTP_REQUEST_TIMEOUT_MS` (100..600000). The provider processes
 * inherit them from the run. Out-of-range or non-numeric values are ignored.
 */
export function clientOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): KeystoneClientOptions {
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = env[name];
    if (v === undefined || !/^[0-9]{1,7}$/.test(v)) return undefined;
    const n = Number(v);
    return n >= min && n <= max ? n : undefined;
  };
  const o: { maxAttempts?: number; backoffMaxMs?: number; timeoutMs?: number } = {};
  const attempts = int("KEYSTONE_TOTP_MAX_ATTEMPTS", 1, 20);
  const backoff = int("KEYSTONE_TOTP_BACKOFF_MAX_MS", 10, 600_000);
  const timeout = int("KEYSTONE_TOTP_REQUEST_TIMEOUT_MS", 100, 600_000);
  if (attempts !== undefined) o.maxAttempts = attempts;
  if (backoff !== undefined) o.backoffMaxMs = backoff;
  if (timeout !== undefined) o.timeoutMs = timeout;
  return o;
}

interface ResolvedOptions {
  readonly transport: Transport;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
  readonly random: () => number;
  readonly maxAttempts: number;
  readonly maxInFlight: number;
  readonly backoffMaxMs: number;
}

interface Token {
  readonly id: string;
  readonly expiresAtMs: number;
  /** How early to renew it, in ms (see TOKEN_RENEW_MARGIN_MS). */
  readonly renewMarginMs: number;
  readonly userId: string;
  /** The token's user name and domain, as Keystone spells them ("" when absent). */
  readonly userName: string;
  readonly userDomainId: string;
  readonly userDomainName: string;
  readonly projectId: string;
  readonly roles: readonly string[];
}

/** The HTTP methods the client sends. */
export type Method = "GET" | "POST" | "PATCH" | "DELETE";

/** How {@link KeystoneSession.call} sends one request and what it takes for an answer. */
export interface CallOptions {
  /** The JSON body to send, if any. */
  readonly json?: unknown;
  /** Retry on retryable statuses and transport failures (never for POST). */
  readonly retry: boolean;
  /** Statuses that are answers, not errors (e.g. 404 for a lookup). */
  readonly accept?: readonly number[];
  /** Values to redact from any message built from this call (e.g. the blob sent). */
  readonly secrets?: readonly string[];
  /** Send no token: only for the token request itself and the unauthenticated method probe. */
  readonly withoutToken?: boolean;
}

/** How {@link KeystoneSession.send} sends its one request. */
export interface SendOptions {
  /** The JSON body to send, if any. */
  readonly json?: unknown;
  /** Headers added to the session's (and replacing its User-Agent when they name one). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Send no token: for a login of another user, or an unauthenticated probe. */
  readonly withoutToken?: boolean;
}

/** The default sleep between retries: a real timer. */
function sleepReal(ms: number): Promise<void> {
  // The timer must keep the process alive: a program whose only pending work is this retry
  // would otherwise exit 0 in the middle of it, and the engine would take "no users" for the
  // fleet (a preview of nothing, an up that deletes every enrollment).
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * One authenticated connection to Keystone for one set of operator credentials: its token,
 * its connection pool and its request counters. The resource operations (credentials.ts,
 * users.ts) send their requests through {@link KeystoneSession.call} and
 * {@link KeystoneSession.list}.
 */
export class KeystoneSession {
  /** The operator's settings this session authenticates with (holds secrets: never log it). */
  readonly auth: KeystoneAuth;
  /** Requests sent, tokens issued and retries, for benchmarks and tests. */
  readonly stats: ClientStats = { requests: 0, byMethod: {}, tokensIssued: 0, retries: 0 };
  private readonly opts: ResolvedOptions;
  private token: Token | undefined;
  private tokenPromise: Promise<Token> | undefined;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private methods: Promise<string[]> | undefined;
  /**
   * Keystone's first refusal of a change for want of the operator's MFA passcode (Keystone 30,
   * see {@link isMfaPasscodeRefusal}): from then on every write of this client is refused at
   * once with it, unsent, so that a run stops instead of trying every user; reads go on.
   */
  private mfaRefusal: KeystoneError | undefined;

  /** A session for `auth`; nothing is sent until the first request. */
  constructor(auth: KeystoneAuth, options: KeystoneClientOptions = {}) {
    this.auth = auth;
    this.opts = {
      transport:
        options.transport ??
        createTransport({
          caPem: auth.caPem,
          insecure: auth.insecure,
          ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        }),
      sleep: options.sleep ?? sleepReal,
      now: options.now ?? Date.now,
      random: options.random ?? Math.random,
      maxAttempts: options.maxAttempts ?? MAX_ATTEMPTS,
      maxInFlight: options.maxInFlight ?? MAX_IN_FLIGHT,
      backoffMaxMs: options.backoffMaxMs ?? BACKOFF_MAX_MS,
    };
  }

  /**
   * Waits `ms` milliseconds with this session's clock (the `sleep` option: a test seam), for
   * callers that pace their own requests (see users.writeUserMfa).
   */
  pause(ms: number): Promise<void> {
    return this.opts.sleep(ms);
  }

  /** This session's clock, ms since the epoch (the `now` option: a test seam). */
  clock(): number {
    return this.opts.now();
  }

  /** Closes this session's idle connections. */
  close(): void {
    this.opts.transport.close();
  }

  // ---------------------------------------------------------------- tokens

  /** The current token's roles, user and project (authenticating if needed). */
  async whoami(): Promise<{
    userId: string;
    userName: string;
    userDomainId: string;
    userDomainName: string;
    projectId: string;
    roles: readonly string[];
    expiresAtMs: number;
  }> {
    const t = await this.currentToken();
    return {
      userId: t.userId,
      userName: t.userName,
      userDomainId: t.userDomainId,
      userDomainName: t.userDomainName,
      projectId: t.projectId,
      roles: t.roles,
      expiresAtMs: t.expiresAtMs,
    };
  }

  /**
   * Keystone's `[auth] methods`, probed once per client: a token request with a method no
   * Keystone has is refused with 401 and the list of enabled methods (AuthMethodNotSupported).
   * Unauthenticated, writes nothing. `GET /v3` does not tell them (nor the release).
   *
   * @throws {KeystoneError} `E_KEYSTONE_HTTP` when Keystone answers otherwise (no list).
   */
  async authMethods(): Promise<string[]> {
    this.methods ??= (async () => {
      const res = await this.call("POST", "/auth/tokens?nocatalog", {
        json: { auth: { identity: { methods: [METHOD_PROBE], [METHOD_PROBE]: {} } } },
        retry: true,
        withoutToken: true,
        accept: [400, 401],
      });
      const list = asRecord(asRecord(asRecord(res.body).error).identity).methods;
      if (res.status !== 401 || !Array.isArray(list) || !list.every((m) => typeof m === "string")) {
        throw new KeystoneError(
          "E_KEYSTONE_HTTP",
          { method: "POST", path: "/v3/auth/tokens", status: res.status },
          "Keystone did not list its [auth] methods for an unknown method; is the auth URL an identity v3 endpoint?",
        );
      }
      return list as string[];
    })();
    this.methods.catch(() => {
      this.methods = undefined;
    });
    return this.methods;
  }

  /** Forgets the token so that the next request authenticates again. */
  invalidateToken(): void {
    this.token = undefined;
  }

  private async currentToken(): Promise<Token> {
    const t = this.token;
    if (t && t.expiresAtMs - this.opts.now() > t.renewMarginMs) return t;
    // Concurrent callers share one authentication request.
    this.tokenPromise ??= this.issueToken().finally(() => {
      this.tokenPromise = undefined;
    });
    return this.tokenPromise;
  }

  /**
   * The current token's ID and expiry (authenticating if needed), for an operator command to
   * hand to the processes of its run after its one MFA login (see `RUN_TOKEN_ENV` in auth.ts).
   * The ID is a secret: never log it.
   */
  async tokenForHandoff(): Promise<{ readonly id: string; readonly expiresAtMs: number }> {
    const t = await this.currentToken();
    return { id: t.id, expiresAtMs: t.expiresAtMs };
  }

  /**
   * Asks Keystone for this session's token with one request, never retried, and returns the
   * answer whatever it is; when the answer holds a token (201 with `X-Subject-Token` and
   * `expires_at`) the session takes it as its current token, as its first request would have,
   * so that nothing asks for a second one. For a caller that reads more of the answer than the
   * session keeps (the doctor: `issued_at` and `Date` for the clock, the project's name) or
   * words Keystone's refusal its own way.
   *
   * @param headers - added to the request's (e.g. the caller's own User-Agent).
   * @returns the answer, and whether the session took the token in it.
   * @throws {TransportError} when no HTTP answer arrived.
   */
  async authenticateOnce(
    headers: Readonly<Record<string, string>> = {},
  ): Promise<{ readonly response: HttpResponse; readonly adopted: boolean }> {
    const response = await this.send("POST", "/auth/tokens?nocatalog", {
      json: tokenRequestBody(this.auth),
      headers,
      withoutToken: true,
    });
    const token = response.status === 201 ? this.tokenFrom(response) : undefined;
    if (token) this.adopt(token);
    return { response, adopted: token !== undefined };
  }

  private async issueToken(): Promise<Token> {
    const a = this.auth;
    const secrets = [a.password ?? "", a.token ?? "", a.passcode ?? ""].filter(Boolean);
    const res = await this.call("POST", "/auth/tokens?nocatalog", {
      json: tokenRequestBody(a),
      // Issuing a token twice is harmless, so this POST may be retried.
      retry: true,
      secrets,
      withoutToken: true,
    });
    if (res.status !== 201) throw this.httpError("POST", "/auth/tokens", res, secrets, 1);
    const token = this.tokenFrom(res);
    if (!token) {
      throw new KeystoneError(
        "E_KEYSTONE_AUTH",
        { method: "POST", path: "/v3/auth/tokens", status: res.status },
        "Keystone answered without a token; is the auth URL an identity v3 endpoint?",
      );
    }
    this.adopt(token);
    return token;
  }

  /** Makes `token` the session's current token, counting it. */
  private adopt(token: Token): void {
    this.stats.tokensIssued++;
    this.token = token;
  }

  /** The token in a token request's 201 answer; undefined without an ID or an expiry. */
  private tokenFrom(res: HttpResponse): Token | undefined {
    const a = this.auth;
    const id = headerValue(res, "x-subject-token");
    const body = asRecord(asRecord(res.body).token);
    const expiresAt = Date.parse(String(body.expires_at ?? ""));
    // Without issued_at (not seen from Keystone, but cheap to allow) assume it was issued now.
    const issuedAtParsed = Date.parse(String(body.issued_at ?? ""));
    const issuedAt = Number.isNaN(issuedAtParsed) ? this.opts.now() : issuedAtParsed;
    if (!id || Number.isNaN(expiresAt)) return undefined;
    const roles = Array.isArray(body.roles) ? body.roles.map((r) => String(asRecord(r).name)) : [];
    return {
      id,
      expiresAtMs: expiresAt,
      // A token re-authenticated from a token keeps the original's expiry: renewing early would
      // only ask Keystone for the same lifetime again, so such a token is used until it expires.
      renewMarginMs: a.token ? 0 : Math.min(TOKEN_RENEW_MARGIN_MS, Math.max(0, expiresAt - issuedAt) / 4),
      userId: String(asRecord(body.user).id ?? ""),
      userName: String(asRecord(body.user).name ?? ""),
      userDomainId: String(asRecord(asRecord(body.user).domain).id ?? ""),
      userDomainName: String(asRecord(asRecord(body.user).domain).name ?? ""),
      projectId: String(asRecord(body.project).id ?? ""),
      roles,
    };
  }

  // ---------------------------------------------------------------- requests

  private async acquire(): Promise<void> {
    if (this.inFlight < this.opts.maxInFlight) {
      this.inFlight++;
      return;
    }
    // release() hands its slot straight to us: inFlight already counts this request.
    await new Promise<void>((r) => this.waiters.push(r));
  }

  private release(): void {
    const next = this.waiters.shift();
    // Handing the slot over (instead of freeing it and letting the waiter take it later) keeps
    // a caller that arrives before the waiter resumes from taking the same slot.
    if (next) next();
    else this.inFlight--;
  }

  /** Counts one request sent, in {@link KeystoneSession.stats}. */
  private countRequest(method: Method): void {
    this.stats.requests++;
    this.stats.byMethod[method] = (this.stats.byMethod[method] ?? 0) + 1;
  }

  /** Full jitter: a random delay up to base * 2^attempt, capped. */
  private backoffMs(attempt: number): number {
    const cap = Math.min(this.opts.backoffMaxMs, BACKOFF_BASE_MS * 2 ** attempt);
    return Math.floor(this.opts.random() * cap);
  }

  /** How long Keystone's Retry-After asks to wait, in ms (capped); else the backoff. */
  private retryAfterMs(res: HttpResponse, attempt: number): number {
    const raw = headerValue(res, "retry-after");
    if (raw) {
      const secs = Number(raw);
      const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(raw) - this.opts.now();
      if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, RETRY_AFTER_MAX_MS);
    }
    return this.backoffMs(attempt);
  }

  /** Attempts per retryable request, first try included (see {@link MAX_ATTEMPTS}). */
  get maxAttempts(): number {
    return this.opts.maxAttempts;
  }

  /**
   * Counts a retry and waits before attempt `attempt + 1`: as long as `res`'s Retry-After asks
   * (capped at {@link RETRY_AFTER_MAX_MS}), else a backoff with full jitter. For callers that
   * retry on their own terms (a create that must not be repeated blindly).
   */
  async pauseBeforeRetry(attempt: number, res?: HttpResponse): Promise<void> {
    this.stats.retries++;
    await this.opts.sleep(res ? this.retryAfterMs(res, attempt) : this.backoffMs(attempt));
  }

  /**
   * Sends one request to `path` under the auth URL (`/users`, `/credentials?user_id=...`),
   * with the token (renewed once on a 401), the in-flight limit and, when `o.retry`, retries.
   * Every request of the client goes through here; test and demo fixtures use it for the
   * writes the product never makes.
   *
   * @returns every HTTP answer that is a success or in `o.accept`.
   * @throws {KeystoneError} for any other answer or transport failure, its message redacted
   *   of `o.secrets` and the operator's password, token and passcode.
   */
  async call(method: Method, path: string, o: CallOptions): Promise<HttpResponse> {
    if (this.mfaRefusal && method !== "GET" && !o.withoutToken) throw this.mfaRefusal;
    const url = `${this.auth.authUrl}${path}`;
    const secrets = o.secrets ?? [];
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { "user-agent": USER_AGENT };
      if (!o.withoutToken) headers["x-auth-token"] = (await this.currentToken()).id;
      let res: HttpResponse;
      await this.acquire();
      try {
        this.countRequest(method);
        res = await this.opts.transport.send({ method, url, headers, json: o.json });
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        const retryable = e.failure === "refused" || (o.retry && (e.failure === "reset" || e.failure === "timeout"));
        if (retryable && attempt < this.opts.maxAttempts) {
          await this.pauseBeforeRetry(attempt);
          continue;
        }
        throw transportToKeystoneError(method, path, e, attempt);
      } finally {
        this.release();
      }
      if (res.status === 401 && !o.withoutToken && !renewed) {
        // The token may have been revoked or expired early: renew it once, then give up.
        renewed = true;
        this.invalidateToken();
        attempt--;
        continue;
      }
      if (o.retry && RETRYABLE_STATUS.has(res.status) && attempt < this.opts.maxAttempts) {
        await this.pauseBeforeRetry(attempt, res);
        continue;
      }
      if ((res.status >= 200 && res.status < 300) || o.accept?.includes(res.status)) return res;
      throw this.httpError(method, path, res, secrets, attempt);
    }
  }

  /**
   * Sends one request to `path` under the auth URL, once, and returns whatever HTTP answer came:
   * unlike {@link KeystoneSession.call} it does not retry, does not renew the token on a 401,
   * takes every status for an answer (never for an error), and is not held back by an earlier
   * MFA refusal. For a caller that must
   * read raw statuses and headers itself: the doctor's probes (403 versus 400, auth receipts,
   * `Date`). Counted in {@link KeystoneSession.stats} and held to the in-flight limit like every
   * request. Unless `o.withoutToken`, it carries the session's token as it is, not renewed near
   * its expiry (an answer to an expired one is the caller's to read, like any other); only a
   * session that has none authenticates first.
   *
   * @throws {TransportError} when no HTTP answer arrived.
   * @throws {KeystoneError} when the session has no token and Keystone will not issue one.
   */
  async send(method: Method, path: string, o: SendOptions = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { "user-agent": USER_AGENT, ...o.headers };
    if (!o.withoutToken) headers["x-auth-token"] = (this.token ?? (await this.currentToken())).id;
    await this.acquire();
    try {
      this.countRequest(method);
      return await this.opts.transport.send({
        method,
        url: `${this.auth.authUrl}${path}`,
        headers,
        ...(o.json === undefined ? {} : { json: o.json }),
      });
    } finally {
      this.release();
    }
  }

  /**
   * The error for an HTTP answer that is not a success: method, path, status, Keystone's
   * message (redacted of `secrets` and the operator's password, token and passcode), request
   * id, and a code and hint for the operator. Keystone 30's refusal of a change for want of the
   * operator's MFA passcode is kept, and every later write of this session fails with it unsent.
   */
  httpError(
    method: string,
    path: string,
    res: HttpResponse,
    secrets: readonly string[],
    attempts: number,
  ): KeystoneError {
    const err = asRecord(asRecord(res.body).error);
    const all = [
      ...secrets,
      this.auth.password ?? "",
      this.auth.token ?? "",
      this.auth.passcode ?? "",
      this.token?.id ?? "",
    ].filter(Boolean);
    const keystoneMessage = typeof err.message === "string" ? redact(err.message, all) : undefined;
    const requestId = headerValue(res, "x-openstack-request-id");
    const details = {
      method,
      path: `/v3${path.split("?")[0]}`,
      status: res.status,
      attempts,
      ...(keystoneMessage ? { keystoneMessage } : {}),
      ...(requestId ? { requestId } : {}),
    };
    if (res.status === 403 && isMfaPasscodeRefusal(err.message)) {
      // Every further write would get the same answer: refuse them here (see mfaRefusal).
      this.mfaRefusal ??= new KeystoneError("E_KEYSTONE_MFA", details, MFA_PASSCODE_REFUSAL_HINT);
      return this.mfaRefusal;
    }
    const [code, hint] =
      method === "POST" && path.startsWith("/auth/tokens")
        ? tokenRefusalHint(this.auth, res)
        : statusHint(res.status, path);
    return new KeystoneError(code, details, hint);
  }

  /**
   * GETs a list, following `links.next` where Keystone pages (27.0+). `truncated` is true when
   * Keystone cut the list at its `list_limit` and offered no next page (Keystone before 27.0):
   * the caller must then narrow its filters, never take the part for the whole.
   *
   * @param key - the body's field holding the list (`users`, `credentials`, ...).
   * @throws {KeystoneError} when a request fails, or the next links do not end.
   */
  async list(path: string, key: string): Promise<{ items: unknown[]; truncated: boolean }> {
    const items: unknown[] = [];
    const seen = new Set<string>();
    let next: string | undefined = path;
    for (let page = 1; next !== undefined; page++) {
      if (page > MAX_LIST_PAGES || seen.has(next)) throw truncatedError(path, "its next links did not end");
      seen.add(next);
      const body = asRecord((await this.call("GET", next, { retry: true })).body);
      const list = body[key];
      if (Array.isArray(list)) items.push(...list);
      next = this.nextPage(asRecord(body.links).next);
      if (next === undefined && body.truncated === true) return { items, truncated: true };
    }
    return { items, truncated: false };
  }

  /**
   * The path under /v3 of a `links.next` URL. Only the path and query are kept: the token is
   * only ever sent to the configured auth URL, whatever host Keystone names in its links.
   */
  private nextPage(link: unknown): string | undefined {
    if (typeof link !== "string" || link === "") return undefined;
    let url: URL;
    try {
      url = new URL(link, this.auth.authUrl);
    } catch {
      return undefined;
    }
    const at = url.pathname.lastIndexOf("/v3/");
    return at < 0 ? undefined : `${url.pathname.slice(at + 3)}${url.search}`;
  }
}

/**
 * The `POST /v3/auth/tokens` body for the operator's settings: password (or token) identity,
 * scoped to the project. It holds the password: never log it.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-scoped-authorization
 */
export function tokenRequestBody(a: KeystoneAuth): unknown {
  const user = {
    ...(a.userId ? { id: a.userId } : { name: a.userName }),
    ...(a.userId ? {} : { domain: a.userDomainId ? { id: a.userDomainId } : { name: a.userDomainName ?? "Default" } }),
  };
  const identity = a.token
    ? { methods: ["token"], token: { id: a.token } }
    : a.passcode
      ? // keystoneauth's v3multifactor: both factors in one request, as MFA rules [["password","totp"]] ask.
        {
          methods: ["password", "totp"],
          password: { user: { ...user, password: a.password } },
          totp: { user: { ...user, passcode: a.passcode } },
        }
      : { methods: ["password"], password: { user: { ...user, password: a.password } } };
  const project = a.projectId
    ? { id: a.projectId }
    : {
        name: a.projectName,
        domain: a.projectDomainId ? { id: a.projectDomainId } : { name: a.projectDomainName ?? "Default" },
      };
  return { auth: { identity, scope: { project } } };
}

/**
 * Whether Keystone's message refuses a change for want of the acting account's MFA passcode:
 * Keystone 30 with `[security_compliance] require_mfa_for_sensitive_account_actions` (default
 * true) says "This action requires a current MFA passcode in the OpenStack-MFA-Passcode header".
 */
export function isMfaPasscodeRefusal(keystoneMessage: unknown): boolean {
  return (
    typeof keystoneMessage === "string" &&
    /openstack-mfa-passcode|requires a current mfa passcode/i.test(keystoneMessage)
  );
}

/** What to do about Keystone 30's refusal of an MFA change by an operator account with MFA rules. */
export const MFA_PASSCODE_REFUSAL_HINT =
  // Short: a retirement's record keeps the first 500 characters of the whole message.
  "Cause: the operator's own account has MFA rules; Keystone 30 requires a fresh code for every MFA change. " +
  "Fix: log in as an admin account without MFA rules, or set [security_compliance] " +
  "require_mfa_for_sensitive_account_actions = false in keystone.conf. No more changes are sent.";

/** The ways to give the operator's TOTP code, for messages. */
const PASSCODE_SETTINGS =
  "OS_PASSCODE, passcode in clouds.yaml (auth_type: v3multifactor, auth_methods: [v3password, v3totp]) " +
  "or openstack:passcode (secret) in the stack config; operator commands on a terminal ask for it";

/**
 * Code and advice for a refused token request (`POST /v3/auth/tokens`): an auth receipt is
 * never reported as a wrong password, and a run's MFA token that expired says so.
 */
function tokenRefusalHint(a: KeystoneAuth, res: HttpResponse): [ErrorCode, string] {
  const body = asRecord(res.body);
  const required = Array.isArray(body.required_auth_methods)
    ? body.required_auth_methods.map((r) => (Array.isArray(r) ? r.map(String).join("+") : String(r)))
    : [];
  const receipt =
    res.status === 401 && (headerValue(res, "openstack-auth-receipt") !== undefined || required.length > 0);
  const rules = required.length > 0 ? ` (its rules: ${required.join(" or ")})` : "";
  if (receipt && !a.passcode) {
    return [
      "E_KEYSTONE_MFA",
      `Keystone accepted the password, but the operator's account has MFA rules${rules} and asks for a TOTP code ` +
        `as well (an auth receipt). Give the account's current code (${PASSCODE_SETTINGS}), or use an account ` +
        "without MFA rules (bulk runs on Keystone 30 need one: see docs/operator-mfa.md).",
    ];
  }
  if (receipt) {
    return [
      "E_KEYSTONE_MFA",
      `Keystone accepted the password and the TOTP code, but the operator account's MFA rules${rules} ask for ` +
        "other methods as well; use an account whose rules allow password + TOTP, or one without MFA rules.",
    ];
  }
  if (a.runToken && (res.status === 401 || res.status === 404)) {
    return [
      "E_KEYSTONE_MFA",
      "The token of this run's MFA login expired (or was revoked): a run of an operator account with MFA is " +
        "bounded by that token's lifetime (Keystone's [token] expiration, 1 h by default), and a new token needs " +
        "a new code. Run again with a fresh code; the run picks up where this one stopped.",
    ];
  }
  if (a.token && (res.status === 401 || res.status === 404)) {
    return [
      "E_KEYSTONE_AUTH",
      "Keystone refused the token given (OS_TOKEN, openstack:token or token in clouds.yaml): it expired or was " +
        "revoked, and a token cannot be renewed past its expiry. Give a new token, or a user and password.",
    ];
  }
  if (a.passcode && res.status === 401) {
    return [
      "E_KEYSTONE_AUTH",
      "Keystone refused the password and TOTP code given together. Check the user name, password, domain and " +
        "project, and that the code is the account's current one: codes change every 30 s, and Keystone 30 " +
        "accepts each code only once (a code already used for a login is refused).",
    ];
  }
  return statusHint(res.status, "/auth/tokens");
}

function statusHint(status: number, path: string): [ErrorCode, string] {
  if (status === 401) {
    return [
      "E_KEYSTONE_AUTH",
      path.startsWith("/auth/")
        ? "Check the user name, password, domain and project (OS_* variables, clouds.yaml or openstack:* config)."
        : "The token was refused even after renewing it; check the account is still enabled.",
    ];
  }
  if (status === 403) {
    return [
      "E_KEYSTONE_FORBIDDEN",
      "The account may not do this: managing other users' credentials needs the admin role (see SECURITY.md, Least privilege).",
    ];
  }
  if (status === 404) return ["E_KEYSTONE_NOT_FOUND", "It does not exist (any more)."];
  if (status === 409) return ["E_KEYSTONE_HTTP", "Keystone reports a conflict; run again after checking the object."];
  if (status >= 500) return ["E_KEYSTONE_HTTP", "Keystone failed; check its logs for the request id, then run again."];
  return ["E_KEYSTONE_HTTP", "Keystone refused the request."];
}

/**
 * A list Keystone cut short at its `list_limit` that no narrower request can complete.
 *
 * @param why - why it cannot be narrowed further, for the operator.
 */
export function truncatedError(path: string, why: string): KeystoneError {
  return new KeystoneError(
    "E_KEYSTONE_HTTP",
    { method: "GET", path: `/v3${path.split("?")[0]}`, status: 200 },
    `Keystone cut the list short at its list_limit and ${why}; raise [DEFAULT] list_limit ` +
      "(or the [identity] / [credential] list_limit) in keystone.conf, then run again.",
  );
}

function transportToKeystoneError(method: string, path: string, e: TransportError, attempts: number): KeystoneError {
  const details = { method, path: `/v3${path.split("?")[0]}`, attempts };
  if (e.failure === "timeout") {
    return new KeystoneError("E_KEYSTONE_TIMEOUT", details, `${e.message}; Keystone is slow or unreachable.`, {
      cause: e,
    });
  }
  const hint =
    e.failure === "refused"
      ? "connection refused; is Keystone running and the auth URL right?"
      : e.failure === "tls"
        ? `TLS verification failed (${e.message}); give the CA bundle with OS_CACERT or openstack:cacertFile.`
        : `network error (${e.message}); run again once the network is back.`;
  return new KeystoneError("E_KEYSTONE_NETWORK", details, hint, { cause: e });
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join("[redacted]");
  return out;
}

/** The first value of header `name` (lower case) in `res`; undefined when absent. */
export function headerValue(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `v` as an object to read fields from; `{}` when it is not an object (Keystone's bodies vary). */
export function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
}
