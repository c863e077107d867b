/**
 * A TCP proxy for fault injection in front of a real server (Keystone, SMTP). Faults are armed
 * for requests whose first bytes match a pattern, and fire once each (or `times` times, after
 * letting `skip` matching requests through).
 *
 * The proxy reads just enough HTTP/1.1 to see where each request starts (Node's agent sends one
 * request at a time per connection, never pipelined) and which status answered it, so it can
 * count requests, answer 5xx or 429 itself, hold or delay them, and play "Keystone stopped":
 * refuse new connections and reset every new request until {@link FaultProxy.up}.
 */
import net from "node:net";

/** Answer with this HTTP status instead of (or, with `after`, in place of) Keystone's answer. */
export interface StatusFault {
  readonly status: number;
  /** A Retry-After header value, e.g. "1" (seconds). */
  readonly retryAfter?: string;
  /**
   * Forward the request, let the server act on it, then replace its answer with this status:
   * the worst case for a non-idempotent POST.
   */
  readonly after?: boolean;
}

/** Forward the request only after this many milliseconds. */
export interface DelayFault {
  readonly delayMs: number;
}

/** What to do to a matching request. */
export type Fault =
  /** Reset the client connection before the request reaches the server (the request is lost). */
  | "reset-before"
  /** Let the server act on the request, then reset the client connection instead of answering. */
  | "reset-after"
  /**
   * The server goes down now: this request is reset before it reaches the server, new
   * connections are refused (ECONNREFUSED) and every later request on an open connection is
   * reset, until {@link FaultProxy.up}. Answers already on their way still arrive, like a
   * server that finishes its current requests when it is stopped.
   */
  | "down"
  /** Let the server act on the request and never answer (until the proxy is closed). */
  | "hold"
  | StatusFault
  | DelayFault;

/** Options of {@link FaultProxy.arm}. */
export interface ArmOptions {
  /** Let this many matching requests through untouched before the fault fires. Default 0. */
  readonly skip?: number;
}

/** One request seen by the proxy: its request line (query kept) and the status that answered it. */
export interface Exchange {
  /** `METHOD /path?query`; never headers or body (they hold tokens and passwords). */
  readonly request: string;
  /** The HTTP status the client received, or undefined while unanswered (or when it got none). */
  status: number | undefined;
  /** The fault that fired on it, if any. */
  fault: string | undefined;
  /** When the request arrived at the proxy, in ms since the epoch. */
  readonly at: number;
}

interface Armed {
  readonly pattern: RegExp;
  readonly fault: Fault;
  remaining: number;
  skip: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** Arms a fault for the next `times` requests whose start matches `pattern` (default once). */
  arm(pattern: RegExp, fault: Fault, times?: number, options?: ArmOptions): void;
  /** Drops every armed fault that has not fired yet. */
  disarm(): void;
  /** How many faults fired. */
  fired(): number;
  /** How many client connections were accepted. */
  connections(): number;
  /** Every request seen so far, in order of arrival. */
  exchanges(): readonly Exchange[];
  /**
   * How many requests seen so far match `pattern`, tested like {@link FaultProxy.arm}'s patterns
   * against `METHOD /path?query HTTP/1.1`.
   */
  count(pattern: RegExp): number;
  /** Requests held so far (see the `hold` fault). */
  held(): number;
  /**
   * Held requests the server has answered (the proxy swallowed the answer): the server acted
   * on them, so a POST among them is stored, and the client never learns it.
   */
  heldAnswered(): number;
  /** Whether the proxy plays a stopped server (see the `down` fault). */
  isDown(): boolean;
  /** The server goes down now, as with the `down` fault. */
  down(): Promise<void>;
  /**
   * The server dies now, as a power cut or a SIGKILL does: like {@link FaultProxy.down}, and
   * every open connection is reset at once, so answers not yet delivered (held ones included)
   * never arrive, whether or not the server had acted on the request.
   */
  crash(): Promise<void>;
  /** The server is back: listens again on the same port and forwards again. */
  up(): Promise<void>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/**
 * Write requests (not GET/HEAD, not a token request) that the server accepted, from exchange
 * `from` on, as `REQUEST -> STATUS`: what "no change at all" is checked against (a refused
 * probe is not a change).
 */
export function acceptedWrites(proxy: FaultProxy, from = 0): string[] {
  return proxy
    .exchanges()
    .slice(from)
    .filter((e) => !/^(GET|HEAD) /.test(e.request) && !e.request.startsWith("POST /v3/auth/tokens"))
    .filter((e) => e.status === undefined || e.status < 400)
    .map((e) => `${e.request} -> ${e.status}`);
}

const REQUEST_START = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/;
const RESPONSE_START = /^HTTP\/1\.[01] (\d{3})/;

const REASONS: Record<number, string> = {
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

function statusResponse(f: StatusFault): Buffer {
  const body = JSON.stringify({
    error: { code: f.status, title: REASONS[f.status] ?? "Error", message: "injected by the test proxy" },
  });
  const head = [
    `HTTP/1.1 ${f.status} ${REASONS[f.status] ?? "Error"}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    // Closing keeps the rest of the request (if its body comes in a later chunk) from being
    // read as the next request.
    "Connection: close",
    ...(f.retryAfter === undefined ? [] : [`Retry-After: ${f.retryAfter}`]),
  ];
  return Buffer.from(`${head.join("\r\n")}\r\n\r\n${body}`, "latin1");
}

function describeFault(f: Fault): string {
  if (typeof f === "string") return f;
  if ("delayMs" in f) return `delay ${f.delayMs} ms`;
  return `${f.after ? "after " : ""}${f.status}${f.retryAfter === undefined ? "" : ` retry-after ${f.retryAfter}`}`;
}

/** Starts a proxy from 127.0.0.1:<random port> to `upstreamPort` on 127.0.0.1. */
export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  const armed: Armed[] = [];
  const sockets = new Set<net.Socket>();
  const log: Exchange[] = [];
  let fired = 0;
  let connections = 0;
  let held = 0;
  let heldAnswered = 0;
  let isDown = false;
  let port = 0;

  /** Finds the fault for a request line, counting `skip` down; undefined to forward untouched. */
  function faultFor(line: string): Fault | undefined {
    for (const a of armed) {
      if (a.remaining <= 0 || !a.pattern.test(line)) continue;
      if (a.skip > 0) {
        a.skip--;
        return undefined;
      }
      a.remaining--;
      fired++;
      return a.fault;
    }
    return undefined;
  }

  function handle(client: net.Socket): void {
    connections++;
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    /** Requests forwarded and not yet answered, oldest first, with what to do to the answer. */
    const outstanding: { ex: Exchange; onAnswer: "pass" | "reset" | "hold" | StatusFault }[] = [];
    /** Whether the rest of the current request (body chunks) is dropped rather than forwarded. */
    let dropping = false;
    /** Whether upstream bytes are swallowed (the current answer is held or replaced). */
    let swallowing = false;
    /** Chunks are forwarded in order, some after a delay. */
    let queue = Promise.resolve();
    const forward = (chunk: Buffer, delayMs = 0) => {
      queue = queue.then(async () => {
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        if (!upstream.destroyed) upstream.write(chunk);
      });
    };
    const kill = () => {
      client.resetAndDestroy();
      upstream.destroy();
    };

    client.on("data", (chunk: Buffer) => {
      const head = chunk.subarray(0, 512).toString("latin1");
      const start = REQUEST_START.exec(head);
      if (!start) {
        if (!dropping) forward(chunk);
        return;
      }
      dropping = false;
      const ex: Exchange = {
        request: `${start[1]} ${start[2]}`,
        status: undefined,
        fault: undefined,
        at: Date.now(),
      };
      log.push(ex);
      if (isDown) {
        ex.fault = "down";
        kill();
        return;
      }
      const fault = faultFor(head);
      ex.fault = fault === undefined ? undefined : describeFault(fault);
      if (fault === "reset-before") {
        kill();
        return;
      }
      if (fault === "down") {
        void goDown();
        kill();
        return;
      }
      if (fault !== undefined && typeof fault === "object" && "status" in fault && !fault.after) {
        ex.status = fault.status;
        dropping = true;
        client.end(statusResponse(fault));
        upstream.destroy();
        return;
      }
      const delayMs = fault !== undefined && typeof fault === "object" && "delayMs" in fault ? fault.delayMs : 0;
      const onAnswer =
        fault === "reset-after"
          ? "reset"
          : fault === "hold"
            ? "hold"
            : fault !== undefined && typeof fault === "object" && "status" in fault
              ? fault
              : "pass";
      if (onAnswer === "hold") held++;
      outstanding.push({ ex, onAnswer });
      forward(chunk, delayMs);
    });

    upstream.on("data", (chunk: Buffer) => {
      const status = RESPONSE_START.exec(chunk.subarray(0, 16).toString("latin1"));
      if (status) {
        const o = outstanding.shift();
        swallowing = false;
        if (o && o.onAnswer === "pass") o.ex.status = Number(status[1]);
        if (o?.onAnswer === "reset") {
          kill();
          return;
        }
        if (o?.onAnswer === "hold") {
          heldAnswered++;
          swallowing = true;
          return;
        }
        if (o && typeof o.onAnswer === "object") {
          o.ex.status = o.onAnswer.status;
          client.end(statusResponse(o.onAnswer));
          upstream.destroy();
          return;
        }
      }
      if (!swallowing) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  }

  let server: net.Server | undefined;
  const listen = async (): Promise<void> => {
    const s = net.createServer(handle);
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        s.off("error", reject);
        resolve();
      });
    });
    server = s;
    port = (s.address() as net.AddressInfo).port;
  };
  const goDown = async (): Promise<void> => {
    if (isDown) return;
    isDown = true;
    const s = server;
    server = undefined;
    // close() only stops accepting: open connections stay, and their next request is reset.
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };

  await listen();
  return {
    get port() {
      return port;
    },
    arm(pattern, fault, times = 1, options = {}) {
      armed.push({ pattern, fault, remaining: times, skip: options.skip ?? 0 });
    },
    disarm() {
      armed.length = 0;
    },
    fired: () => fired,
    connections: () => connections,
    exchanges: () => log,
    count: (pattern) => log.filter((e) => pattern.test(`${e.request} HTTP/1.1`)).length,
    held: () => held,
    heldAnswered: () => heldAnswered,
    isDown: () => isDown,
    async down() {
      // Without waiting: close() resolves only once every open connection has ended.
      void goDown();
    },
    async crash() {
      const closing = goDown();
      for (const so of sockets) {
        if (!so.destroyed) so.resetAndDestroy();
      }
      await closing;
    },
    async up() {
      if (!isDown) return;
      isDown = false;
      await listen();
    },
    async close() {
      armed.length = 0;
      const s = server;
      server = undefined;
      for (const so of sockets) so.destroy();
      if (s) await new Promise<void>((r) => s.close(() => r()));
    },
  };
}
