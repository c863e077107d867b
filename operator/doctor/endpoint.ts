/**
 * The first two Keystone checks, before any token: `keystone.reachable` (Keystone answers at
 * the auth URL, as an identity v3 endpoint) and `keystone.tls` (the connection is verified
 * and its certificate not close to expiry, or plain HTTP stays on this machine). Both read
 * only; the reachability answer's `Date` header is kept for the clock check.
 */
import tls from "node:tls";
import type { KeystoneAuth } from "../../lib/keystone/auth.ts";
import { type HttpResponse, TransportError } from "../../lib/keystone/http.ts";
import { asRecord } from "../../lib/keystone/session.ts";
import { isLoopbackHost } from "../../lib/mail/config.ts";
import { DAY_MS } from "../../lib/util/clock.ts";
import type { ClockObservation } from "./clock.ts";
import {
  dateHeaderMs,
  KEYSTONE_CHECK_IDS,
  type KeystoneCheckContext,
  said,
  sendWithoutToken,
  transportProblem,
} from "./probe.ts";
import { type CheckResult, result } from "./types.ts";

/** A TLS certificate expiring within this many days is a warning. */
export const CERT_EXPIRY_WARNING_DAYS = 14;
/** How long to wait for a TLS handshake when reading the certificate, in ms. */
const TLS_INSPECT_TIMEOUT_MS = 5_000;

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
  const url = ctx.client.auth.authUrl;
  const started = Date.now();
  const sentAtMs = ctx.now();
  let res: HttpResponse;
  try {
    res = await sendWithoutToken(ctx.client, "GET", "");
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

/**
 * Reads the certificate over a TLS connection of its own (the transport does not show it),
 * verified as the client verifies; undefined when the handshake fails or takes too long.
 */
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
  const auth = ctx.client.auth;
  const url = new URL(auth.authUrl);
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
    const p = transportProblem(reach.transportFailure, auth.authUrl);
    return result(id, title, "failure", p.message, { fix: p.fix, code: p.code });
  }
  if (!reach.reachable) return result(id, title, "skipped", "Keystone did not answer");
  if (auth.insecure) {
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
  const facts = await inspectCertificate(auth);
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
