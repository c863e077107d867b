/**
 * The HTTP transport under the Keystone client: keep-alive connections, a timeout on every
 * request, TLS verification with an optional CA bundle, and JSON bodies. Retrying is the
 * client's business (it knows which calls are safe to repeat); this layer only classifies
 * failures so that the client can decide.
 */
import http from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";

/** Whole-request timeout, connect to last byte, in milliseconds. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Sockets kept per Keystone origin; Keystone serves about 8 requests at once on 2 cores. */
export const MAX_SOCKETS = 16;
/** Largest response body read, in bytes; a credential list for one user is a few KB. */
export const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Settings of one transport; normalised once by {@link createTransport}. */
export interface TransportOptions {
  /** Extra trusted CA certificates (PEM); default the system's store only. */
  readonly caPem?: string | undefined;
  /** Skip TLS verification; default false. */
  readonly insecure?: boolean | undefined;
  /** Per-request timeout in ms; default {@link REQUEST_TIMEOUT_MS}. */
  readonly timeoutMs?: number | undefined;
}

/** One HTTP request. */
export interface HttpRequest {
  readonly method: "GET" | "POST" | "PATCH" | "DELETE" | "HEAD";
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** JSON body, serialised here. */
  readonly json?: unknown;
}

/** A response, body already read and parsed when it is JSON. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  readonly body: unknown;
}

/** Why a request got no HTTP answer. */
export type TransportFailure =
  /** Connection refused or host unreachable: the request never reached Keystone. */
  | "refused"
  /** Reset or closed mid-request: Keystone may or may not have acted on it. */
  | "reset"
  /** No complete answer within the timeout: Keystone may or may not have acted on it. */
  | "timeout"
  /** TLS verification failed: retrying will not help. */
  | "tls"
  /** Anything else (DNS, malformed response). */
  | "other";

/** A request that got no HTTP answer. Carries no request body, headers or URL query. */
export class TransportError extends Error {
  readonly failure: TransportFailure;
  /** The Node.js error code, e.g. `ECONNRESET`. */
  readonly errno: string | undefined;

  constructor(failure: TransportFailure, message: string, errno: string | undefined, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "TransportError";
    this.failure = failure;
    this.errno = errno;
  }
}

const REFUSED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);
const RESET = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "UND_ERR_SOCKET", "ERR_STREAM_PREMATURE_CLOSE"]);

function classify(err: NodeJS.ErrnoException): TransportFailure {
  const code = err.code ?? "";
  if (REFUSED.has(code)) return "refused";
  if (RESET.has(code) || /socket hang up|other side closed/i.test(err.message)) return "reset";
  if (code === "ETIMEDOUT") return "timeout";
  if (code.startsWith("ERR_TLS") || /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|certificate/i.test(`${code} ${err.message}`)) {
    return "tls";
  }
  return "other";
}

/** Sends requests over one pair of keep-alive agents. */
export interface Transport {
  /**
   * Sends a request and reads the whole response.
   *
   * @throws {TransportError} when no HTTP answer arrived (refused, reset, timeout, TLS).
   */
  send(req: HttpRequest): Promise<HttpResponse>;
  /** Closes idle sockets so that the process can exit. */
  close(): void;
}

/** Creates a transport with its own keep-alive agents. */
export function createTransport(options: TransportOptions = {}): Transport {
  const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  const httpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets: MAX_SOCKETS,
    rejectUnauthorized: !(options.insecure ?? false),
    // Extra CAs are added to, not substituted for, the system store, like OS_CACERT in openstacksdk.
    ...(options.caPem ? { ca: [...rootCertificates, options.caPem] } : {}),
  });

  function send(req: HttpRequest): Promise<HttpResponse> {
    return new Promise<HttpResponse>((resolvePromise, reject) => {
      const url = new URL(req.url);
      const isHttps = url.protocol === "https:";
      const payload = req.json === undefined ? undefined : Buffer.from(JSON.stringify(req.json), "utf8");
      const headers: Record<string, string> = { accept: "application/json", ...req.headers };
      if (payload) {
        headers["content-type"] = "application/json";
        headers["content-length"] = String(payload.length);
      }
      const mod = isHttps ? https : http;
      let settled = false;
      const fail = (e: TransportError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(e);
      };
      const r = mod.request(url, { method: req.method, headers, agent: isHttps ? httpsAgent : httpAgent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            r.destroy(Object.assign(new Error("response too large"), { code: "E_TOO_LARGE" }));
            return;
          }
          chunks.push(c);
        });
        res.on("error", (e: NodeJS.ErrnoException) =>
          fail(new TransportError(classify(e), `response interrupted: ${e.code ?? e.message}`, e.code, e)),
        );
        res.on("end", () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown;
          if (text.length > 0) {
            try {
              body = JSON.parse(text);
            } catch {
              body = undefined;
            }
          }
          resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      });
      const timer = setTimeout(() => {
        r.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
      }, timeoutMs);
      r.on("error", (e: NodeJS.ErrnoException) => {
        const failure = classify(e);
        const what = failure === "timeout" ? `timed out after ${timeoutMs} ms` : (e.code ?? e.message);
        fail(new TransportError(failure, what, e.code, e));
      });
      r.end(payload);
    });
  }

  return {
    send,
    close(): void {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
