/**
 * A scripted Keystone for the doctor's unit tests (test/unit/operator/doctor): the operator's
 * settings, a transport that answers from a function and records every request, and the
 * doctor's client and probe session over it. The operator (`admin`, ID `op-id`) logs in with
 * its password; every other request the script does not answer gets a 500 naming it.
 */
import type { KeystoneAuth } from "../../lib/keystone/auth.ts";
import { KeystoneClient } from "../../lib/keystone/client.ts";
import { type HttpRequest, type HttpResponse, type Transport, TransportError } from "../../lib/keystone/http.ts";
import { type KeystoneCheckContext, ProbeSession, type ProbeTokenInfo } from "../../operator/doctor/probe.ts";
import { adminAuth, type KeystoneInstance } from "./keystone.ts";

/** The operator's password in the tests: no output may contain it. */
export const PASSWORD = "unit-doctor-password-1234";
/** The scripted Keystone's identity v3 root. */
export const AUTH_URL = "http://keystone.test/v3";

/** The scripted Keystone as the tests' instances are described: admin, project admin, Default. */
const INSTANCE: KeystoneInstance = {
  authUrl: AUTH_URL,
  username: "admin",
  password: PASSWORD,
  projectName: "admin",
  userDomainName: "Default",
  projectDomainName: "Default",
  port: 0,
  name: "scripted",
};

/** The operator's settings: user `admin` with {@link PASSWORD}, project `admin`, at `authUrl`. */
export function operatorAuth(authUrl = AUTH_URL): KeystoneAuth {
  return adminAuth(INSTANCE, authUrl);
}

/** A transport answering every request from `handler`; a TransportError it returns is thrown. */
export function scriptedTransport(handler: (req: HttpRequest) => HttpResponse | TransportError): Transport {
  return {
    async send(req) {
      const r = handler(req);
      if (r instanceof TransportError) throw r;
      return r;
    },
    close() {},
  };
}

/** The doctor's client over `t`, one attempt per request (as the doctor's own, give or take one). */
export function doctorClient(t: Transport, a = operatorAuth()): KeystoneClient {
  return new KeystoneClient(a, { transport: t, maxAttempts: 1 });
}

/** The context of the checks before the token, over `t`, on the real clock. */
export function checkContext(t: Transport, a = operatorAuth()): KeystoneCheckContext {
  return { client: doctorClient(t, a), now: Date.now };
}

/** An answer with a JSON body (or none). */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers, body };
}

/** An identity v3 version document. */
export const V3: HttpResponse = json(200, { version: { id: "v3.14", status: "stable" } });

/** What the operator's token says: user `op-id` with the admin role on project `admin`. */
export const OPERATOR_INFO: ProbeTokenInfo = {
  userId: "op-id",
  userName: "admin",
  userDomainId: "default",
  userDomainName: "Default",
  projectId: "p",
  projectName: "admin",
  projectDomainName: "Default",
  roles: ["admin"],
  issuedAt: undefined,
  dateHeader: undefined,
};

/** The operator's token answer (201, token `tok`, valid for an hour). */
export function operatorToken(): HttpResponse {
  return json(
    201,
    { token: { expires_at: new Date(Date.now() + 3_600_000).toISOString(), user: { id: "op-id" } } },
    { "x-subject-token": "tok" },
  );
}

/**
 * A scripted Keystone: `route` answers first (undefined: not scripted); then the method probe
 * lists password, token and totp, and the operator's password login gets {@link operatorToken}.
 * Every request is recorded in `seen`, in order.
 */
export function scriptedKeystone(route: (req: HttpRequest, path: string) => HttpResponse | undefined): {
  readonly seen: HttpRequest[];
  readonly t: Transport;
  readonly client: KeystoneClient;
  readonly session: ProbeSession;
} {
  const seen: HttpRequest[] = [];
  const t = scriptedTransport((req) => {
    seen.push(req);
    const path = req.url.replace(AUTH_URL, "");
    const r = route(req, path);
    if (r) return r;
    if (req.method === "POST" && path.startsWith("/auth/tokens")) {
      const body = req.json as { auth: { identity: { methods: string[] } } };
      if (body.auth.identity.methods[0] === "keystone-totp-probe") {
        return json(401, { error: { identity: { methods: ["password", "token", "totp"] } } });
      }
      const m = body.auth.identity.methods;
      if (m.includes("password") && !m.includes("totp") && JSON.stringify(body).includes("admin")) {
        return operatorToken();
      }
    }
    return json(500, { error: { message: `unscripted ${req.method} ${path}` } });
  });
  const client = doctorClient(t);
  return { seen, t, client, session: new ProbeSession(client, OPERATOR_INFO) };
}

/** Keystone 30's refusal of a change for want of the operator's MFA passcode. */
export const PASSCODE_403: HttpResponse = json(403, {
  error: { message: "This action requires a current MFA passcode in the OpenStack-MFA-Passcode header" },
});
