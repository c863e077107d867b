/**
 * A small Keystone v3 client for what keystone-totp needs: tokens, credentials and users.
 *
 * - One project-scoped token per client, renewed {@link TOKEN_RENEW_MARGIN_MS} (or a quarter of
 *   its lifetime, when shorter) before it
 *   expires and once on a 401. {@link KeystoneClient.shared} gives one client per process and
 *   set of credentials, so that every resource of a `pulumi up` shares one token.
 * - GET, PATCH and DELETE are retried on 429, 502, 503, 504, connection resets, refusals and
 *   timeouts, with exponential backoff, full jitter and Retry-After.
 * - POST /v3/credentials is not blindly retried: after an ambiguous failure (reset, timeout,
 *   5xx) the user's credentials are searched for the blob first, so a retry never leaves a
 *   duplicate.
 * - Errors name the method, path, status, Keystone's message and request id; never a token,
 *   password or blob (they are redacted even from Keystone's own messages).
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/
 */
import { createHash } from "node:crypto";
import { type ErrorCode, KeystoneError } from "../errors.ts";
import { MARKER_ATTRIBUTE } from "../ownership.ts";
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

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/** A method name no Keystone has: asking for it makes Keystone list the ones it has. */
const METHOD_PROBE = "keystone-totp-probe";

/** A Keystone credential (`/v3/credentials`). `blob` is the TOTP secret: keep it secret. */
export interface Credential {
  readonly id: string;
  readonly userId: string;
  readonly type: string;
  readonly blob: string;
  readonly projectId: string | undefined;
  /** The credential's `keystone_totp` attribute as Keystone returns it: keystone-totp's tag, if any. */
  readonly marker?: unknown;
}

/** A Keystone user, as far as keystone-totp cares. */
export interface KeystoneUser {
  readonly id: string;
  readonly name: string;
  readonly domainId: string;
  readonly email: string | undefined;
  readonly enabled: boolean;
  /** `options` as Keystone returns them (MFA rules live here). */
  readonly options: Readonly<Record<string, unknown>>;
  /** The user's `keystone_totp` attribute as Keystone returns it: keystone-totp's marker, if any. */
  readonly marker?: unknown;
}

/**
 * TOTP credentials by user, as one fleet-wide list gives them when Keystone answers it whole,
 * else (the list was cut short at Keystone's `list_limit`) one list per user asked about.
 */
export interface TotpCredentialIndex {
  /**
   * Every user's TOTP credentials when one list held them all; undefined when Keystone cut the
   * fleet-wide list short, so that nobody mistakes a partial list for "no credentials".
   */
  readonly all: ReadonlyMap<string, readonly Credential[]> | undefined;
  /** One user's TOTP credentials; with `all` undefined, listed once per user on first ask. */
  of(userId: string): Promise<readonly Credential[]>;
}

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
  readonly projectId: string;
  readonly roles: readonly string[];
}

type Method = "GET" | "POST" | "PATCH" | "DELETE";

interface CallOptions {
  readonly json?: unknown;
  /** Retry on retryable statuses and transport failures (never for POST). */
  readonly retry: boolean;
  /** Statuses that are answers, not errors (e.g. 404 for a lookup). */
  readonly accept?: readonly number[];
  /** Values to redact from any message built from this call (e.g. the blob sent). */
  readonly secrets?: readonly string[];
}

const sharedClients = new Map<string, KeystoneClient>();

function sleepReal(ms: number): Promise<void> {
  // The timer must keep the process alive: a program whose only pending work is this retry
  // would otherwise exit 0 in the middle of it, and the engine would take "no users" for the
  // fleet (a preview of nothing, an up that deletes every enrollment).
  return new Promise((r) => setTimeout(r, ms));
}

/** A Keystone v3 client bound to one set of operator credentials. */
export class KeystoneClient {
  readonly auth: KeystoneAuth;
  readonly stats: ClientStats = { requests: 0, byMethod: {}, tokensIssued: 0, retries: 0 };
  private readonly opts: ResolvedOptions;
  private token: Token | undefined;
  private tokenPromise: Promise<Token> | undefined;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private readonly domainIds = new Map<string, Promise<string | undefined>>();
  private methods: Promise<string[]> | undefined;

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
   * The process-wide client for these credentials: one token and one connection pool shared
   * by every caller in the process.
   */
  static shared(auth: KeystoneAuth): KeystoneClient {
    const key = createHash("sha256").update(JSON.stringify(auth)).digest("hex");
    let c = sharedClients.get(key);
    if (!c) {
      c = new KeystoneClient(auth, clientOptionsFromEnv());
      sharedClients.set(key, c);
    }
    return c;
  }

  /** Closes this client's idle connections. */
  close(): void {
    this.opts.transport.close();
  }

  // ---------------------------------------------------------------- tokens

  /** The current token's roles, user and project (authenticating if needed). */
  async whoami(): Promise<{ userId: string; projectId: string; roles: readonly string[]; expiresAtMs: number }> {
    const t = await this.currentToken();
    return { userId: t.userId, projectId: t.projectId, roles: t.roles, expiresAtMs: t.expiresAtMs };
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

  private async issueToken(): Promise<Token> {
    const a = this.auth;
    const secrets = [a.password ?? "", a.token ?? ""].filter(Boolean);
    const res = await this.call("POST", "/auth/tokens?nocatalog", {
      json: tokenRequestBody(a),
      // Issuing a token twice is harmless, so this POST may be retried.
      retry: true,
      secrets,
      withoutToken: true,
    });
    if (res.status !== 201) throw this.httpError("POST", "/auth/tokens", res, secrets, 1);
    const id = headerValue(res, "x-subject-token");
    const body = asRecord(asRecord(res.body).token);
    const expiresAt = Date.parse(String(body.expires_at ?? ""));
    // Without issued_at (not seen from Keystone, but cheap to allow) assume it was issued now.
    const issuedAtParsed = Date.parse(String(body.issued_at ?? ""));
    const issuedAt = Number.isNaN(issuedAtParsed) ? this.opts.now() : issuedAtParsed;
    if (!id || Number.isNaN(expiresAt)) {
      throw new KeystoneError(
        "E_KEYSTONE_AUTH",
        { method: "POST", path: "/v3/auth/tokens", status: res.status },
        "Keystone answered without a token; is the auth URL an identity v3 endpoint?",
      );
    }
    this.stats.tokensIssued++;
    const roles = Array.isArray(body.roles) ? body.roles.map((r) => String(asRecord(r).name)) : [];
    const token: Token = {
      id,
      expiresAtMs: expiresAt,
      renewMarginMs: Math.min(TOKEN_RENEW_MARGIN_MS, Math.max(0, expiresAt - issuedAt) / 4),
      userId: String(asRecord(body.user).id ?? ""),
      projectId: String(asRecord(body.project).id ?? ""),
      roles,
    };
    this.token = token;
    return token;
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

  /** Full jitter: a random delay up to base * 2^attempt, capped. */
  private backoffMs(attempt: number): number {
    const cap = Math.min(this.opts.backoffMaxMs, BACKOFF_BASE_MS * 2 ** attempt);
    return Math.floor(this.opts.random() * cap);
  }

  private retryAfterMs(res: HttpResponse, attempt: number): number {
    const raw = headerValue(res, "retry-after");
    if (raw) {
      const secs = Number(raw);
      const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(raw) - this.opts.now();
      if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, RETRY_AFTER_MAX_MS);
    }
    return this.backoffMs(attempt);
  }

  /**
   * Sends one call, with token handling and (when `retry`) retries.
   * Returns every HTTP answer that is a success or in `accept`; throws for the rest.
   */
  private async call(method: Method, path: string, o: CallOptions & { withoutToken?: boolean }): Promise<HttpResponse> {
    const url = `${this.auth.authUrl}${path}`;
    const secrets = o.secrets ?? [];
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { "user-agent": "keystone-totp" };
      if (!o.withoutToken) headers["x-auth-token"] = (await this.currentToken()).id;
      let res: HttpResponse;
      await this.acquire();
      try {
        this.stats.requests++;
        this.stats.byMethod[method] = (this.stats.byMethod[method] ?? 0) + 1;
        res = await this.opts.transport.send({ method, url, headers, json: o.json });
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        const retryable = e.failure === "refused" || (o.retry && (e.failure === "reset" || e.failure === "timeout"));
        if (retryable && attempt < this.opts.maxAttempts) {
          this.stats.retries++;
          await this.opts.sleep(this.backoffMs(attempt));
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
        this.stats.retries++;
        await this.opts.sleep(this.retryAfterMs(res, attempt));
        continue;
      }
      if ((res.status >= 200 && res.status < 300) || o.accept?.includes(res.status)) return res;
      throw this.httpError(method, path, res, secrets, attempt);
    }
  }

  private httpError(method: string, path: string, res: HttpResponse, secrets: readonly string[], attempts: number) {
    const err = asRecord(asRecord(res.body).error);
    const all = [...secrets, this.auth.password ?? "", this.auth.token ?? "", this.token?.id ?? ""].filter(Boolean);
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
    const [code, hint] = statusHint(res.status, path);
    return new KeystoneError(code, details, hint);
  }

  /**
   * GETs a list, following `links.next` where Keystone pages (27.0+). `truncated` is true when
   * Keystone cut the list at its `list_limit` and offered no next page (Keystone before 27.0):
   * the caller must then narrow its filters, never take the part for the whole.
   */
  private async list(path: string, key: string): Promise<{ items: unknown[]; truncated: boolean }> {
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

  // ---------------------------------------------------------------- credentials

  /**
   * Lists a user's TOTP credentials.
   *
   * @see https://docs.openstack.org/api-ref/identity/v3/#list-credentials
   * @throws {KeystoneError}
   */
  async listTotpCredentials(userId: string): Promise<Credential[]> {
    const q = new URLSearchParams({ user_id: userId, type: "totp" });
    const path = `/credentials?${q}`;
    const list = await this.list(path, "credentials");
    // No narrower filter exists than one user's TOTP credentials.
    if (list.truncated) throw truncatedError(path, `user ${userId} holds more TOTP credentials than that`);
    return list.items.map(toCredential).filter((c) => c.userId === userId && c.type === "totp");
  }

  /**
   * Every TOTP credential in Keystone, by user ID: one request for a whole fleet, where a
   * per-user list costs one request per user. When Keystone cuts that list short at its
   * `list_limit` (Keystone 22 has no paging), each user is listed on its own when first asked
   * about, so no credential is ever missed; where Keystone pages (27.0+), the pages are followed.
   *
   * @see https://docs.openstack.org/api-ref/identity/v3/#list-credentials
   * @throws {KeystoneError}
   */
  async listAllTotpCredentials(): Promise<TotpCredentialIndex> {
    const list = await this.list("/credentials?type=totp", "credentials");
    if (list.truncated) {
      const perUser = new Map<string, Promise<readonly Credential[]>>();
      return {
        all: undefined,
        of: (userId) => {
          let p = perUser.get(userId);
          if (!p) {
            p = this.listTotpCredentials(userId);
            // A failed list is not kept, so that the next ask tries again.
            p.catch(() => perUser.delete(userId));
            perUser.set(userId, p);
          }
          return p;
        },
      };
    }
    const byUser = new Map<string, Credential[]>();
    for (const c of list.items.map(toCredential)) {
      if (c.type !== "totp") continue;
      const mine = byUser.get(c.userId);
      if (mine) mine.push(c);
      else byUser.set(c.userId, [c]);
    }
    return { all: byUser, of: async (userId) => byUser.get(userId) ?? [] };
  }

  /**
   * Reads one credential; undefined when it does not exist (404).
   *
   * @throws {KeystoneError} for any other failure.
   */
  async getCredential(id: string): Promise<Credential | undefined> {
    const res = await this.call("GET", `/credentials/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
    if (res.status === 404) return undefined;
    return toCredential(asRecord(res.body).credential);
  }

  /**
   * Creates a TOTP credential, exactly once even when the network fails mid-request.
   *
   * After an ambiguous failure (reset, timeout, 5xx) the user's credentials are searched for
   * this blob before trying again; if a retried create still raced an earlier one, the extra
   * copies (same blob, so harmless) are deleted before returning.
   *
   * @param blob - a canonical base32 secret (see `normaliseSecret`).
   * @param marker - keystone-totp's tag (see lib/ownership.ts), stored in the same request as
   *   the credential, so that a later run recognises it even when this answer is lost.
   * @throws {KeystoneError} once attempts are exhausted or on a definite refusal (4xx).
   */
  async createTotpCredential(userId: string, blob: string, marker?: unknown): Promise<Credential> {
    const json = {
      credential: {
        type: "totp",
        user_id: userId,
        blob,
        ...(marker === undefined ? {} : { [MARKER_ATTRIBUTE]: marker }),
      },
    };
    let ambiguous = false;
    for (let attempt = 1; ; attempt++) {
      let failure: KeystoneError | undefined;
      try {
        const res = await this.call("POST", "/credentials", {
          json,
          retry: false,
          secrets: [blob],
          accept: [429, 500, 502, 503, 504],
        });
        if (res.status === 201 || res.status === 200) {
          const created = toCredential(asRecord(res.body).credential);
          return ambiguous ? await this.dropDuplicates(userId, blob, created) : created;
        }
        failure = this.httpError("POST", "/credentials", res, [blob], attempt);
        if (res.status === 429) {
          if (attempt >= this.opts.maxAttempts) throw failure;
          this.stats.retries++;
          await this.opts.sleep(this.retryAfterMs(res, attempt));
          continue;
        }
        ambiguous = true; // 5xx: Keystone may have stored it before failing.
      } catch (e) {
        if (!(e instanceof KeystoneError)) throw e;
        if (e.code === "E_KEYSTONE_NETWORK" && /refused/.test(e.message)) {
          failure = e; // never reached Keystone: safe to simply try again
        } else if (e.code === "E_KEYSTONE_NETWORK" || e.code === "E_KEYSTONE_TIMEOUT") {
          failure = e;
          ambiguous = true;
        } else {
          throw e;
        }
      }
      if (attempt >= this.opts.maxAttempts) throw failure;
      this.stats.retries++;
      await this.opts.sleep(this.backoffMs(attempt));
      if (ambiguous) {
        const existing = (await this.listTotpCredentials(userId)).filter((c) => c.blob === blob);
        if (existing.length > 0) return this.dropDuplicates(userId, blob, existing[0] as Credential, existing);
      }
    }
  }

  private async dropDuplicates(
    userId: string,
    blob: string,
    keep: Credential,
    known?: readonly Credential[],
  ): Promise<Credential> {
    const same = (known ?? (await this.listTotpCredentials(userId))).filter((c) => c.blob === blob);
    for (const c of same) if (c.id !== keep.id) await this.deleteCredential(c.id);
    return keep;
  }

  /**
   * Replaces a credential's blob (PATCH).
   *
   * @throws {KeystoneError} `E_KEYSTONE_NOT_FOUND` when it no longer exists.
   */
  async updateCredentialBlob(id: string, blob: string): Promise<Credential> {
    const res = await this.call("PATCH", `/credentials/${encodeURIComponent(id)}`, {
      json: { credential: { blob } },
      retry: true,
      secrets: [blob],
    });
    return toCredential(asRecord(res.body).credential);
  }

  /**
   * Deletes a credential. A 404 counts as done.
   *
   * @returns true if it existed.
   * @throws {KeystoneError}
   */
  async deleteCredential(id: string): Promise<boolean> {
    const res = await this.call("DELETE", `/credentials/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
    return res.status !== 404;
  }

  // ---------------------------------------------------------------- users and domains

  /** A domain's ID by name (cached); undefined if there is none. */
  async domainIdByName(name: string): Promise<string | undefined> {
    let p = this.domainIds.get(name);
    if (!p) {
      const path = `/domains?${new URLSearchParams({ name })}`;
      p = this.list(path, "domains").then((list) => {
        // Domain names are unique, so a cut-short answer can only be a Keystone fault.
        if (list.truncated) throw truncatedError(path, `domain names are unique, yet the list for '${name}' was cut`);
        const d = list.items.map(asRecord).find((x) => x.name === name) ?? asRecord(list.items[0]);
        return typeof d.id === "string" ? d.id : undefined;
      });
      p.catch(() => this.domainIds.delete(name));
      this.domainIds.set(name, p);
    }
    return p;
  }

  /** Creates a domain (tests and the demo use it). */
  async createDomain(name: string): Promise<string> {
    const res = await this.call("POST", "/domains", { json: { domain: { name, enabled: true } }, retry: false });
    const id = asRecord(asRecord(res.body).domain).id;
    this.domainIds.delete(name);
    return String(id);
  }

  /** A user by ID; undefined if there is none. */
  async getUser(id: string): Promise<KeystoneUser | undefined> {
    const res = await this.call("GET", `/users/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
    return res.status === 404 ? undefined : toUser(asRecord(res.body).user);
  }

  /** A user by name in a domain (by domain name); undefined if the user or domain is missing. */
  async findUser(name: string, domainName: string): Promise<KeystoneUser | undefined> {
    const domainId = await this.domainIdByName(domainName);
    if (!domainId) return undefined;
    return this.findUserInDomain(name, domainId);
  }

  /** A user by name in a domain (by domain ID): one request, whatever Keystone's list_limit. */
  private async findUserInDomain(name: string, domainId: string): Promise<KeystoneUser | undefined> {
    const path = `/users?${new URLSearchParams({ name, domain_id: domainId })}`;
    const list = await this.list(path, "users");
    // Names are unique in a domain, so a cut-short answer can only be a Keystone fault.
    if (list.truncated)
      throw truncatedError(path, `user names are unique in a domain, yet the list for '${name}' was cut`);
    return list.items.map(toUser).find((u) => u.name === name);
  }

  /**
   * The users of a domain: one request when Keystone gives the whole list, far cheaper than
   * one lookup per user for fleets. When Keystone cuts the list short at its `list_limit`
   * (Keystone 22 has no paging), each of `names` not in the part received is looked up on its
   * own (`GET /v3/users?domain_id=&name=`), so every user asked for is found; where Keystone
   * pages (27.0+), the pages are followed instead.
   *
   * @param names - the user names the caller needs; without them a cut-short list is an error.
   * @returns every user of the domain, or (list cut short) those received plus those of
   *   `names` that exist.
   * @throws {KeystoneError} `E_KEYSTONE_HTTP` when the list was cut short and no names were given.
   */
  async listUsers(domainId: string, names?: Iterable<string>): Promise<KeystoneUser[]> {
    const path = `/users?${new URLSearchParams({ domain_id: domainId })}`;
    const list = await this.list(path, "users");
    const users = list.items.map(toUser);
    if (!list.truncated) return users;
    if (names === undefined) throw truncatedError(path, "this caller cannot narrow it by user name");
    const have = new Set(users.map((u) => u.name));
    const more = await Promise.all(
      [...new Set(names)].filter((n) => !have.has(n)).map((n) => this.findUserInDomain(n, domainId)),
    );
    return [...users, ...more.filter((u): u is KeystoneUser => u !== undefined)];
  }

  /**
   * Updates a user's `options` (MFA rules live there).
   *
   * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
   */
  async updateUserOptions(id: string, options: Readonly<Record<string, unknown>>): Promise<KeystoneUser> {
    const res = await this.call("PATCH", `/users/${encodeURIComponent(id)}`, {
      json: { user: { options } },
      retry: true,
    });
    return toUser(asRecord(res.body).user);
  }

  /**
   * Writes a user's MFA options and keystone-totp's marker in ONE request, so that no crash can
   * leave the tool's rules without the record of what they replaced (see mfa/posture.ts).
   * `null` removes an option, or the marker.
   *
   * @throws {KeystoneError} `E_KEYSTONE_FORBIDDEN` when the identity backend refuses user
   *   writes (LDAP) or the account may not make them.
   */
  async writeUserMfa(
    id: string,
    options: { readonly enabled: boolean | null; readonly rules: readonly (readonly string[])[] | null },
    marker: unknown,
  ): Promise<KeystoneUser> {
    const res = await this.call("PATCH", `/users/${encodeURIComponent(id)}`, {
      json: {
        user: {
          options: { multi_factor_auth_enabled: options.enabled, multi_factor_auth_rules: options.rules },
          [MARKER_ATTRIBUTE]: marker,
        },
      },
      retry: true,
    });
    return toUser(asRecord(res.body).user);
  }

  /** Creates a user (tests and the demo use it). */
  async createUser(u: { name: string; domainId: string; password: string; email?: string }): Promise<KeystoneUser> {
    const res = await this.call("POST", "/users", {
      json: {
        user: { name: u.name, domain_id: u.domainId, password: u.password, ...(u.email ? { email: u.email } : {}) },
      },
      retry: false,
      secrets: [u.password],
    });
    return toUser(asRecord(res.body).user);
  }

  /** Deletes a user; 404 counts as done. */
  async deleteUser(id: string): Promise<void> {
    await this.call("DELETE", `/users/${encodeURIComponent(id)}`, { retry: true, accept: [404] });
  }
}

/**
 * The `POST /v3/auth/tokens` body for the operator's settings: password (or token) identity,
 * scoped to the project. It holds the password: never log it.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-scoped-authorization
 */
export function tokenRequestBody(a: KeystoneAuth): unknown {
  const identity = a.token
    ? { methods: ["token"], token: { id: a.token } }
    : {
        methods: ["password"],
        password: {
          user: {
            ...(a.userId ? { id: a.userId } : { name: a.userName }),
            ...(a.userId
              ? {}
              : { domain: a.userDomainId ? { id: a.userDomainId } : { name: a.userDomainName ?? "Default" } }),
            password: a.password,
          },
        },
      };
  const project = a.projectId
    ? { id: a.projectId }
    : {
        name: a.projectName,
        domain: a.projectDomainId ? { id: a.projectDomainId } : { name: a.projectDomainName ?? "Default" },
      };
  return { auth: { identity, scope: { project } } };
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
function truncatedError(path: string, why: string): KeystoneError {
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

function headerValue(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === "object" ? (v as Record<string, unknown>) : {};
}

function toCredential(raw: unknown): Credential {
  const c = asRecord(raw);
  return {
    id: String(c.id ?? ""),
    userId: String(c.user_id ?? ""),
    type: String(c.type ?? ""),
    blob: typeof c.blob === "string" ? c.blob : "",
    projectId: typeof c.project_id === "string" ? c.project_id : undefined,
    ...(c[MARKER_ATTRIBUTE] === undefined || c[MARKER_ATTRIBUTE] === null ? {} : { marker: c[MARKER_ATTRIBUTE] }),
  };
}

function toUser(raw: unknown): KeystoneUser {
  const u = asRecord(raw);
  return {
    id: String(u.id ?? ""),
    name: String(u.name ?? ""),
    domainId: String(u.domain_id ?? ""),
    email: typeof u.email === "string" ? u.email : undefined,
    enabled: u.enabled !== false,
    options: asRecord(u.options),
    marker: u[MARKER_ATTRIBUTE] ?? undefined,
  };
}
