/**
 * An HTTP-aware counting proxy for the benchmark: a TCP relay from 127.0.0.1:<random> to a
 * Keystone on loopback that reads the client's side of every connection as HTTP/1.1 (request
 * line, headers, Content-Length or chunked body, keep-alive and pipelining) and counts the
 * requests by method and by route. Bytes are relayed untouched.
 */
import net from "node:net";

/** Request counts since the last {@link CountingProxy.reset}. */
export interface RequestCounts {
  total: number;
  byMethod: Record<string, number>;
  /** `METHOD /v3/path` with IDs as `{id}` and query values dropped, e.g. `GET /v3/users?domain_id`. */
  byRoute: Record<string, number>;
  /** Requests that change Keystone: every non-GET/HEAD except token issuance (POST /v3/auth/tokens). */
  writes: number;
  /** POST /v3/auth/tokens. */
  tokens: number;
  connections: number;
  /** Requests and write-method requests by User-Agent (`keystone-totp`, `keystone-totp-doctor`, ...). */
  byAgent: Record<string, { requests: number; writes: number }>;
}

export interface CountingProxy {
  readonly port: number;
  counts(): RequestCounts;
  reset(): void;
  close(): Promise<void>;
}

function empty(): RequestCounts {
  return { total: 0, byMethod: {}, byRoute: {}, writes: 0, tokens: 0, connections: 0, byAgent: {} };
}

/** `/v3/credentials/0f3a...?x=1` -> `/v3/credentials/{id}?x` */
export function routeOf(target: string): string {
  const [path = "", query] = target.split("?", 2);
  const p = path
    .split("/")
    .map((seg) => (/^[0-9a-f]{16,64}$/i.test(seg) || /^[0-9a-f-]{36}$/i.test(seg) ? "{id}" : seg))
    .join("/");
  if (!query) return p;
  const keys = [...new URLSearchParams(query).keys()].sort();
  return `${p}?${keys.join("&")}`;
}

/** Parses one direction of an HTTP/1.1 connection, calling `onRequest` per request head. */
class RequestParser {
  private buf: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  private chunked = false;
  private readonly onRequest: (method: string, target: string, userAgent: string) => void;

  constructor(onRequest: (method: string, target: string, userAgent: string) => void) {
    this.onRequest = onRequest;
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, this.buf.length);
        this.buf = this.buf.subarray(take);
        this.bodyLeft -= take;
        if (this.bodyLeft > 0) return;
        continue;
      }
      if (this.chunked) {
        const eol = this.buf.indexOf("\r\n");
        if (eol < 0) return;
        const size = Number.parseInt(this.buf.subarray(0, eol).toString("latin1"), 16);
        if (size === 0) {
          // Last chunk: no trailers are sent by the clients measured here.
          const end = this.buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          this.buf = this.buf.subarray(end + 4);
          this.chunked = false;
          continue;
        }
        this.buf = this.buf.subarray(eol + 2);
        this.bodyLeft = size + 2;
        continue;
      }
      const end = this.buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString("latin1");
      this.buf = this.buf.subarray(end + 4);
      const [line = "", ...headers] = head.split("\r\n");
      const [method = "?", target = ""] = line.split(" ");
      let userAgent = "";
      for (const h of headers) {
        const i = h.indexOf(":");
        const name = h.slice(0, i).trim().toLowerCase();
        const value = h.slice(i + 1).trim();
        if (name === "content-length") this.bodyLeft = Number(value) || 0;
        if (name === "transfer-encoding" && /chunked/i.test(value)) this.chunked = true;
        if (name === "user-agent") userAgent = value;
      }
      this.onRequest(method, target, userAgent);
    }
  }
}

/** Starts a counting proxy to `upstream` (host:port). */
export async function startCountingProxy(upstreamHost: string, upstreamPort: number): Promise<CountingProxy> {
  let c = empty();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    c.connections++;
    const upstream = net.connect(upstreamPort, upstreamHost);
    sockets.add(client);
    sockets.add(upstream);
    const parser = new RequestParser((method, target, ua) => {
      c.total++;
      const agentKey = ua || "(none)";
      const agent = c.byAgent[agentKey] ?? { requests: 0, writes: 0 };
      c.byAgent[agentKey] = agent;
      agent.requests++;
      c.byMethod[method] = (c.byMethod[method] ?? 0) + 1;
      const route = `${method} ${routeOf(target)}`;
      c.byRoute[route] = (c.byRoute[route] ?? 0) + 1;
      if (method === "POST" && target.startsWith("/v3/auth/tokens")) c.tokens++;
      else if (method !== "GET" && method !== "HEAD") {
        c.writes++;
        agent.writes++;
      }
    });
    client.on("data", (chunk: Buffer) => {
      parser.push(chunk);
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    counts: () => structuredClone(c),
    reset() {
      c = empty();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
