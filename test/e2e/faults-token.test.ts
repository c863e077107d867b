/**
 * Token expiry mid-run: a second real Keystone (instance `shorttoken` of scripts/keystone.sh,
 * started here and stopped afterwards) issues tokens that live 20 s, and an `up` is slowed
 * down (each credential create delayed at the proxy, two operations at a time) to last well
 * beyond that. The operator must notice nothing: exit 0, everyone enrolled once, and the
 * provider renewed its token on its own (more than one token issued during the creates).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultFleet, startFaultFleet } from "../support/fleet.ts";
import { type KeystoneInstance, keystoneInstance, REPO } from "../support/keystone.ts";
import { loginPasswordTotp } from "../support/posture.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { secretOfMessage } from "../support/smtp.ts";

const run = promisify(execFile);
/**
 * The instance: its own port (KEYSTONE_TOTP_SHORTTOKEN_PORT, by default `auto`: a free one, not
 * the default instance's), tokens of TOKEN_SECONDS.
 */
const NAME = "shorttoken";
const PORT = process.env.KEYSTONE_TOTP_SHORTTOKEN_PORT ?? "auto";
const TOKEN_SECONDS = 20;
/** First start creates a database and bootstraps Keystone: about 40 s on 2 cores. */
const START_TIMEOUT_MS = 180_000;
const N = 12;
/** Delay added to each credential create, and operations at once: the creates span about 30 s. */
const CREATE_DELAY_MS = 5_000;
const PARALLEL = "2";

let inst: KeystoneInstance;
let f: FaultFleet;

beforeAll(async () => {
  await run(
    "bash",
    [
      join(REPO, "scripts/keystone.sh"),
      "start",
      "--name",
      NAME,
      "--port",
      PORT,
      "--token-expiration",
      String(TOKEN_SECONDS),
    ],
    { timeout: START_TIMEOUT_MS },
  );
  inst = keystoneInstance(NAME);
  registerSecrets(inst.password);
  // The preflight doctor's own token and probes would blur the count of the provider's tokens.
  f = await startFaultFleet({
    prefix: "e2e-token",
    instance: inst,
    people: Array.from({ length: N }, (_, i) => `tok${i}`),
  });
}, START_TIMEOUT_MS + 120_000);

afterAll(async () => {
  await f?.close();
  await run("bash", [join(REPO, "scripts/keystone.sh"), "stop", "--name", NAME], { timeout: 60_000 });
}, 180_000);

describe(`tokens that expire after ${TOKEN_SECONDS} s, during an up that lasts longer`, () => {
  it("renews the token unnoticed: exit 0, everyone enrolled once, more than one token issued", async () => {
    const { proxy, admin, smtp, people } = f;
    proxy.arm(/^POST \/v3\/credentials /, { delayMs: CREATE_DELAY_MS }, 10 * N);
    const r = await f.up(["--parallel", PARALLEL]);
    expect(r.code, r.stdout.slice(-3000) + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/E_KEYSTONE|error/i);

    const log = proxy.exchanges();
    const creates = log.filter((e) => e.request === "POST /v3/credentials");
    const first = creates[0]?.at ?? 0;
    const spanSeconds = ((creates.at(-1)?.at ?? 0) - first) / 1000;
    // The test means something only if the creates outlasted a token.
    expect(spanSeconds).toBeGreaterThan(TOKEN_SECONDS);
    const tokens = log.filter((e) => e.request.startsWith("POST /v3/auth/tokens"));
    const renewals = tokens.filter((e) => e.at > first).length;
    const refused = log.filter((e) => e.status === 401).length;
    console.log(
      `token expiry: creates spanned ${spanSeconds.toFixed(1)} s with ${TOKEN_SECONDS} s tokens; ` +
        `${tokens.length} tokens issued (${renewals} during the creates); ${refused} request(s) answered 401`,
    );
    expect(tokens.length).toBeGreaterThan(1);
    expect(renewals).toBeGreaterThanOrEqual(1);
    // Keystone's token table would grow without bound if every request took a new token.
    expect(tokens.length).toBeLessThan(N);

    for (const p of people) {
      const creds = await admin.listTotpCredentials(p.user.id);
      expect(creds, p.user.name).toHaveLength(1);
      const msgs = smtp.messagesFor(p.email);
      expect(msgs, p.email).toHaveLength(1);
      // The mailed secret is the one Keystone holds: it logs the user in (Keystone 30 never returns it).
      const secret = await secretOfMessage(msgs[0] as Buffer);
      expect(await loginPasswordTotp(p.user, secret, admin.auth.authUrl), p.user.name).toBe(201);
    }
    expect(leakedIn(f.output.join("\n"), [inst.password, ...people.map((p) => p.user.password)])).toBe(0);
  });
});
