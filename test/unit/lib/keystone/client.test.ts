/**
 * Error paths of the Keystone client, against an in-process fake transport; and the session's
 * raw `send` and `authenticateOnce` (once, any status, the token kept). That a create, read,
 * update and delete work is shown against the real Keystone in test/integration.
 */
import { describe, expect, it } from "vitest";
import { KeystoneError } from "../../../../lib/errors.ts";
import type { KeystoneAuth } from "../../../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../../../lib/keystone/client.ts";
import { LIST_NOT_FOUND_ATTEMPTS } from "../../../../lib/keystone/credentials.ts";
import { type HttpRequest, type HttpResponse, type Transport, TransportError } from "../../../../lib/keystone/http.ts";
import { MFA_SETTLE_MAX_MS, MFA_SETTLE_MIN_MS } from "../../../../lib/keystone/users.ts";

const auth: KeystoneAuth = {
  authUrl: "http://keystone.test/v3",
  userId: undefined,
  userName: "admin",
  userDomainId: undefined,
  userDomainName: "Default",
  password: "s3cret-password",
  token: undefined,
  projectId: undefined,
  projectName: "admin",
  projectDomainId: undefined,
  projectDomainName: "Default",
  caPem: undefined,
  insecure: false,
  source: "test",
};

type Handler = (req: HttpRequest) => HttpResponse | TransportError;

/** A scripted Keystone: token requests always succeed; other requests follow `script`. */
function fakeKeystone(script: Handler[], opts: { tokenTtlMs?: number } = {}) {
  const log: HttpRequest[] = [];
  let tokenCount = 0;
  const stored: { id: string; user_id: string; type: string; blob: string }[] = [];
  const transport: Transport = {
    async send(req) {
      log.push(req);
      if (req.url.includes("/auth/tokens")) {
        tokenCount++;
        return {
          status: 201,
          headers: { "x-subject-token": `tok-${tokenCount}` },
          body: {
            token: {
              issued_at: new Date(Date.now()).toISOString(),
              expires_at: new Date(Date.now() + (opts.tokenTtlMs ?? 3_600_000)).toISOString(),
              user: { id: "admin-id" },
              project: { id: "p" },
              roles: [{ name: "admin" }],
            },
          },
        };
      }
      const next = script.shift();
      if (!next) throw new Error(`unexpected request ${req.method} ${req.url}`);
      const r = next(req);
      if (r instanceof TransportError) throw r;
      return r;
    },
    close() {},
  };
  return { transport, log, stored, tokens: () => tokenCount };
}

const ok =
  (status: number, body: unknown = {}, headers: Record<string, string> = {}): Handler =>
  () => ({
    status,
    headers: { "x-openstack-request-id": "req-abc", ...headers },
    body,
  });
const reset: Handler = () => new TransportError("reset", "ECONNRESET", "ECONNRESET");
const refused: Handler = () => new TransportError("refused", "ECONNREFUSED", "ECONNREFUSED");
const cred = (id: string, blob: string) => ({ credential: { id, user_id: "u1", type: "totp", blob } });
const list = (...items: [string, string][]) => ({
  credentials: items.map(([id, blob]) => ({ id, user_id: "u1", type: "totp", blob })),
});

function client(t: Transport, sleeps: number[] = []) {
  return new KeystoneClient(auth, {
    transport: t,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
  });
}

const BLOB = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

describe("KeystoneClient retries", () => {
  it("retries GET on 503, 429 (honouring Retry-After) and resets, then succeeds", async () => {
    const k = fakeKeystone([ok(503), ok(429, {}, { "retry-after": "2" }), reset, ok(200, cred("c1", BLOB))]);
    const sleeps: number[] = [];
    const c = await client(k.transport, sleeps).getCredential("c1");
    expect(c?.id).toBe("c1");
    expect(sleeps).toHaveLength(3);
    expect(sleeps[1]).toBe(2000);
  });

  it("gives up after the attempt limit with a clear error naming method, path, status and request id", async () => {
    const k = fakeKeystone(Array.from({ length: 6 }, () => ok(503, { error: { message: "overloaded" } })));
    const err = await client(k.transport)
      .deleteCredential("c1")
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeystoneError);
    const e = err as KeystoneError;
    expect(e.code).toBe("E_KEYSTONE_HTTP");
    expect(e.message).toMatch(
      /^DELETE \/v3\/credentials\/c1 failed: 503; Keystone said: overloaded; request id req-abc; after 6 attempts/,
    );
  });

  it("does not retry a 400 and redacts the blob from Keystone's message", async () => {
    const k = fakeKeystone([ok(400, { error: { message: `Invalid input for field 'blob': ${BLOB}` } })]);
    const err = (await client(k.transport)
      .updateCredentialBlob("c1", BLOB)
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.status).toBe(400);
    expect(err.message).not.toContain(BLOB);
    expect(err.message).toContain("[redacted]");
  });

  it("renews the token once on 401, then reports E_KEYSTONE_AUTH", async () => {
    const k = fakeKeystone([ok(401), ok(200, cred("c1", BLOB))]);
    const c = client(k.transport);
    await c.getCredential("c1");
    expect(k.tokens()).toBe(2);
    const k2 = fakeKeystone([ok(401), ok(401)]);
    const err = (await client(k2.transport)
      .getCredential("c1")
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_AUTH");
    expect(k2.tokens()).toBe(2);
  });

  it("shares one token between concurrent requests", async () => {
    const k = fakeKeystone(Array.from({ length: 10 }, () => ok(200, cred("c1", BLOB))));
    const c = client(k.transport);
    await Promise.all(Array.from({ length: 5 }, () => c.getCredential("c1")));
    expect(k.tokens()).toBe(1);
  });

  it("keeps a short-lived token for three quarters of its life instead of renewing it per request", async () => {
    let now = Date.now();
    const k = fakeKeystone(
      Array.from({ length: 4 }, () => ok(200, cred("c1", BLOB))),
      { tokenTtlMs: 120_000 },
    );
    const c = new KeystoneClient(auth, { transport: k.transport, now: () => now, sleep: async () => {} });
    await c.getCredential("c1");
    now += 60_000; // half its life gone: still used
    await c.getCredential("c1");
    expect(k.tokens()).toBe(1);
    now += 40_000; // 20 s left of 120 s: inside the last quarter, renewed
    await c.getCredential("c1");
    expect(k.tokens()).toBe(2);
  });

  it("lists again when a credential deleted meanwhile failed Keystone 22's list with 404; a 404 that stays is reported", async () => {
    const gone = ok(404, { error: { message: "Could not find credential: c0." } });
    const k = fakeKeystone([gone, ok(200, list(["c1", BLOB]))]);
    expect((await client(k.transport).listTotpCredentials("u1")).map((c) => c.id)).toEqual(["c1"]);
    expect(k.log.filter((r) => r.url.includes("/credentials?")).length).toBe(2);

    const fleet = fakeKeystone([gone, gone, ok(200, list(["c1", BLOB]))]);
    const index = await client(fleet.transport).listAllTotpCredentials();
    expect(index.all?.get("u1")?.map((c) => c.id)).toEqual(["c1"]);

    const sleeps: number[] = [];
    const stays = fakeKeystone(Array.from({ length: LIST_NOT_FOUND_ATTEMPTS + 1 }, () => gone));
    const err = (await client(stays.transport, sleeps)
      .listTotpCredentials("u1")
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_NOT_FOUND");
    expect(stays.log.filter((r) => r.url.includes("/credentials?")).length).toBe(LIST_NOT_FOUND_ATTEMPTS);
    // Longer pauses each time: deletions come in runs.
    expect(sleeps).toEqual([50, 100, 150, 200]);
  });

  it("falls back to one list per user when deletions fail every sending of the fleet-wide list", async () => {
    const gone = ok(404, { error: { message: "Could not find credential: c0." } });
    const k = fakeKeystone([
      ...Array.from({ length: LIST_NOT_FOUND_ATTEMPTS }, () => gone),
      ok(200, list(["c1", BLOB])),
    ]);
    const index = await client(k.transport).listAllTotpCredentials();
    expect(index.all).toBeUndefined();
    expect((await index.of("u1")).map((c) => c.id)).toEqual(["c1"]);
    expect(k.log.at(-1)?.url).toContain("user_id=u1");
  });

  it("maps 403 to E_KEYSTONE_FORBIDDEN with a hint about the admin role", async () => {
    const k = fakeKeystone([ok(403, { error: { message: "You are not authorized" } })]);
    const err = (await client(k.transport)
      .listTotpCredentials("u1")
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_FORBIDDEN");
    expect(err.message).toMatch(/admin role/);
  });

  it("keeps the password, token and blob out of the error even when Keystone's own message echoes them", async () => {
    const boom = ok(500, { error: { message: `boom s3cret-password tok-1 ${BLOB}` } });
    // A 500 on create is ambiguous: before each new POST the user's credentials are searched
    // for the blob (not there), until the attempts run out on Keystone's own error.
    const k = fakeKeystone([boom, ...Array.from({ length: 5 }, () => [ok(200, list()), boom]).flat()]);
    const err = (await client(k.transport)
      .createTotpCredential("u1", BLOB)
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err).toBeInstanceOf(KeystoneError);
    expect(err.code).toBe("E_KEYSTONE_HTTP");
    expect(err.keystoneMessage).toBe("boom [redacted] [redacted] [redacted]");
    expect(err.message).toContain("POST /v3/credentials failed: 500; Keystone said: boom [redacted]");
    for (const secret of ["s3cret-password", "tok-1", BLOB]) expect(err.message).not.toContain(secret);
  });
});

describe("KeystoneClient.createTotpCredential", () => {
  it("after a reset finds the credential Keystone did store and does not POST again", async () => {
    const k = fakeKeystone([reset, ok(200, list(["c9", BLOB]))]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB);
    expect(c.id).toBe("c9");
    expect(k.log.filter((r) => r.method === "POST" && r.url.endsWith("/credentials"))).toHaveLength(1);
  });

  it("after a reset that lost the request, POSTs again", async () => {
    const k = fakeKeystone([reset, ok(200, list()), ok(201, cred("c2", BLOB)), ok(200, list(["c2", BLOB]))]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB);
    expect(c.id).toBe("c2");
    expect(k.log.filter((r) => r.method === "POST" && r.url.endsWith("/credentials"))).toHaveLength(2);
  });

  it("removes a duplicate left by a raced retry", async () => {
    const deleted: string[] = [];
    const k = fakeKeystone([
      reset,
      ok(200, list()),
      ok(201, cred("c2", BLOB)),
      ok(200, list(["c1", BLOB], ["c2", BLOB], ["c3", "OTHERSECRETOTHERSECRETOTHERSE"])),
      (req) => {
        deleted.push(req.url);
        return { status: 204, headers: {}, body: undefined };
      },
    ]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB);
    expect(c.id).toBe("c2");
    expect(deleted).toEqual(["http://keystone.test/v3/credentials/c1"]);
  });

  it("retries a refused connection (nothing was sent) without looking up", async () => {
    const k = fakeKeystone([refused, ok(201, cred("c1", BLOB))]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB);
    expect(c.id).toBe("c1");
    expect(k.log.filter((r) => r.method === "GET")).toHaveLength(0);
  });

  it("does not retry a definite refusal such as 404 (no such user)", async () => {
    const k = fakeKeystone([ok(404, { error: { message: "Could not find user" } })]);
    const err = (await client(k.transport)
      .createTotpCredential("u1", BLOB)
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_NOT_FOUND");
    expect(k.log.filter((r) => r.method === "POST" && r.url.endsWith("/credentials"))).toHaveLength(1);
  });
});

describe("tuning from the environment", () => {
  it("takes in-range whole numbers and ignores anything else", async () => {
    const { clientOptionsFromEnv } = await import("../../../../lib/keystone/client.ts");
    expect(
      clientOptionsFromEnv({
        KEYSTONE_TOTP_MAX_ATTEMPTS: "3",
        KEYSTONE_TOTP_BACKOFF_MAX_MS: "500",
        KEYSTONE_TOTP_REQUEST_TIMEOUT_MS: "2000",
      }),
    ).toEqual({ maxAttempts: 3, backoffMaxMs: 500, timeoutMs: 2000 });
    expect(
      clientOptionsFromEnv({
        KEYSTONE_TOTP_MAX_ATTEMPTS: "0",
        KEYSTONE_TOTP_BACKOFF_MAX_MS: "1e3",
        KEYSTONE_TOTP_REQUEST_TIMEOUT_MS: "-5",
      }),
    ).toEqual({});
  });
});

describe("KeystoneClient concurrency limit", () => {
  it("never has more than maxInFlight requests in flight, even when callers arrive as one finishes", async () => {
    const MAX = 2;
    const pending: Array<() => void> = [];
    let inFlight = 0;
    let peak = 0;
    const transport: Transport = {
      send(req) {
        if (req.url.includes("/auth/tokens")) {
          return Promise.resolve({
            status: 201,
            headers: { "x-subject-token": "tok-1" },
            body: { token: { expires_at: new Date(Date.now() + 3_600_000).toISOString(), roles: [] } },
          });
        }
        inFlight++;
        peak = Math.max(peak, inFlight);
        // Answered when the test says so; returned as is, so that its resumption order is the client's.
        return new Promise<HttpResponse>((resolve) =>
          pending.push(() => {
            inFlight--;
            resolve({ status: 200, headers: {}, body: cred("c1", BLOB) });
          }),
        );
      },
      close() {},
    };
    const c = new KeystoneClient(auth, { transport, maxInFlight: MAX });
    await c.whoami();
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < MAX + 2; i++) calls.push(c.getCredential("c1"));
    // Finish one request at a time; right after each, a new caller arrives, as a fleet's next
    // user does while earlier requests are still queued.
    for (let round = 0; round < 20; round++) {
      await new Promise((r) => setImmediate(r));
      pending.shift()?.();
      calls.push(c.getCredential("c1"));
    }
    while (pending.length > 0 || inFlight > 0) {
      await new Promise((r) => setImmediate(r));
      pending.shift()?.();
    }
    await Promise.all(calls);
    expect(peak).toBe(MAX);
  });
});

describe("KeystoneClient lists under Keystone's list_limit", () => {
  /** A Keystone whose lists hold at most LIMIT entries, marked truncated as Keystone 22 does. */
  const LIMIT = 5;
  const users = Array.from({ length: 8 }, (_, i) => ({ id: `id${i}`, name: `user${i}`, domain_id: "d1" }));
  const creds = users.flatMap((u, i) =>
    Array.from({ length: i === 0 ? 2 : 1 }, (_, j) => ({ id: `c${i}-${j}`, user_id: u.id, type: "totp", blob: BLOB })),
  );
  function limitedKeystone(limit: number | undefined) {
    const gets: string[] = [];
    const cut = <T>(key: string, all: T[]) => {
      const truncated = limit !== undefined && all.length > limit;
      return { [key]: truncated ? all.slice(0, limit) : all, ...(truncated ? { truncated: true } : {}) };
    };
    const k = fakeKeystone([]);
    const transport: Transport = {
      async send(req) {
        if (req.url.includes("/auth/tokens")) return k.transport.send(req);
        const url = new URL(req.url);
        gets.push(`${url.pathname}${url.search}`);
        const q = url.searchParams;
        if (url.pathname.endsWith("/users")) {
          return {
            status: 200,
            headers: {},
            body: cut(
              "users",
              users.filter((u) => !q.get("name") || u.name === q.get("name")),
            ),
          };
        }
        const mine = creds.filter((c) => !q.get("user_id") || c.user_id === q.get("user_id"));
        return { status: 200, headers: {}, body: cut("credentials", mine) };
      },
      close() {},
    };
    return { client: new KeystoneClient(auth, { transport }), gets };
  }

  it("finds every user asked for in a domain whose list is cut short, with one lookup per user not received", async () => {
    const { client: c, gets } = limitedKeystone(LIMIT);
    const found = await c.listUsers("d1", ["user1", "user6", "user7", "nobody"]);
    expect(found.map((u) => u.name)).toEqual(expect.arrayContaining(["user1", "user6", "user7"]));
    expect(found.map((u) => u.name)).not.toContain("nobody");
    // the domain's list, then user6, user7 and nobody by name (user1 came with the list)
    expect(gets).toHaveLength(4);
  });

  it("lists a domain whose list is whole in one request, and refuses a cut list it cannot narrow", async () => {
    const whole = limitedKeystone(undefined);
    expect(await whole.client.listUsers("d1", ["user7"])).toHaveLength(users.length);
    expect(whole.gets).toHaveLength(1);
    const err = (await limitedKeystone(LIMIT)
      .client.listUsers("d1")
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_HTTP");
    expect(err.message).toMatch(/GET \/v3\/users failed.*list_limit/);
  });

  it("misses no TOTP credential when the fleet-wide list is cut short: each user is listed once, when asked", async () => {
    const { client: c, gets } = limitedKeystone(LIMIT);
    const index = await c.listAllTotpCredentials();
    expect(index.all).toBeUndefined();
    for (const u of users) {
      const want = creds.filter((x) => x.user_id === u.id).map((x) => x.id);
      expect((await index.of(u.id)).map((x) => x.id)).toEqual(want);
    }
    await index.of("id0");
    expect(gets).toHaveLength(1 + users.length);
    const whole = limitedKeystone(undefined);
    const all = await whole.client.listAllTotpCredentials();
    expect([...(all.all?.values() ?? [])].flat()).toHaveLength(creds.length);
    expect((await all.of("id0")).map((x) => x.id)).toEqual(["c0-0", "c0-1"]);
    expect(whole.gets).toHaveLength(1);
  });

  it("refuses a user's own credential list when it is cut short, naming list_limit", async () => {
    const err = (await limitedKeystone(1)
      .client.listTotpCredentials("id0")
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_HTTP");
    expect(err.message).toMatch(/list_limit.*user id0 holds more TOTP credentials/);
  });

  it("follows links.next where Keystone pages, sending the token only to the configured auth URL", async () => {
    const k = fakeKeystone([
      ok(200, {
        users: users.slice(0, 3),
        links: { next: "https://elsewhere.example/v3/users?domain_id=d1&marker=id2" },
      }),
      ok(200, { users: users.slice(3), links: { next: null } }),
    ]);
    const found = await client(k.transport).listUsers("d1");
    expect(found).toHaveLength(users.length);
    const pages = k.log.filter((r) => r.method === "GET").map((r) => r.url);
    expect(pages).toEqual([
      "http://keystone.test/v3/users?domain_id=d1",
      "http://keystone.test/v3/users?domain_id=d1&marker=id2",
    ]);
  });
});

describe("KeystoneClient.createTotpCredential on a Keystone that returns no TOTP blobs (30 and later)", () => {
  const TAG = { v: 1, owner: "proj/stack/enrollment/alice@Default", at: "2026-12-06T10:00:00.000Z" };
  const blobless = (...items: [string, unknown][]) => ({
    credentials: items.map(([id, tag]) => ({
      id,
      user_id: "u1",
      type: "totp",
      ...(tag ? { keystone_totp: tag } : {}),
    })),
  });
  const posts = (log: HttpRequest[]) => log.filter((r) => r.method === "POST" && r.url.endsWith("/credentials"));

  it("after a reset finds the credential by its tag and does not POST again", async () => {
    const other = { ...TAG, at: "2026-12-05T10:00:00.000Z" };
    const k = fakeKeystone([reset, ok(200, blobless(["c8", other], ["c9", TAG], ["c7", undefined]))]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB, TAG);
    expect(c.id).toBe("c9");
    expect(posts(k.log)).toHaveLength(1);
  });

  it("after a lost request (no credential with its tag) POSTs again, and drops a raced copy by tag", async () => {
    const deleted: string[] = [];
    const k = fakeKeystone([
      reset,
      ok(200, blobless(["c0", undefined])),
      ok(201, { credential: { id: "c2", user_id: "u1", type: "totp", keystone_totp: TAG } }),
      ok(200, blobless(["c0", undefined], ["c1", TAG], ["c2", TAG])),
      (req) => {
        deleted.push(req.url);
        return { status: 204, headers: {}, body: undefined };
      },
    ]);
    const c = await client(k.transport).createTotpCredential("u1", BLOB, TAG);
    expect(c.id).toBe("c2");
    expect(posts(k.log)).toHaveLength(2);
    expect(deleted).toEqual(["http://keystone.test/v3/credentials/c1"]);
  });

  it("without a tag, cannot tell its credential from others: gives up instead of POSTing a second copy", async () => {
    const k = fakeKeystone([reset, ok(200, blobless(["c5", undefined]))]);
    const err = (await client(k.transport)
      .createTotpCredential("u1", BLOB)
      .catch((e: unknown) => e)) as KeystoneError;
    expect(err.code).toBe("E_KEYSTONE_NETWORK");
    expect(posts(k.log)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------- send and authenticateOnce:
// the session's raw methods, for callers that read Keystone's answers themselves (the doctor).

const TOKEN: HttpResponse = {
  status: 201,
  headers: { "x-subject-token": "tok-1" },
  body: { token: { expires_at: new Date(Date.now() + 3_600_000).toISOString(), user: { id: "op" } } },
};

/** A session over a transport answering token requests with `token` and the rest with `answer`. */
function scripted(answer: HttpResponse, token: HttpResponse = TOKEN) {
  const log: HttpRequest[] = [];
  const transport: Transport = {
    async send(req) {
      log.push(req);
      return req.url.includes("/auth/tokens") ? token : answer;
    },
    close() {},
  };
  const sleeps: number[] = [];
  const session = new KeystoneClient(auth, {
    transport,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { log, session, sleeps };
}

describe("KeystoneSession.send", () => {
  it("sends once with the token and returns any status: no retry, no renewal, no error", async () => {
    for (const status of [401, 403, 503]) {
      const k = scripted({ status, headers: {}, body: {} });
      const res = await k.session.send("GET", "/users/x", { headers: { "user-agent": "probe" } });
      expect(res.status).toBe(status);
      expect(k.log.map((r) => r.url)).toEqual([
        "http://keystone.test/v3/auth/tokens?nocatalog",
        "http://keystone.test/v3/users/x",
      ]);
      expect(k.log[1]?.headers).toEqual({ "user-agent": "probe", "x-auth-token": "tok-1" });
      expect(k.sleeps).toEqual([]);
      expect(k.session.stats).toMatchObject({ requests: 2, tokensIssued: 1, retries: 0 });
    }
  });

  it("sends no token when asked, and no body when none is given", async () => {
    const k = scripted({ status: 200, headers: {}, body: {} });
    await k.session.send("GET", "", { withoutToken: true });
    await k.session.send("POST", "/auth/tokens", { json: { a: 1 }, withoutToken: true });
    expect(k.log[0]).toEqual({
      method: "GET",
      url: "http://keystone.test/v3",
      headers: { "user-agent": "keystone-totp" },
    });
    expect(k.log).toHaveLength(2);
    expect(k.log[1]).toEqual({
      method: "POST",
      url: "http://keystone.test/v3/auth/tokens",
      headers: { "user-agent": "keystone-totp" },
      json: { a: 1 },
    });
  });
  it("carries the token as it is, even near its expiry, where call would renew it", async () => {
    const soon: HttpResponse = {
      ...TOKEN,
      body: { token: { expires_at: new Date(Date.now() + 1_000).toISOString(), user: { id: "op" } } },
    };
    const k = scripted({ status: 200, headers: {}, body: {} }, soon);
    await k.session.authenticateOnce();
    await k.session.send("GET", "/users/x");
    expect(k.log.map((r) => r.headers?.["x-auth-token"])).toEqual([undefined, "tok-1"]);
    expect(k.session.stats.tokensIssued).toBe(1);
  });
});

describe("KeystoneSession.authenticateOnce", () => {
  it("keeps the token it gets for every later request", async () => {
    const k = scripted({ status: 200, headers: {}, body: { users: [] } });
    const { response, adopted } = await k.session.authenticateOnce({ "user-agent": "probe" });
    expect(response.status).toBe(201);
    expect(adopted).toBe(true);
    await k.session.call("GET", "/users", { retry: true });
    expect(k.log.filter((r) => r.url.includes("/auth/tokens"))).toHaveLength(1);
    expect(k.log[0]?.headers).toEqual({ "user-agent": "probe" });
    expect(k.log[1]?.headers?.["x-auth-token"]).toBe("tok-1");
    expect(k.session.stats.tokensIssued).toBe(1);
  });

  it("returns a refusal as it came, once, and keeps nothing", async () => {
    const refused: HttpResponse = { status: 401, headers: {}, body: { error: { message: "no" } } };
    const k = scripted({ status: 200, headers: {}, body: {} }, refused);
    const { response, adopted } = await k.session.authenticateOnce();
    expect(response).toBe(refused);
    expect(adopted).toBe(false);
    expect(k.log).toHaveLength(1);
    expect(k.session.stats.tokensIssued).toBe(0);
  });

  it("does not keep a token without an expiry", async () => {
    const noExpiry: HttpResponse = { status: 201, headers: { "x-subject-token": "t" }, body: { token: {} } };
    const k = scripted({ status: 200, headers: {}, body: {} }, noExpiry);
    expect((await k.session.authenticateOnce()).adopted).toBe(false);
  });
});

describe("KeystoneClient.writeUserMfa against a Keystone whose cache can keep the user from before", () => {
  const RULES = [["password", "totp"]];
  const MARK = { v: 1, previous: { enabled: null, rules: null } };
  const user = (options: Record<string, unknown>, marker?: unknown) => ({
    user: { id: "u1", name: "alice", domain_id: "default", options, ...(marker ? { keystone_totp: marker } : {}) },
  });
  const written = user({ multi_factor_auth_enabled: true, multi_factor_auth_rules: RULES }, MARK);
  const before = user({});

  it("sends the write twice, a pause apart, and reads the user back once when Keystone serves it", async () => {
    const sleeps: number[] = [];
    const k = fakeKeystone([ok(200, written), ok(200, written), ok(200, written)]);
    const u = await client(k.transport, sleeps).writeUserMfa("u1", { enabled: true, rules: RULES }, MARK);
    expect(u.options.multi_factor_auth_rules).toEqual(RULES);
    const sent = k.log.filter((r) => !r.url.includes("/auth/"));
    expect(sent.map((r) => r.method)).toEqual(["PATCH", "PATCH", "GET"]);
    expect(new Set(sent.filter((r) => r.method === "PATCH").map((r) => JSON.stringify(r.json))).size).toBe(1);
    // A read that reached the database before the first write has the pause to store its copy,
    // which the second write then drops.
    expect(sleeps).toEqual([MFA_SETTLE_MIN_MS]);
  });

  it("pauses as long as the first write took when that is longer, up to the most", async () => {
    /** The pause of one write whose PATCHes each take `latencyMs` on the session's clock. */
    const pauseAfter = async (latencyMs: number) => {
      let now = 0;
      const sleeps: number[] = [];
      const k = fakeKeystone([ok(200, written), ok(200, written), ok(200, written)]);
      const c = new KeystoneClient(auth, {
        transport: {
          send: async (req) => {
            if (req.method === "PATCH") now += latencyMs;
            return k.transport.send(req);
          },
          close: () => k.transport.close(),
        },
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        now: () => now,
        random: () => 0.5,
      });
      await c.writeUserMfa("u1", { enabled: true, rules: RULES }, MARK);
      return sleeps;
    };
    expect(await pauseAfter(700)).toEqual([700]);
    expect(await pauseAfter(5_000)).toEqual([MFA_SETTLE_MAX_MS]);
  });

  it("writes again while Keystone serves the earlier options, and returns once it serves the new", async () => {
    const sleeps: number[] = [];
    // The second read is a copy with the rules and without the marker: a read that landed mid-write.
    const k = fakeKeystone([
      ok(200, written),
      ok(200, written),
      ok(200, before),
      ok(200, written),
      ok(200, written),
      ok(200, user({ multi_factor_auth_enabled: true, multi_factor_auth_rules: RULES })),
      ok(200, written),
      ok(200, written),
      ok(200, written),
    ]);
    await client(k.transport, sleeps).writeUserMfa("u1", { enabled: true, rules: RULES }, MARK);
    const sent = k.log.filter((r) => !r.url.includes("/auth/"));
    expect(sent.map((r) => r.method)).toEqual([
      "PATCH",
      "PATCH",
      "GET",
      "PATCH",
      "PATCH",
      "GET",
      "PATCH",
      "PATCH",
      "GET",
    ]);
    // Every write carries the same options and marker.
    expect(new Set(sent.filter((r) => r.method === "PATCH").map((r) => JSON.stringify(r.json))).size).toBe(1);
    expect(sleeps).toEqual([MFA_SETTLE_MIN_MS, 2 * MFA_SETTLE_MIN_MS, 4 * MFA_SETTLE_MIN_MS]);
  });

  it("takes rules in another order, and a removal served as an absent option, as what was written", async () => {
    const k = fakeKeystone([
      ok(200, before),
      ok(200, before),
      ok(200, user({ multi_factor_auth_enabled: true, multi_factor_auth_rules: [["totp", "password"], ["external"]] })),
      ok(200, before),
      ok(200, before),
      ok(200, before),
    ]);
    const c = client(k.transport);
    await c.writeUserMfa("u1", { enabled: true, rules: [["external"], ["password", "totp"]] }, null);
    await c.writeUserMfa("u1", { enabled: null, rules: null }, null);
    expect(k.log.filter((r) => r.method === "PATCH")).toHaveLength(4);
  });

  it("gives up with E_KEYSTONE_STALE after four rounds that Keystone keeps answering with the earlier options", async () => {
    const script: Handler[] = [];
    for (let i = 0; i < 4; i++) script.push(ok(200, written), ok(200, written), ok(200, before));
    const k = fakeKeystone(script);
    const e = await client(k.transport)
      .writeUserMfa("u1", { enabled: true, rules: RULES }, MARK)
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(KeystoneError);
    expect((e as KeystoneError).code).toBe("E_KEYSTONE_STALE");
    expect((e as KeystoneError).message).toMatch(
      /PATCH \/v3\/users\/u1 .*after 4 attempts.*earlier MFA options after 8 writes/,
    );
    expect(k.log.filter((r) => r.method === "PATCH")).toHaveLength(8);
  });

  it("a user deleted between the two sendings: the first one's answer, nothing more sent", async () => {
    const k = fakeKeystone([ok(200, written), ok(404, { error: { message: "not found" } })]);
    const u = await client(k.transport).writeUserMfa("u1", { enabled: true, rules: RULES }, MARK);
    expect(u.id).toBe("u1");
    expect(k.log.filter((r) => !r.url.includes("/auth/")).map((r) => r.method)).toEqual(["PATCH", "PATCH"]);
  });

  it("a user deleted meanwhile: the write's answer, no further write", async () => {
    const k = fakeKeystone([ok(200, written), ok(200, written), ok(404, { error: { message: "not found" } })]);
    const u = await client(k.transport).writeUserMfa("u1", { enabled: true, rules: RULES }, MARK);
    expect(u.id).toBe("u1");
    expect(k.log.filter((r) => r.method === "PATCH")).toHaveLength(2);
  });
});
