/**
 * One MFA login per run for an operator whose own Keystone account has MFA rules.
 *
 * A TOTP code logs in once on Keystone 30 (and for 30-60 s anywhere), yet a run has many
 * processes that talk to Keystone: the command itself, the Pulumi engine's program and every
 * dynamic-provider process the engine starts. So the command logs in once, with the password
 * and the code (`OS_PASSCODE`, clouds.yaml `passcode`, `openstack:passcode`, or typed at the
 * prompt on a terminal), and puts the token in {@link RUN_TOKEN_ENV} of its own environment,
 * which the engine and the providers inherit: each re-authenticates with `methods: ["token"]`
 * (see lib/keystone/auth.ts). `OS_PASSCODE` is removed from the environment, so the code never
 * reaches another process. The run is then bounded by that token's lifetime.
 *
 * @see docs/operator-mfa.md
 */
import { createInterface } from "node:readline/promises";
import { ConfigError, KeystoneError } from "../../lib/errors.ts";
import {
  type ConfigGetter,
  type KeystoneAuth,
  RUN_TOKEN_ENV,
  RUN_TOKEN_URL_ENV,
  resolveKeystoneAuth,
} from "../../lib/keystone/auth.ts";
import { clientOptionsFromEnv, KeystoneClient, type KeystoneClientOptions } from "../../lib/keystone/client.ts";

/** What {@link loginOnceForRun} did. */
export type RunLogin =
  /** Nothing to do: no MFA (or no settings, or a token given): every process logs in as before. */
  | { readonly kind: "none" }
  /** An earlier command of this run (e.g. `shards`) already handed a token over. */
  | { readonly kind: "inherited" }
  /** Logged in with password + TOTP; the token is in the environment until `expiresAtMs`. */
  | { readonly kind: "mfa"; readonly expiresAtMs: number };

/** Seams of {@link loginOnceForRun}; every field optional. */
export interface RunLoginOptions {
  /** Stack configuration (`openstack:*`), as the program and the providers read it. */
  readonly config?: ConfigGetter;
  /** Environment read and completed; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Whether the operator can be asked for a code; default `process.stdin.isTTY`. */
  readonly interactive?: boolean;
  /** Asks for the code; default a line read from the terminal. */
  readonly prompt?: (question: string) => Promise<string>;
  /** Client seams (tests). */
  readonly client?: KeystoneClientOptions;
  /** Where notes go; default stderr. */
  readonly write?: (text: string) => void;
  /** Clock, for the note on the token's expiry. */
  readonly now?: () => number;
}

async function promptLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Whether an error is Keystone's auth receipt for a password-only login (MFA rules). */
function isReceipt(e: unknown): e is KeystoneError {
  return e instanceof KeystoneError && e.code === "E_KEYSTONE_MFA" && e.path === "/v3/auth/tokens" && e.status === 401;
}

function who(a: KeystoneAuth): string {
  return a.userName ? `${a.userName}@${a.userDomainName ?? a.userDomainId ?? "Default"}` : (a.userId ?? "?");
}

/**
 * Logs the operator in once for this run when their account needs a TOTP code, and hands the
 * token to the run's other processes through the environment (see the module's comment).
 *
 * Without a code and without a terminal nothing is done here: the first token request of the
 * run then fails with `E_KEYSTONE_MFA` naming the ways to give one.
 *
 * @throws {KeystoneError} `E_KEYSTONE_MFA` / `E_KEYSTONE_AUTH` when the login with a code fails.
 * @throws {ConfigError} when the code typed at the prompt is not 6 digits.
 */
export async function loginOnceForRun(command: string, o: RunLoginOptions = {}): Promise<RunLogin> {
  const env = o.env ?? process.env;
  const write = o.write ?? ((t: string) => void process.stderr.write(t));
  if (env[RUN_TOKEN_ENV]) return { kind: "inherited" };
  let auth: KeystoneAuth;
  try {
    auth = resolveKeystoneAuth({ env, ...(o.config ? { config: o.config } : {}) });
  } catch (e) {
    if (e instanceof ConfigError) return { kind: "none" }; // the run reports it where it matters
    throw e;
  }
  if (auth.token) return { kind: "none" };
  const interactive = o.interactive ?? Boolean(process.stdin.isTTY);
  if (!auth.passcode && !interactive) return { kind: "none" };
  const clientOptions = { ...clientOptionsFromEnv(env), ...o.client };
  // Without a code this login only looks for a receipt: one attempt, so that a Keystone that is
  // down is not waited for twice (the run meets it again and reports it).
  let client = new KeystoneClient(auth, auth.passcode ? clientOptions : { maxAttempts: 1, ...clientOptions });
  let token: { readonly id: string; readonly expiresAtMs: number };
  try {
    try {
      token = await client.tokenForHandoff();
    } catch (e) {
      if (auth.passcode) throw e;
      // On a terminal without a code: only a receipt matters here; the run reports anything else.
      if (!isReceipt(e)) return { kind: "none" };
      const code = (
        await (o.prompt ?? promptLine)(
          `${command}: Keystone accepted the password of ${who(auth)}, whose account has MFA rules; ` +
            "TOTP code from its authenticator app: ",
        )
      ).trim();
      if (!/^[0-9]{6}$/.test(code)) {
        throw new ConfigError("the TOTP code must be the 6 digits the authenticator app shows; run again");
      }
      client.close();
      auth = { ...auth, passcode: code };
      client = new KeystoneClient(auth, clientOptions);
      token = await client.tokenForHandoff();
    }
  } finally {
    client.close();
  }
  if (!auth.passcode) return { kind: "none" }; // a terminal, and no MFA: nothing to hand over
  env[RUN_TOKEN_ENV] = token.id;
  env[RUN_TOKEN_URL_ENV] = auth.authUrl;
  // The code is spent: no other process may try it again (stack config keeps its own copy, which
  // every process ignores while the run token is set).
  delete env.OS_PASSCODE;
  const now = (o.now ?? Date.now)();
  const minutes = Math.max(0, Math.floor((token.expiresAtMs - now) / 60_000));
  write(
    `${command}: logged in once as ${who(auth)} with password and TOTP code; every process of this run uses that ` +
      `login's token, which expires at ${new Date(token.expiresAtMs).toISOString()} (in ${minutes} min): a run ` +
      "still going then stops with [E_KEYSTONE_MFA]; run again with a fresh code.\n" +
      `${command}: note: on Keystone 30, an account with MFA rules may not create, change or delete TOTP ` +
      "credentials or change MFA rules without a fresh code for each change (require_mfa_for_sensitive_account_actions): " +
      "such a run stops at the first refusal with [E_KEYSTONE_MFA]. Bulk runs there need an administrator account " +
      "without MFA rules (see docs/operator-mfa.md).\n",
  );
  return { kind: "mfa", expiresAtMs: token.expiresAtMs };
}
