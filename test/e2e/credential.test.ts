/**
 * The vertical slice through the real Pulumi CLI, the real engine and the real Keystone:
 * `pulumi up` creates a credential whose code logs the user in; rotation, refresh after an
 * out-of-band delete, destroy, validation in preview, secrecy of state and output, and a
 * connection reset during the POST.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KeystoneClient } from "../../lib/keystone/client.ts";
import { login } from "../../lib/keystone/login.ts";
import { fingerprint, totpCode } from "../../lib/totp/secret.ts";
import { freshCode } from "../support/codes.ts";
import {
  adminClient,
  adminEnv,
  keystoneInstance,
  keystoneRelease,
  makeUser,
  REPO,
  type TestUser,
  uniq,
} from "../support/keystone.ts";
import { deleteUser } from "../support/keystone-admin.ts";
import { type FaultProxy, startFaultProxy } from "../support/proxy.ts";
import { TestStack } from "../support/pulumi.ts";
import { leakedIn, registerSecrets } from "../support/secrets.ts";

const TYPE = "pulumi-nodejs:dynamic/keystone-totp:TotpCredential";
let admin: KeystoneClient;
let alice: TestUser;
let proxy: FaultProxy;
let stack: TestStack;
const seenSecrets: string[] = [];
const allOutput: string[] = [];

async function aliceCred() {
  const outs = await stack.resourceOutputs();
  const o = outs.alice;
  if (o) seenSecrets.push(String(o.secret));
  return o;
}

async function loginWith(secret: string, password = alice.password) {
  return login(
    admin.auth.authUrl,
    { name: alice.name, domain: "Default" },
    { password, passcode: await freshCode(secret) },
  );
}

beforeAll(async () => {
  admin = adminClient();
  alice = await makeUser(admin, `e2e-alice-${uniq()}`);
  registerSecrets(alice.password);
  proxy = await startFaultProxy(keystoneInstance().port);
  const env = adminEnv();
  registerSecrets(env.OS_PASSWORD ?? "");
  // The preflight doctor would send its own probes through the fault proxy; it has its own tests.
  stack = new TestStack("e2e-cred", {
    ...env,
    OS_AUTH_URL: `http://127.0.0.1:${proxy.port}/v3`,
    KEYSTONE_TOTP_SKIP_DOCTOR: "1",
  });
  await stack.init();
  await stack.setJson("keystone-totp:credentials", {
    alice: { userName: alice.name, userDomain: "Default", issuer: "ACME Cloud", rotationTrigger: "1" },
  });
});

afterAll(async () => {
  await stack?.destroy().catch(() => undefined);
  await stack?.remove();
  await proxy?.close();
  if (alice) await deleteUser(admin, alice.id);
  admin?.close();
});

describe("TotpCredential through the real Pulumi CLI", () => {
  it("pulumi up creates one credential despite a reset during the POST, and its code logs alice in", async () => {
    proxy.arm(/^POST \/v3\/credentials /, "reset-after");
    const up = await stack.up();
    allOutput.push(up.stdout, up.stderr);
    expect(proxy.fired()).toBe(1);
    const o = await aliceCred();
    expect(o?.credentialId).toBeTruthy();
    const creds = await admin.listTotpCredentials(alice.id);
    expect(creds.map((c) => c.id)).toEqual([o?.credentialId]);
    const secret = String(o?.secret);
    expect((await loginWith(secret)).status).toBe(201);
    const wrong = String((Number(totpCode(secret)) + 500_000) % 1_000_000).padStart(6, "0");
    const bad = await login(admin.auth.authUrl, { id: alice.id }, { password: alice.password, passcode: wrong });
    expect(bad.status).toBe(401);
  });

  it("stores a small provider with no machine paths, and no secret in state or output", async () => {
    const text = await stack.exportText();
    allOutput.push(text);
    const dep = JSON.parse(text).deployment;
    const res = dep.resources.find((r: { type: string }) => r.type === TYPE);
    // Pulumi stores the provider twice per resource (inputs and outputs).
    const bytes = [res.inputs.__provider, res.outputs.__provider].map((p) => Buffer.byteLength(String(p)));
    console.log(`serialized provider: ${bytes.join(" + ")} bytes per resource`);
    // keystone-totp-runtime in node_modules makes each copy a require() of ~300 bytes (aim: 4 KB).
    for (const b of bytes) expect(b).toBeLessThanOrEqual(1024);
    expect(String(res.inputs.__provider)).toContain('require("keystone-totp-runtime/credential.cjs")');
    expect(String(res.inputs.__provider)).not.toMatch(/\/(work|tmp|root|home)\//);
    // nor anywhere else in the resource (Pulumi would record the declaring stack trace)
    expect(JSON.stringify(res)).not.toContain(REPO);
    expect(res.stackTrace).toBeUndefined();
    expect(res.outputs.secret).toMatchObject({
      "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
    });
    expect(res.outputs.fingerprint).toMatch(/^sha256:[0-9a-f]{16}$/);
    const secrets = [...seenSecrets, alice.password, adminEnv().OS_PASSWORD ?? ""];
    expect(leakedIn(allOutput.join("\n"), secrets)).toBe(0);
  });

  it("a no-op up changes nothing", async () => {
    const before = (await aliceCred())?.fingerprint;
    const pre = await stack.run(["preview", "--expect-no-changes"]);
    allOutput.push(pre.stdout);
    expect(pre.stdout).toMatch(/unchanged/);
    expect((await aliceCred())?.fingerprint).toBe(before);
  });

  it("changing the rotation trigger issues a new secret whose code logs in; the old one no longer does", async () => {
    const old = await aliceCred();
    await stack.setJson("keystone-totp:credentials", {
      alice: { userName: alice.name, userDomain: "Default", issuer: "ACME Cloud", rotationTrigger: "2" },
    });
    const up = await stack.up();
    allOutput.push(up.stdout, up.stderr);
    const now = await aliceCred();
    expect(now?.credentialId).toBe(old?.credentialId);
    expect(now?.fingerprint).not.toBe(old?.fingerprint);
    expect(now?.rotatedAt).not.toBe(old?.rotatedAt);
    expect((await loginWith(String(now?.secret))).status).toBe(201);
    if (totpCode(String(old?.secret)) !== totpCode(String(now?.secret))) {
      expect((await loginWith(String(old?.secret))).status).toBe(401);
    }
    expect(await admin.listTotpCredentials(alice.id)).toHaveLength(1);
  });

  it("a delete behind Pulumi's back: refresh drops the resource and the next up recreates it", async () => {
    const old = await aliceCred();
    await admin.deleteCredential(String(old?.credentialId));
    const refresh = await stack.refresh();
    allOutput.push(refresh.stdout);
    expect((await stack.resourceOutputs()).alice).toBeUndefined();
    const up = await stack.up();
    allOutput.push(up.stdout);
    const now = await aliceCred();
    expect(now?.credentialId).not.toBe(old?.credentialId);
    expect((await admin.listTotpCredentials(alice.id)).map((c) => c.id)).toEqual([now?.credentialId]);
    expect((await loginWith(String(now?.secret))).status).toBe(201);
  });

  it("refresh: a blob changed out of band shows as drift where Keystone returns blobs; where it does not (30), nothing recorded is overwritten", async () => {
    const before = await aliceCred();
    const changed = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";
    registerSecrets(changed);
    // The change as an admin makes it, until Keystone serves it: its cache can keep a copy from
    // before a write (seen once on 27 in CI; see lib/keystone/users.ts writeUserMfa), and what is
    // tested here is what refresh makes of the credential Keystone serves.
    const id = String(before?.credentialId);
    let served: string | undefined;
    let writes = 0;
    do {
      await admin.updateCredentialBlob(id, changed);
      served = (await admin.getCredential(id))?.blob;
      writes++;
    } while (served !== undefined && served !== changed && writes < 4);
    if (keystoneRelease() < 30) expect(served === changed, "Keystone serves the changed blob").toBe(true);
    const refresh = await stack.run(["refresh", "--yes", "--skip-preview", "--diff"]);
    allOutput.push(refresh.stdout);
    const after = await aliceCred();
    if (keystoneRelease() < 30) {
      expect(refresh.stdout).toMatch(/fingerprint/);
      expect(after?.fingerprint).not.toBe(before?.fingerprint);
    } else {
      // Keystone 30 returns no blob: the drift cannot be seen, and the secret, its fingerprint
      // and the rotation clock stay as recorded (not an empty secret's, not the refresh time).
      expect(after?.fingerprint).toBe(before?.fingerprint);
      expect(after?.fingerprint).not.toBe(fingerprint(""));
      expect(after?.rotatedAt).toBe(before?.rotatedAt);
      expect(after?.otpauthUri).toBe(before?.otpauthUri);
    }
  });

  it.each([
    ["lower-case with non-base32 digits", "qwertyuiop1890asdfghjkl0189z", /outside A-Z and 2-7/],
    ["under 128 bits", "JBSWY3DPEHPK3PXP", /at least 128 are required/],
    ["non-base32 characters", "NOT-BASE32!!NOT-BASE32!!NOT-BASE32", /outside A-Z and 2-7/],
  ])(
    "an invalid supplied secret (%s) fails in preview, naming the resource, with no request to Keystone",
    async (_what, bad, reason) => {
      const connectionsBefore = proxy.connections();
      await stack.set("badSecret", bad, { secret: true });
      await stack.setJson("keystone-totp:credentials", {
        alice: { userName: alice.name, userDomain: "Default", issuer: "ACME Cloud", rotationTrigger: "2" },
        badOne: { userName: alice.name, secretConfigKey: "badSecret" },
      });
      const pre = await stack.preview({ allowFail: true });
      allOutput.push(pre.stdout, pre.stderr);
      expect(pre.code).not.toBe(0);
      const text = pre.stdout + pre.stderr;
      expect(text).toMatch(/TotpCredential resource 'badOne'[\s\S]*invalid supplied secret/);
      expect(text).toMatch(reason);
      expect(text).not.toContain(bad.slice(0, 12));
      expect(proxy.connections()).toBe(connectionsBefore);
    },
  );

  it("a lower-case secret with spaces is normalised, not refused, and its code logs in", async () => {
    const secret = "abcd efgh ijkl mnop qrst uvwx yz23 4567";
    registerSecrets("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", secret);
    await stack.set("lowerSecret", secret, { secret: true });
    await stack.setJson("keystone-totp:credentials", {
      alice: { userName: alice.name, userDomain: "Default", issuer: "ACME Cloud", rotationTrigger: "2" },
      aliceSupplied: { userName: alice.name, account: "alice (supplied)", secretConfigKey: "lowerSecret" },
    });
    const up = await stack.up();
    allOutput.push(up.stdout, up.stderr);
    const o = (await stack.resourceOutputs()).aliceSupplied;
    expect(o?.secret).toBe("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    expect((await loginWith("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")).status).toBe(201);
    await stack.setJson("keystone-totp:credentials", {
      alice: { userName: alice.name, userDomain: "Default", issuer: "ACME Cloud", rotationTrigger: "2" },
    });
    await stack.up();
    expect(await admin.listTotpCredentials(alice.id)).toHaveLength(1);
  });

  it("pulumi destroy removes the credential and its code no longer logs in", async () => {
    const o = await aliceCred();
    const d = await stack.destroy();
    allOutput.push(d.stdout);
    expect(await admin.listTotpCredentials(alice.id)).toEqual([]);
    expect((await loginWith(String(o?.secret))).status).toBe(401);
    const secrets = [...seenSecrets, alice.password, adminEnv().OS_PASSWORD ?? ""];
    expect(leakedIn(allOutput.join("\n"), secrets)).toBe(0);
  });
});
