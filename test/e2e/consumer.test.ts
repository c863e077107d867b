/**
 * keystone-totp as an operator's own Pulumi program uses it: `npm pack` of this repository,
 * a fresh Pulumi TypeScript project in a temp folder that `npm install`s the tarball (its
 * dependencies from the npm cache) and declares one TotpCredential for a user given by name and domain,
 * then PLAIN `pulumi up` / `preview` / `destroy` (the CLI and its Node.js language host), a
 * local file backend and a passphrase, against the real Keystone:
 *
 *   - the project type-checks against the package's .d.ts with its own tsc (strict, no skipLibCheck);
 *   - the code of the stack output's secret logs the user in with the password; the QR code
 *     output holds the otpauth URI;
 *   - the state stores the provider as `require("keystone-totp/runtime/credential.cjs")`, small,
 *     no path of the machine, and no secret in plaintext;
 *   - a rotation request: old and new codes both log in within the grace window; the first
 *     `up` after it retires the old credential, whose code is then refused;
 *   - `destroy` leaves the user no TOTP credential and the password login it had.
 *
 * A credential deleted behind Pulumi's back (refresh drops it, up makes a new one) is tested
 * once, in credential.test.ts: the same engine and handlers, on every Keystone release.
 *
 * Needs `pulumi-language-nodejs` beside the CLI, like plain-cli.test.ts: without it the file
 * skips and says why, except in CI, where it fails.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { PNG_DATA_URI_PREFIX } from "../../lib/qr.ts";
import { parseOtpauthUri } from "../../lib/totp/uri.ts";
import { freshCode } from "../support/codes.ts";
import { adminClient, adminEnv, makeUser, REPO, type TestUser, uniq } from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { plainCliGate } from "../support/language-host.ts";
import { TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";
import { decodeQrPng } from "../support/smtp.ts";

/** The grace window of the rotation, in hours; the run after it is moved past it by KEYSTONE_TOTP_NOW. */
const GRACE_HOURS = 1;
/** The largest `__provider` accepted per copy, in bytes (a require() is ~100; code would be kilobytes). */
const MAX_PROVIDER_BYTES = 512;
/** Versions the consumer installs besides the tarball, as this repository pins them (in the npm cache). */
const PULUMI_VERSION = "3.276.0";
const TYPESCRIPT_VERSION = "5.9.3";
const TYPES_NODE_VERSION = "24.19.4";
const TYPE = "pulumi-nodejs:dynamic/keystone-totp:TotpCredential";

/** The consumer's program, as README's example has it. */
const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import { omitResourceStackTraces, TotpCredential, type TotpCredentialArgs } from "keystone-totp";

omitResourceStackTraces();

const config = new pulumi.Config();
const args: TotpCredentialArgs = {
  userName: config.require("userName"),
  userDomain: config.require("userDomain"),
  issuer: "ACME Cloud",
  graceHours: config.getNumber("graceHours") ?? 24,
  rotateRequest: config.get("rotateRequest"),
};
const credential = new TotpCredential("operator", args);

export const credentialId = credential.credentialId;
export const fingerprint = credential.fingerprint;
export const secret = credential.secret;
export const otpauthUri = credential.otpauthUri;
export const qrCode = credential.qrCode;
export const rotatedAt = credential.rotatedAt;
export const retireAfter = credential.retireAfter;
`;

const gate = plainCliGate();
if (gate.skip) console.warn(`[consumer] skipping the consumer tests: ${gate.missing}`);

const tag = uniq();
let admin: KeystoneClient;
let user: TestUser;
let stack: TestStack;
let root: string;
let project: string;
const output: string[] = [];
const seen: string[] = [];
let destroyed = false;

/** Runs a command in the consumer's project; its output goes to the test log only on failure. */
function sh(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });
}

interface Outputs {
  credentialId: string;
  fingerprint: string;
  secret: string;
  otpauthUri: string;
  qrCode: string;
  rotatedAt: string;
  retireAfter?: string;
}

/** The stack outputs in plaintext (registered for the secret scan, never printed). */
async function outputs(): Promise<Outputs> {
  const o = (await stack.outputs(true)) as unknown as Outputs;
  registerSecrets(o.secret, o.otpauthUri, o.qrCode);
  seen.push(o.secret, o.otpauthUri, o.qrCode);
  return o;
}

async function loginWith(secret: string): Promise<number> {
  const r = await login(
    admin.auth.authUrl,
    { name: user.name, domain: user.domain },
    { password: user.password, passcode: await freshCode(secret) },
  );
  return r.status;
}

async function run(args: string[], env: Record<string, string> = {}): Promise<void> {
  const r = await stack.run(args, { env });
  output.push(r.stdout, r.stderr);
}

beforeAll(async () => {
  if (gate.skip) return;
  if (gate.missing) throw new Error(`consumer tests cannot run: ${gate.missing}`);
  admin = adminClient();
  user = await makeUser(admin, `consumer-${tag}`);
  registerSecrets(user.password);
  root = mkdtempSync(join(tmpdir(), "kt-consumer-"));
  project = join(root, "project");
  mkdirSync(project);
  mkdirSync(join(root, "pack"));

  // The package as it would be published: `npm pack` builds dist/ first (prepack).
  sh("npm", ["pack", "--pack-destination", join(root, "pack")], REPO);
  const [tarball] = readdirSync(join(root, "pack")).filter((f) => f.endsWith(".tgz"));
  if (!tarball) throw new Error("npm pack made no tarball");

  writeFileSync(
    join(project, "package.json"),
    `${JSON.stringify(
      {
        name: "keystone-totp-consumer",
        private: true,
        type: "module",
        dependencies: {
          "@pulumi/pulumi": PULUMI_VERSION,
          "keystone-totp": `file:${join(root, "pack", tarball)}`,
        },
        devDependencies: { typescript: TYPESCRIPT_VERSION, "@types/node": TYPES_NODE_VERSION },
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(
    join(project, "Pulumi.yaml"),
    "name: consumer\nruntime:\n  name: nodejs\n  options:\n    typescript: false\nmain: index.ts\n",
  );
  writeFileSync(
    join(project, "tsconfig.json"),
    `${JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        strict: true,
        noEmit: true,
        verbatimModuleSyntax: true,
        types: ["node"],
      },
      files: ["index.ts"],
    })}\n`,
  );
  writeFileSync(join(project, "index.ts"), PROGRAM);
  // Tarballs come from the npm cache (`npm ci` of this repository filled it); the registry is
  // asked only for the package lists (`npm ci` caches none, so --offline fails on a fresh cache).
  sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], project);

  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD);
  stack = new TestStack("e2e-consumer", env, { cwd: project });
  await stack.init();
  await stack.set("userName", user.name);
  await stack.set("userDomain", user.domain);
});

afterAll(async () => {
  if (gate.skip) return;
  if (!destroyed) await stack?.run(["destroy", "--yes", "--skip-preview"], { allowFail: true });
  await stack?.remove();
  if (user) await deleteUser(admin, user.id).catch(() => undefined);
  admin?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe.skipIf(gate.skip)(
  `a Pulumi program of its own installs the packed tarball, plain pulumi${gate.skip ? `: skipped, ${gate.missing}` : ""}`,
  () => {
    it("the project type-checks against the package's types with its own tsc, strict, no skipLibCheck", () => {
      // Throws with tsc's messages when a declaration is missing or wrong.
      sh(join(project, "node_modules", ".bin", "tsc"), ["-p", "."], project);
    });

    it("plain pulumi up creates the credential: the output secret's code logs the user in, the QR holds the URI", async () => {
      await run(["up", "--yes", "--skip-preview"]);
      const o = await outputs();
      expect(await loginWith(o.secret)).toBe(201);
      expect((await admin.listTotpCredentials(user.id)).map((c) => c.id)).toEqual([o.credentialId]);
      expect(o.qrCode.startsWith(PNG_DATA_URI_PREFIX)).toBe(true);
      const decoded = decodeQrPng(Buffer.from(o.qrCode.slice(PNG_DATA_URI_PREFIX.length), "base64"));
      expect(decoded === o.otpauthUri).toBe(true);
      expect(parseOtpauthUri(decoded).secret === o.secret).toBe(true);
      expect(o.retireAfter).toBeUndefined();
    });

    it("the state stores a small require() of the packaged runtime, no path, no stack trace, no plaintext secret", async () => {
      const text = await stack.exportText();
      output.push(text);
      const dep = JSON.parse(text).deployment as {
        resources: { type: string; inputs: Record<string, unknown>; outputs: Record<string, unknown> }[];
      };
      const res = dep.resources.find((r) => r.type === TYPE);
      expect(res).toBeDefined();
      const provider = [res?.inputs.__provider, res?.outputs.__provider].map(String);
      const bytes = provider.map((p) => Buffer.byteLength(p));
      console.log(`consumer state: __provider ${bytes.join(" + ")} bytes per resource`);
      for (const b of bytes) expect(b).toBeLessThanOrEqual(MAX_PROVIDER_BYTES);
      for (const p of provider) expect(p).toContain('require("keystone-totp/runtime/credential.cjs")');
      expect(text).not.toContain(root);
      expect(text).not.toContain(REPO);
      expect(JSON.stringify(res)).not.toContain('"stackTrace"');
      // The secret outputs are ciphertext in the resource and in the stack outputs.
      expect(res?.outputs.secret).toMatchObject({ "4dabf18193072939515e22adb298388d": expect.any(String) });
      expect(res?.outputs.otpauthUri).toMatchObject({ "4dabf18193072939515e22adb298388d": expect.any(String) });
      expect(leakedIn(text, [...seen, user.password, adminEnv().OS_PASSWORD ?? ""])).toBe(0);
    });

    it("a rotation request: both codes log in within the grace window; the first up after it retires the old one", async () => {
      const before = await outputs();
      await stack.set("graceHours", String(GRACE_HOURS));
      await stack.set("rotateRequest", `rotate-${tag}`);
      const preview = await stack.run(["preview", "--diff"]);
      output.push(preview.stdout, preview.stderr);
      expect(preview.stdout).toMatch(/update/);
      await run(["up", "--yes", "--skip-preview"]);
      const after = await outputs();
      expect(after.credentialId).not.toBe(before.credentialId);
      expect(after.fingerprint).not.toBe(before.fingerprint);
      // The window counts from the rotation, which this resource can see (not from a delivery).
      const retireAt = Date.parse(String(after.retireAfter));
      expect(retireAt - Date.parse(after.rotatedAt)).toBe(Math.round(GRACE_HOURS * 3_600_000));
      expect((await admin.listTotpCredentials(user.id)).map((c) => c.id).sort(), "old and new credentials").toEqual(
        [before.credentialId, after.credentialId].sort(),
      );
      expect(await loginWith(after.secret)).toBe(201);
      expect(await loginWith(before.secret)).toBe(201);
      // Both codes were tried inside the window, or the check above proved nothing.
      expect(Date.now(), "the machine was too slow to try both codes within the grace window").toBeLessThan(retireAt);

      // The first up after the window, on the project's clock (KEYSTONE_TOTP_NOW), not a sleep.
      await run(["up", "--yes", "--skip-preview"], { KEYSTONE_TOTP_NOW: new Date(retireAt + 1_000).toISOString() });
      const retired = await outputs();
      expect(retired.credentialId).toBe(after.credentialId);
      expect(retired.retireAfter).toBeUndefined();
      expect((await admin.listTotpCredentials(user.id)).map((c) => c.id)).toEqual([after.credentialId]);
      expect(await loginWith(before.secret)).toBe(401);
      expect(await loginWith(after.secret)).toBe(201);
      // Nothing more to do: the next run changes nothing.
      await run(["up", "--yes", "--expect-no-changes"]);
    });

    it("plain pulumi destroy leaves the user no credential and the password login it had", async () => {
      const last = await outputs();
      await run(["destroy", "--yes", "--skip-preview"]);
      destroyed = true;
      expect(await admin.listTotpCredentials(user.id)).toEqual([]);
      expect(await loginWith(last.secret)).toBe(401);
      const password = await login(
        admin.auth.authUrl,
        { name: user.name, domain: user.domain },
        { password: user.password },
      );
      expect(password.status).toBe(201);
      expect(leakedIn(output.join("\n"), [...seen, user.password])).toBe(0);
    });
  },
);
