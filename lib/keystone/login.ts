/**
 * Logging in to Keystone as a user would: password, TOTP passcode, or both. Used to prove
 * that an enrolled user can log in, and by helpdesk checks. The token Keystone issues is
 * discarded, never returned or logged.
 *
 * @see https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-unscoped-authorization
 * @see https://docs.openstack.org/keystone/latest/admin/auth-totp.html
 */
import { createTransport, type Transport } from "./http.ts";

/** Who logs in: by ID, or by name and domain name. */
export type LoginUser = { readonly id: string } | { readonly name: string; readonly domain: string };

/** The factors presented. At least one must be given. */
export interface LoginFactors {
  readonly password?: string;
  /** The 6-digit code from the authenticator app. */
  readonly passcode?: string;
}

/** What Keystone answered. */
export interface LoginResult {
  /** HTTP status: 201 when a token was issued. */
  readonly status: number;
  /** True when a token was issued. */
  readonly ok: boolean;
  /** True when Keystone answered with an auth receipt: some factors passed, more are required. */
  readonly receipt: boolean;
  /** Methods that were accepted (from the token or the receipt). */
  readonly methods: readonly string[];
  /** Rules Keystone says must be satisfied (with a receipt). */
  readonly requiredMethods: readonly (readonly string[])[];
  /** Keystone's message when refused. */
  readonly message: string | undefined;
}

function userRef(u: LoginUser): Record<string, unknown> {
  return "id" in u ? { id: u.id } : { name: u.name, domain: { name: u.domain } };
}

/**
 * Authenticates as a user, unscoped.
 *
 * @param authUrl - identity v3 root, e.g. `http://127.0.0.1:5000/v3`.
 * @param transport - optional transport (TLS settings); default a plain one.
 */
export async function login(
  authUrl: string,
  user: LoginUser,
  factors: LoginFactors,
  transport: Transport = createTransport(),
): Promise<LoginResult> {
  const methods: string[] = [];
  const identity: Record<string, unknown> = {};
  if (factors.password !== undefined) {
    methods.push("password");
    identity.password = { user: { ...userRef(user), password: factors.password } };
  }
  if (factors.passcode !== undefined) {
    methods.push("totp");
    identity.totp = { user: { ...userRef(user), passcode: factors.passcode } };
  }
  const res = await transport.send({
    method: "POST",
    url: `${authUrl}/auth/tokens`,
    json: { auth: { identity: { methods, ...identity } } },
  });
  const body = (res.body ?? {}) as Record<string, unknown>;
  const token = (body.token ?? {}) as Record<string, unknown>;
  const receiptHeader = res.headers["openstack-auth-receipt"];
  const receiptBody = (body.receipt ?? {}) as Record<string, unknown>;
  const error = (body.error ?? {}) as Record<string, unknown>;
  const accepted = Array.isArray(token.methods)
    ? token.methods
    : Array.isArray(receiptBody.methods)
      ? receiptBody.methods
      : [];
  return {
    status: res.status,
    ok: res.status === 201,
    receipt: receiptHeader !== undefined,
    methods: accepted.map(String),
    requiredMethods: Array.isArray(body.required_auth_methods)
      ? (body.required_auth_methods as unknown[]).map((r) => (Array.isArray(r) ? r.map(String) : []))
      : [],
    message: typeof error.message === "string" ? error.message : undefined,
  };
}
