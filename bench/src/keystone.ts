/**
 * A bare Keystone v3 client for the benchmark: one token (issued again when Keystone stops
 * taking it), one keep-alive agent, no other retries and no lookups. It is what the floor is
 * measured with (the least a client can send per credential), and what sets up and tears down
 * the bench users.
 */
import http from "node:http";
import { MARKER_ATTRIBUTE } from "../../lib/mfa/posture.ts";

/** Operator credentials, as in an openrc file. */
export interface RawAuth {
  readonly authUrl: string;
  readonly userName: string;
  readonly password: string;
  readonly userDomainName: string;
  readonly projectName: string;
  readonly projectDomainName: string;
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Record<string, unknown>;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in item order. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>) {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * A minimal client: every method is one HTTP request, except that a request refused with 401
 * after the token expired (Keystone's default expiration is an hour; a 10,000-user run takes
 * longer) gets a new token and is sent once more.
 */
export class RawKeystone {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly url: URL;
  private readonly auth: RawAuth;
  private token = "";
  /** The login under way, shared by the requests that found the token expired at once. */
  private renewing: Promise<void> | undefined;

  constructor(auth: RawAuth) {
    this.auth = auth;
    this.url = new URL(auth.authUrl.replace(/\/+$/, ""));
    if (this.url.protocol !== "http:") throw new Error("the bench talks plain HTTP to a loopback Keystone only");
  }

  close(): void {
    this.agent.destroy();
  }

  private send(method: string, path: string, json?: unknown, token = this.token): Promise<Answer> {
    const payload = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "keystone-totp-bench" };
    if (token) headers["x-auth-token"] = token;
    if (payload) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const r = http.request(
        `${this.url.href}${path}`,
        { method, headers, agent: this.agent, timeout: 60_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let body: Record<string, unknown> = {};
            try {
              body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
            } catch {
              body = {};
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          });
        },
      );
      r.on("timeout", () => r.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
      r.on("error", reject);
      r.end(payload);
    });
  }

  private async ok(method: string, path: string, json: unknown, accept: number[] = []): Promise<Answer> {
    const used = path.startsWith("/auth/tokens") ? "" : this.token;
    let a = await this.send(method, path, json, used);
    if (a.status === 401 && used !== "") {
      await this.renew(used);
      a = await this.send(method, path, json);
    }
    if ((a.status < 200 || a.status > 299) && !accept.includes(a.status)) {
      const msg = (a.body.error as { message?: string } | undefined)?.message ?? "";
      throw new Error(`Keystone ${method} ${path.split("?")[0]} -> ${a.status} ${msg}`);
    }
    return a;
  }

  /** A new token unless another request already replaced `expired`. */
  private async renew(expired: string): Promise<void> {
    if (this.token !== expired) return;
    this.renewing ??= this.login().finally(() => {
      this.renewing = undefined;
    });
    await this.renewing;
  }

  /** Issues the project-scoped admin token used by every later request. */
  async login(): Promise<void> {
    const a = this.auth;
    const res = await this.ok("POST", "/auth/tokens?nocatalog", {
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: a.userName, domain: { name: a.userDomainName }, password: a.password } },
        },
        scope: { project: { name: a.projectName, domain: { name: a.projectDomainName } } },
      },
    });
    const t = res.headers["x-subject-token"];
    this.token = String(Array.isArray(t) ? t[0] : t);
  }

  async domainId(name: string): Promise<string | undefined> {
    const res = await this.ok("GET", `/domains?${new URLSearchParams({ name })}`, undefined);
    const d = (res.body.domains as { id: string }[] | undefined)?.[0];
    return d?.id;
  }

  async ensureDomain(name: string): Promise<string> {
    const id = await this.domainId(name);
    if (id) return id;
    const res = await this.ok("POST", "/domains", {
      domain: { name, enabled: true, description: "keystone-totp benchmark (npm run bench); safe to delete" },
    });
    return String((res.body.domain as { id: string }).id);
  }

  async listUsers(domainId: string): Promise<{ id: string; name: string }[]> {
    const res = await this.ok("GET", `/users?${new URLSearchParams({ domain_id: domainId })}`, undefined);
    return (res.body.users as { id: string; name: string }[] | undefined) ?? [];
  }

  /** A user without a password: no bcrypt on Keystone's side, so setup stays cheap. */
  async createUser(name: string, domainId: string, email: string): Promise<string> {
    const res = await this.ok("POST", "/users", { user: { name, domain_id: domainId, email, enabled: true } });
    return String((res.body.user as { id: string }).id);
  }

  /** Deletes a user; Keystone deletes the user's credentials with it. 404 counts as done. */
  async deleteUser(id: string): Promise<void> {
    await this.ok("DELETE", `/users/${id}`, undefined, [404]);
  }

  /** The floor's request: one POST /v3/credentials. */
  async createTotp(userId: string, blob: string): Promise<string> {
    const res = await this.ok("POST", "/credentials", { credential: { type: "totp", user_id: userId, blob } });
    return String((res.body.credential as { id: string }).id);
  }

  /**
   * The other request of a first enrollment: the user's MFA rules and the tool's marker, as
   * the provider writes them (`lib/keystone/client.ts` writeUserMfa). `options` null and
   * `marker` null give the user back no options.
   */
  async patchUserMfa(
    userId: string,
    options: { enabled: boolean | null; rules: readonly (readonly string[])[] | null },
    marker: unknown,
  ): Promise<void> {
    await this.ok("PATCH", `/users/${userId}`, {
      user: {
        options: { multi_factor_auth_enabled: options.enabled, multi_factor_auth_rules: options.rules },
        [MARKER_ATTRIBUTE]: marker,
      },
    });
  }

  /** The read back of the safe floor: the user as Keystone serves it (logins share its cache). */
  async getUser(userId: string): Promise<void> {
    await this.ok("GET", `/users/${userId}`, undefined);
  }

  async deleteCredential(id: string): Promise<void> {
    await this.ok("DELETE", `/credentials/${id}`, undefined, [404]);
  }

  async listTotp(userId: string): Promise<string[]> {
    const res = await this.ok(
      "GET",
      `/credentials?${new URLSearchParams({ user_id: userId, type: "totp" })}`,
      undefined,
    );
    return ((res.body.credentials as { id: string }[] | undefined) ?? []).map((c) => c.id);
  }
}
