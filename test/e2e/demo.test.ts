/**
 * The README's main-job command on a clean clone: `npm run demo` enrolls the example users on
 * embedded defaults (the local Keystone, a local state backend, outbox mail), a user can log
 * in with the code from the QR in their message, and running it again sends nothing.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { parseOtpauthUri } from "../../lib/totp/uri.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, REPO } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { decodeQrPng, parseMessage } from "../support/smtp.ts";

const EXAMPLE_USERS: [string, string][] = [
  ["alice", "Default"],
  ["bob", "Default"],
  ["zoe", "Default"],
  ["carol", "eng"],
];
let clone: string;
let admin: KeystoneClient;
const output: string[] = [];

function demo(): { code: number; out: string } {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  for (const k of Object.keys(env)) if (k.startsWith("OS_") || k.startsWith("PULUMI_")) delete env[k];
  // Reuse the Keystone the tests already run instead of starting a second one on the same port.
  env.KEYSTONE_TOTP_STATE = join(REPO, ".local");
  env.PATH = (process.env.PATH ?? "")
    .split(":")
    .filter((p) => !p.includes("node_modules"))
    .join(":");
  const r = spawnSync("npm", ["run", "demo"], { cwd: clone, env, encoding: "utf8", timeout: 900_000 });
  const out = `${r.stdout}\n${r.stderr}`;
  output.push(out);
  return { code: r.status ?? -1, out };
}

beforeAll(async () => {
  admin = adminClient();
  for (const [name, domain] of EXAMPLE_USERS) {
    const u = await admin.findUser(name, domain);
    if (u) await deleteUser(admin, u.id);
  }
  clone = mkdtempSync(join(tmpdir(), "kt-demo-"));
  execFileSync("git", ["clone", "--quiet", REPO, clone]);
});

afterAll(async () => {
  for (const [name, domain] of EXAMPLE_USERS) {
    const u = await admin.findUser(name, domain);
    if (u) await deleteUser(admin, u.id);
  }
  admin?.close();
  if (clone) rmSync(clone, { recursive: true, force: true });
});

describe("npm run demo on a clean clone", () => {
  it("enrolls the example users into outbox messages whose QR codes log them in", async () => {
    const r = demo();
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.out).toMatch(/users enrolled:\s+4/);
    expect(r.out).toMatch(/messages delivered:\s+4/);
    const outbox = join(clone, "outbox");
    expect(statSync(outbox).mode & 0o777).toBe(0o700);
    const files = readdirSync(outbox).filter((f) => f.endsWith(".eml"));
    expect(files).toHaveLength(4);
    const passwords = JSON.parse(readFileSync(join(clone, ".local/demo-passwords.json"), "utf8")) as Record<
      string,
      string
    >;
    registerSecrets(...Object.values(passwords));
    for (const f of files) {
      expect(statSync(join(outbox, f)).mode & 0o777).toBe(0o600);
      const mail = await parseMessage(readFileSync(join(outbox, f)));
      const uri = decodeQrPng(mail.attachments[0]?.content as Buffer);
      const p = parseOtpauthUri(uri);
      registerSecrets(p.secret, uri);
      expect(f).not.toContain(p.secret);
      const [name, domain] = p.account.split("@") as [string, string];
      const password = passwords[`${name}@${domain}`] as string;
      const res = await login(admin.auth.authUrl, { name, domain }, { password, passcode: await freshCode(p.secret) });
      expect(res.status, p.account).toBe(201);
    }
  });

  it("running it again changes nothing and writes no message", () => {
    const r = demo();
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(readdirSync(join(clone, "outbox")).filter((f) => f.endsWith(".eml"))).toHaveLength(4);
    // Nothing changed: the no-op skip does not even start the engine (docs/daily-run.md).
    expect(r.out).toMatch(/nothing can change: skipped/);
    expect(r.out).not.toMatch(/\+ \d+ created/);
  });

  it("prints no secret", () => {
    const secrets = readFileSync(join(REPO, ".local/test-secrets.txt"), "utf8")
      .split("\n")
      .filter((s) => s.length >= 8);
    expect(leakedIn(output.join("\n"), secrets)).toBe(0);
  });
});
