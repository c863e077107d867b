/**
 * A real Keystone whose keystone.conf lacks `totp` in `[auth] methods` (the `nototp` instance
 * of scripts/keystone.sh, started here and stopped afterwards): the doctor reports the method
 * as not enabled, with the methods that are, and exits 3; every other Keystone check passes.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDoctor } from "../../../../operator/doctor/run.ts";
import { adminEnv, type KeystoneInstance, keystoneInstance, keystoneRelease, REPO } from "../../../support/keystone.ts";
import { leakedIn } from "../../../support/secrets.ts";

const run = promisify(execFile);
/** The Keystone release under test (the compatibility suite runs this file on 27 and 30 too). */
const RELEASE = keystoneRelease();
/**
 * The instance's name and port (KEYSTONE_TOTP_NOTOTP_PORT; by default `auto`, its previous
 * port or a free one, so that a devstack or another checkout on the machine is no obstacle),
 * and its methods: no totp. One per release, of that release: scripts/test.sh runs the
 * compatibility suite beside the Keystone 22 suite, so the two may run this file at once.
 */
const NAME = RELEASE === 22 ? "nototp" : `nototp_r${RELEASE}`;
const PORT = process.env.KEYSTONE_TOTP_NOTOTP_PORT ?? "auto";
const METHODS = "external,password,token";
/** First start creates a database and bootstraps Keystone: about 40 s on 2 cores, 90 s in a chroot. */
const START_TIMEOUT_MS = 240_000;

let inst: KeystoneInstance;

beforeAll(async () => {
  await run(
    "bash",
    [
      join(REPO, "scripts/keystone.sh"),
      ...["start", "--name", NAME, "--port", PORT, "--methods", METHODS, "--release", String(RELEASE)],
    ],
    {
      timeout: START_TIMEOUT_MS,
    },
  );
  inst = keystoneInstance(NAME);
}, START_TIMEOUT_MS);

afterAll(async () => {
  await run("bash", [join(REPO, "scripts/keystone.sh"), "stop", "--name", NAME], { timeout: 60_000 });
}, 60_000);

describe("doctor against a Keystone without the totp method", () => {
  it("reports totp as not enabled, naming the enabled methods; the rest passes", async () => {
    const report = await runDoctor({ env: adminEnv(inst), cloudsYamlPaths: [], skipMail: true });
    const status = Object.fromEntries(report.checks.map((c) => [c.id, c.status]));
    expect(status).toEqual({
      "config.keystone": "ok",
      "keystone.reachable": "ok",
      "keystone.tls": "ok",
      "keystone.token": "ok",
      "keystone.operator-mfa": "ok",
      "keystone.credentials": "ok",
      "keystone.totp-method": "failure",
      "keystone.clock": "ok",
      // No TOTP login can work: the round trip on a throwaway user is not tried.
      "keystone.staging": "skipped",
    });
    const totp = report.checks.find((c) => c.id === "keystone.totp-method");
    expect(totp?.message).toContain('Keystone said: "Attempted to authenticate with an unsupported method."');
    expect(totp?.message).toContain("enabled methods: external, password, token");
    expect(totp?.details).toMatchObject({ enabledMethods: ["external", "password", "token"], status: 401 });
    expect(totp?.fix).toContain("methods = external,password,token,totp");
    expect(report.exitCode).toBe(3);
  });

  it("the script says so in text and JSON, exits 3, and prints no password", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("OS_")) delete env[k];
    Object.assign(env, adminEnv(inst));
    const node = join(REPO, "node_modules/.bin/node");
    const script = join(REPO, "scripts/doctor.ts");
    const outputs: string[] = [];
    for (const args of [["--no-mail"], ["--no-mail", "--json"]]) {
      const r = await run(node, [script, ...args], { env, cwd: REPO }).then(
        () => ({ code: 0, stdout: "", stderr: "" }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
      expect(r.code).toBe(3);
      outputs.push(r.stdout, r.stderr);
    }
    expect(outputs[0]).toMatch(/^FAIL keystone\.totp-method: Keystone does not accept TOTP logins/m);
    const json = JSON.parse(outputs[2] ?? "{}") as { exitCode: number; checks: { id: string; status: string }[] };
    expect(json.exitCode).toBe(3);
    expect(json.checks.find((c) => c.id === "keystone.totp-method")?.status).toBe("failure");
    expect(leakedIn(outputs.join("\n"), [inst.password])).toBe(0);
  });
});
